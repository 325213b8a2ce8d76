"""Evaluation: test accuracy of base, warm and evolved models with 95% Wilson intervals, and the accuracy of
the pseudo-labels (all, selected, and against coverage as the threshold moves) where the unlabeled split
carries gold answers. Test answers use temperature 0: argmax over options, greedy decoding for free-form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..answers import LETTERS, answers_match, extract_free
from ..engines import Engine
from ..prompts import answer_prompt
from ..runctx import CallCache, generate_one, score_options
from ..tasks import Example


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(a: list[bool], b: list[bool], draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Accuracy of A minus B on the same rows, with a 95% paired bootstrap interval over the rows."""
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(x) == 0:
        return {"difference": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(draws, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"difference": float(x.mean()), "ci95": [float(lo), float(hi)], "n": len(x),
            "only_a": int((x > 0).sum()), "only_b": int((x < 0).sum())}


VERDICT_AGAINST = {"warm": "the warm model (SFT on the labeled rows)",
                   "sft_matched": "SFT trained as many steps on the labeled rows alone"}


def verdict(correct: dict[str, list[bool]]) -> dict[str, Any] | None:
    """The evolved model against the warm model and the compute-matched control: paired differences on the
    test rows and one sentence each. None without an evolved model and one of the two."""
    if "evolved" not in correct or not set(VERDICT_AGAINST) & set(correct):
        return None
    out: dict[str, Any] = {"lines": []}
    for other, words in VERDICT_AGAINST.items():
        if other not in correct:
            continue
        d = paired_difference(correct["evolved"], correct[other])
        lo, hi = d["ci95"]
        call = ("better than" if lo > 0 else "worse than" if hi < 0
                else "not distinguishable from")
        out[other] = d
        out["lines"].append(f"The evolved model is {call} {words}: {100 * d['difference']:+.1f} points "
                            f"(95% paired interval {100 * lo:+.1f} to {100 * hi:+.1f}, {d['n']} test rows).")
    return out


def accuracy_record(correct: list[bool]) -> dict[str, Any]:
    k, n = sum(correct), len(correct)
    lo, hi = wilson(k, n)
    return {"accuracy": k / n if n else float("nan"), "correct": k, "n": n, "ci95": [lo, hi]}


def predict(engine: Engine, examples: list[Example], kind: str, adapter: str | None, max_new_tokens: int,
            cache: CallCache | None = None, numeric: bool = False) -> list[dict[str, Any]]:
    """One prediction per example at temperature 0; with ``cache``, calls a killed run made are not repeated.
    ``numeric``: the answers are numbers (see ``extract_free``)."""
    prompts = [answer_prompt(e, kind) for e in examples]
    out = []
    if kind == "choice":
        dists = score_options(engine, cache, prompts, [len(e.options or []) for e in examples], adapter)
        for e, d in zip(examples, dists, strict=True):
            pred = LETTERS[int(np.argmax(d))]
            out.append({"id": e.id, "pred": pred, "gold": e.answer, "correct": pred == e.answer,
                        "dist": [round(float(x), 5) for x in d]})
    else:
        samples = generate_one(engine, cache, prompts, 0.0, 0, max_new_tokens, adapter)
        for e, s in zip(examples, samples, strict=True):
            pred = extract_free(s.text, numeric)
            out.append({"id": e.id, "pred": pred, "gold": e.answer, "correct": answers_match(pred, e.answer, kind),
                        "text": s.text})
    return out


def counts(values: list[Any]) -> dict[str, int]:
    """How often each value occurs, by value (None counts as 'None')."""
    from collections import Counter

    return dict(sorted(Counter(str(v) for v in values).items()))


def gold_nll(examples: list[Example], preds: list[dict[str, Any]]) -> float:
    """Mean negative log-probability the model gives the gold option (NaN without gold letters)."""
    nll = [-math.log(max(p["dist"][LETTERS.index(e.answer)], 1e-12)) for e, p in zip(examples, preds, strict=True)
           if e.answer in LETTERS[: len(p["dist"])]]
    return sum(nll) / len(nll) if nll else float("nan")


def choice_record(examples: list[Example], preds: list[dict[str, Any]]) -> dict[str, Any]:
    """Gold-option NLL, and how often each letter was predicted and is gold.

    Accuracy on a few hundred rows ties often (a model answering the majority class everywhere scores that
    class's share whatever else it learned); the gold option's log-probability still tells such models
    apart, and the letter counts show a collapse at a glance.
    """
    return {"gold_nll": gold_nll(examples, preds), "predicted": counts([p["pred"] for p in preds]),
            "gold": counts([e.answer for e in examples])}


def pseudo_label_metrics(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Accuracy of all and selected pseudo-labels, per configuration, and against coverage."""
    gold = [r for r in records if "gold" in r]
    if not gold:
        return None
    sel = [r for r in gold if r["selected"]]
    out: dict[str, Any] = {
        "all": accuracy_record([r["correct"] for r in gold]),
        "selected": accuracy_record([r["correct"] for r in sel]) if sel else None,
        "coverage": len(sel) / len(gold),
        "agreement_rate": sum(r["unanimous"] for r in gold) / len(gold),
    }
    configs: dict[str, list[bool]] = {}
    for r in gold:
        for v in r["votes"]:
            configs.setdefault(v["config"], []).append(answers_match(v["answer"], r["gold"], "choice" if r["options"] else "free"))
    out["per_config"] = {c: accuracy_record(v) for c, v in configs.items()}
    ranked = sorted(gold, key=lambda r: r["score"])
    curve = []
    for pct in range(10, 101, 10):
        m = max(1, round(len(ranked) * pct / 100))
        top = ranked[:m]
        curve.append({"coverage": pct / 100, "n": m, "accuracy": sum(r["correct"] for r in top) / m,
                      "max_score": top[-1]["score"]})
    out["accuracy_vs_coverage"] = curve
    return out
