"""The interface every inference engine implements.

Three calls cover the whole method: the probability of each option letter after a prompt (option
scoring), n sampled responses with their token log-probabilities (free-form answers), and the
log-likelihood of given continuations (the paper's confidence score). ``adapter`` names a LoRA adapter
added with ``add_adapter``; ``None`` means the base model with every adapter switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..prompts import Prompt


class EngineError(RuntimeError):
    """An engine cannot be built or a call failed for good."""


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

    def add_adapter(self, name: str, path: str) -> None: ...

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        """Probabilities over the first n option letters for each prompt (each sums to 1)."""
        ...

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        """n responses per prompt; temperature 0 is greedy (then n copies are identical)."""
        ...

    def loglikelihood(self, prompts: list[Prompt], continuations: list[str], adapter: str | None) -> list[tuple[float, int]]:
        """(sum of token log-probabilities, number of tokens) of each continuation after its prompt."""
        ...
