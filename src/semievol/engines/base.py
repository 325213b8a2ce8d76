"""The interface every inference engine implements.

Two calls cover the whole method: the probability of each option letter after a prompt (option
scoring), and n sampled responses with their token log-probabilities (free-form answers; the paper's
confidence score is the mean negative log-probability of the justified response). ``adapter`` names a LoRA adapter
added with ``add_adapter``; ``None`` means the base model with every adapter switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import UserError
from ..prompts import Prompt

# engines whose propagate runs on a Ray cluster (``ray_pool``), and the engine each of their actors holds
ACTOR_ENGINE = {"ray": "hf", "ray-vllm": "vllm"}


class EngineError(UserError):
    """An engine cannot be built or a call failed for good."""


class CallsFailed(EngineError):
    """Some prompts of a call failed for good (after retries); the others were answered.

    ``results`` holds the call's usual result per prompt, ``None`` where it failed; ``errors`` maps the
    index of each failed prompt to a one-line reason. A caller that can record per-row failures (the
    propagate stage) catches this; anywhere else it ends the command like any other EngineError.
    """

    def __init__(self, results: list[Any], errors: dict[int, str]) -> None:
        first = errors[min(errors)]
        super().__init__(f"{len(errors)} of {len(results)} model requests failed after retries (first: {first})")
        self.results = results
        self.errors = errors


@dataclass
class Sample:
    text: str
    logprobs: list[float]

    @property
    def mean_nll(self) -> float:
        return float(-np.mean(self.logprobs)) if self.logprobs else float("nan")


class Engine(Protocol):
    name: str

    def model_id(self) -> str:
        """A string that identifies the weights (for caching and records)."""
        ...

    def describe(self) -> dict[str, Any]:
        """How the engine gets its numbers (its log-prob mode, with any statistics), for the run's records."""
        ...

    def add_adapter(self, name: str, path: str) -> None: ...

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        """Probabilities over the first n option letters for each prompt (each sums to 1)."""
        ...

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        """n responses per prompt; temperature 0 is greedy (then n copies are identical)."""
        ...
