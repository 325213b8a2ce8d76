"""Pure mapping between semievol's engine calls and vLLM requests (offline ``vllm.LLM`` or Ray Data's LLM
processor), so the engines stay thin and this part is tested without vLLM or Ray installed.

- Option scoring: one generated token at temperature 0 with the top ``TOP_LOGPROBS`` log-probabilities;
  the distribution is the softmax over the option letters' log-probabilities (what the ``hf`` engine
  computes from the logits). A letter outside the top list gets the smallest log-probability returned, an
  upper bound; how often that happened is counted.
- Sampling: ``SamplingParams(n=...)`` with a seed per prompt made from the run seed and the prompt, so a
  prompt's samples do not depend on the batch it came in; log-probabilities of the sampled tokens.
- Log-likelihood: ``prompt_logprobs`` of the prompt followed by the continuation.

vLLM reports log-probabilities in one of several modes; engines run with ``LOGPROB_MODE`` and record it
in their ``model_id`` (and so in the cache of model calls).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..answers import LETTERS
from .base import Sample

TOP_LOGPROBS = 20  # vLLM's default max_logprobs
LOGPROB_MODE = "processed_logprobs"  # after temperature, as the hf engine's sampled-token log-probabilities


def describe(engine: str, model_label: str, options_outside_top: int) -> dict[str, Any]:
    """The record of how a vLLM engine got its numbers (``Engine.describe``)."""
    return {
        "engine": engine,
        "model": model_label,
        "logprob_mode": f"{LOGPROB_MODE}: option letters from the top {TOP_LOGPROBS} log-probabilities of the "
        "next token, a letter outside them at the lowest one returned (an upper bound)",
        "options_outside_top": options_outside_top,
    }


def letter_token_ids(tokenizer: Any) -> list[int]:
    """Token id of ' A', ' B', ... (the letter as it follows 'Answer:'); the last token where it takes two."""
    ids = []
    for letter in LETTERS:
        toks = tokenizer.encode(" " + letter, add_special_tokens=False)
        if not toks:
            raise ValueError(f"the tokenizer cannot encode the option letter {letter}")
        ids.append(toks[-1])
    return ids


def prompt_seed(seed: int, prompt_key: str, sample: int = 0) -> int:
    """A 31-bit seed from the run seed, the prompt and the sample number (independent of batching)."""
    h = hashlib.sha256(f"{seed}\x00{sample}\x00{prompt_key}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def score_params() -> dict[str, Any]:
    return {"max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}


def generate_params(
    n: int, temperature: float, seed: int, max_new_tokens: int, stop_ids: Sequence[int]
) -> dict[str, Any]:
    """SamplingParams for ``n`` responses; temperature 0 is greedy with a single response."""
    greedy = temperature <= 0
    return {
        "n": 1 if greedy else n,
        "temperature": 0.0 if greedy else float(temperature),
        "seed": seed,
        "max_tokens": max_new_tokens,
        "logprobs": 0,
        "stop_token_ids": list(stop_ids),
    }


def likelihood_params() -> dict[str, Any]:
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}


def _logprob(value: Any) -> float:
    """A log-probability from vLLM's ``Logprob`` object, its dict form (Ray rows) or a plain number."""
    if isinstance(value, Mapping):
        return float(value["logprob"])
    return float(getattr(value, "logprob", value))


def _by_token(entries: Mapping[Any, Any]) -> dict[int, float]:
    """{token id: log-probability}; Ray rows may carry the ids as strings."""
    return {int(k): _logprob(v) for k, v in entries.items()}


def option_distribution(top: Mapping[Any, Any], letter_ids: Sequence[int], n_options: int) -> tuple[np.ndarray, int]:
    """(probabilities over the first ``n_options`` letters, how many letters were outside the top list)."""
    lp = _by_token(top)
    if not lp:
        raise ValueError("no log-probabilities returned")
    floor = min(lp.values())
    values = [lp.get(t, floor) for t in letter_ids[:n_options]]
    missing = sum(1 for t in letter_ids[:n_options] if t not in lp)
    x = np.asarray(values, dtype=np.float64)
    p = np.exp(x - x.max())
    return p / p.sum(), missing


def sample_from_output(
    text: str, token_ids: Sequence[int], logprobs: Sequence[Mapping[Any, Any]] | None, stop_ids: Sequence[int]
) -> Sample:
    """A Sample: the sampled tokens' log-probabilities up to the first stop token (as the hf engine keeps them)."""
    ids = list(token_ids)
    end = next((j for j, t in enumerate(ids) if t in set(stop_ids)), len(ids))
    lps: list[float] = []
    for t, entries in zip(ids[: max(end, 1)], logprobs or [], strict=False):
        v = _by_token(entries).get(int(t))
        if v is not None and math.isfinite(v):
            lps.append(v)
    return Sample(text, lps)


def processor_row(index: int, prompt_text: str, params: dict[str, Any], lora: str | None) -> dict[str, Any]:
    """One input row for a Ray Data vLLM processor: the rendered prompt, its SamplingParams, and the LoRA
    adapter (a local folder, as ``model``) when there is one."""
    row = {"semievol_index": index, "prompt": prompt_text, "sampling_params": params}
    if lora is not None:
        row["model"] = lora
    return row


def sample_rows(
    prompt_texts: Sequence[str],
    prompt_keys: Sequence[str],
    n: int,
    temperature: float,
    seed: int,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    lora: str | None,
) -> list[dict[str, Any]]:
    """Rows for ``generate``: Ray's processor returns one completion a row, so n samples are n rows, each with
    its own seed (index = prompt * n + sample)."""
    rows = []
    per = 1 if temperature <= 0 else n
    for i, (text, key) in enumerate(zip(prompt_texts, prompt_keys, strict=True)):
        for j in range(per):
            params = generate_params(1, temperature, prompt_seed(seed, key, j), max_new_tokens, stop_ids)
            rows.append(processor_row(i * per + j, text, params, lora))
    return rows


def gather_samples(
    out_rows: Sequence[Mapping[str, Any]], n_prompts: int, n: int, temperature: float, stop_ids: Sequence[int]
) -> list[list[Sample]]:
    """Processor output rows (any order) back into n Samples per prompt; greedy answers are repeated n times."""
    per = 1 if temperature <= 0 else n
    out: list[list[Sample]] = [[] for _ in range(n_prompts)]
    for r in sorted(out_rows, key=lambda r: int(r["semievol_index"])):
        out[int(r["semievol_index"]) // per].append(
            sample_from_output(r["generated_text"], r["generated_tokens"], r.get("logprobs"), stop_ids)
        )
    if any(len(s) != per for s in out):
        raise ValueError("the processor returned a different number of rows than it was given")
    return [s * n for s in out] if per == 1 and n > 1 else out
