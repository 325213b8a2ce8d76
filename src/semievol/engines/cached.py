"""The model-call cache as an engine: ``CachedEngine`` wraps any engine and remembers its results.

Select and evaluate call ``score_options`` and greedy ``generate`` through it, so a killed run, or one
rerun for a changed setting downstream of the model, repeats no call it made. The cache is an append-only
JSONL file (``RUN_DIR/cache/model_calls.jsonl``), keyed by a hash of (model, adapter weights, call,
prompt, parameters); each line carries a digest binding the value to its key, so a damaged line is
recomputed rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonio import append_jsonl, read_jsonl_prefix
from ..prompts import Prompt
from ..rundir import fingerprint
from .base import Engine, Sample

CALL_CHUNK = 64  # prompts per engine call: a kill loses at most one chunk of work


def adapter_digest(folder: Path, fallback: str) -> str:
    """sha256 of a PEFT folder's weights file (``fallback`` where there is none, as with the fake engine)."""
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        weights = folder / "adapter_model.bin"
    if not weights.is_file():
        return fallback
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry_check(key: str, value: Any) -> str:
    """A digest binding a cached value to its key: a line whose value was damaged or edited is not trusted."""
    return fingerprint(key, value)


def _entry_ok(row: dict[str, Any]) -> bool:
    """A cache line to trust: key and value present, and its check matching."""
    if not isinstance(row.get("key"), str) or "value" not in row:
        return False
    return row.get("check") == _entry_check(row["key"], row["value"])


class CallCache:
    """Results of model calls, keyed by a hash of (model, adapter, call, prompt, parameters).

    An append-only JSONL file (one ``{"key", "value"}`` line per call, flushed and fsynced) read once on
    start, so a stage killed part way, or rerun for a changed setting downstream of the model, reuses what
    was computed. ``model`` identifies the weights and the model settings; ``adapters`` maps an engine's
    adapter name to a digest of its weights file, so a retrained adapter never hits an old entry (a name
    missing there stands for itself).
    """

    def __init__(self, path: Path, model: str, adapters: dict[str, str] | None = None) -> None:
        self.path = path
        self.model = model
        self.adapters = adapters if adapters is not None else {}
        self.entries = {r["key"]: r["value"] for r in read_jsonl_prefix(path) if _entry_ok(r)}
        self.hits = 0

    def key(self, adapter: str | None, call: str, prompt_key: str, params: Any) -> str:
        who = None if adapter is None else self.adapters.get(adapter, adapter)
        blob = json.dumps([self.model, who, call, prompt_key, params], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        return self.entries.get(key)

    def put(self, items: dict[str, Any]) -> None:
        new = {k: v for k, v in items.items() if k not in self.entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.path, [{"key": k, "value": v, "check": _entry_check(k, v)} for k, v in new.items()])
        self.entries.update(new)

    def chunked(self, keys: list[str], compute: Callable[[list[int]], list[Any]], chunk: int) -> list[Any]:
        """Values for ``keys`` in order; ``compute(indices)`` fills a chunk that is not wholly cached.

        Chunks are cut at fixed positions, and a chunk is taken from the cache only when all of it is
        there, so an engine sees the same batches as in an uninterrupted run and results stay identical.
        """
        out: list[Any] = [None] * len(keys)
        for s in range(0, len(keys), max(1, chunk)):
            idx = list(range(s, min(s + chunk, len(keys))))
            cached = [self.entries.get(keys[i]) for i in idx]
            if all(c is not None for c in cached):
                self.hits += len(idx)
                vals = cached
            else:
                vals = compute(idx)
                self.put({keys[i]: v for i, v in zip(idx, vals, strict=True)})
            for i, v in zip(idx, vals, strict=True):
                out[i] = v
        return out


class CachedEngine:
    """``engine`` with its option scores and generations remembered in ``cache``.

    Calls go to the engine in chunks of ``chunk`` prompts cut at fixed positions, and a chunk is taken
    from the cache only when all of it is there, so the engine sees the same batches as in an uninterrupted
    run and results stay identical.
    """

    def __init__(self, engine: Engine, cache: CallCache, chunk: int = CALL_CHUNK) -> None:
        self.inner, self.cache, self.chunk = engine, cache, chunk
        self.name = engine.name

    def model_id(self) -> str:
        return self.inner.model_id()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def add_adapter(self, name: str, path: str) -> None:
        """Add the adapter to the engine and key its cache entries by a digest of its weights."""
        self.inner.add_adapter(name, path)
        self.cache.adapters.setdefault(name, adapter_digest(Path(path), name))

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        keys = [self.cache.key(adapter, "score_options", p.key(), n) for p, n in zip(prompts, n_options, strict=True)]

        def compute(idx: list[int]) -> list[list[float]]:
            dists = self.inner.score_options([prompts[i] for i in idx], [n_options[i] for i in idx], adapter)
            return [[float(x) for x in d] for d in dists]

        return [np.asarray(v, dtype=np.float64) for v in self.cache.chunked(keys, compute, self.chunk)]

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        params: dict[str, Any] = {"temperature": temperature, "seed": seed, "max_new_tokens": max_new_tokens}
        if n != 1:
            params["n"] = n
        keys = [self.cache.key(adapter, "generate", p.key(), params) for p in prompts]

        def compute(idx: list[int]) -> list[Any]:  # one response is stored as itself, several as a list
            out = self.inner.generate([prompts[i] for i in idx], n, temperature, seed, max_new_tokens, adapter)
            rows = [[{"text": s.text, "logprobs": [float(x) for x in s.logprobs]} for s in row] for row in out]
            return [row[0] if n == 1 else row for row in rows]

        values = self.cache.chunked(keys, compute, self.chunk)
        return [[Sample(s["text"], s["logprobs"]) for s in ([v] if n == 1 else v)] for v in values]
