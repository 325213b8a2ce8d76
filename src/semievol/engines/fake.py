"""A deterministic engine for tests and dry runs: answers are a hash of (prompt, adapter), no model."""

from __future__ import annotations

import hashlib

import numpy as np

from ..prompts import Prompt
from .base import Sample


def _rng(*parts: object) -> np.random.Generator:
    h = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


class FakeEngine:
    name = "fake"

    def __init__(self, **_: object) -> None:
        self.adapters: dict[str, str] = {}

    def model_id(self) -> str:
        return "fake"

    def describe(self) -> dict[str, object]:
        return {"engine": self.name, "logprob_mode": "none: distributions are a hash of (prompt, adapter)"}

    def add_adapter(self, name: str, path: str) -> None:
        self.adapters[name] = path

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        out = []
        for p, n in zip(prompts, n_options, strict=True):
            logits = _rng("score", p.key(), adapter).normal(size=n) * 2.0
            e = np.exp(logits - logits.max())
            out.append(e / e.sum())
        return out

    def generate(self, prompts, n, temperature, seed, max_new_tokens, adapter) -> list[list[Sample]]:
        out = []
        for p in prompts:
            samples = []
            for j in range(n):
                r = _rng("gen", p.key(), adapter, seed if temperature > 0 else 0, j if temperature > 0 else 0)
                value = int(r.integers(0, 20))
                lp = list(-r.exponential(0.3, size=4))
                samples.append(Sample(f"Let me think.\nAnswer: {value}", [float(x) for x in lp]))
            out.append(samples)
        return out
