"""Self-justification, confidence and adaptive selection of pseudo-labels.

The warm model sees each question with the n candidate answers and gives the final one (every question, or
only those whose votes disagree). Confidence is the normalised Shannon entropy of its distribution over the
options (multiple choice), or the paper's mean negative log-likelihood per token of the justified response.
Questions not justified keep the majority vote, scored from the votes themselves (entropy of the mean
option distribution, or the mean NLL of the agreeing samples). A selection rule then keeps the confident
ones. ``pseudo_labels.jsonl`` has one line per unlabeled row; gold answers are attached only for the
record, after selection, and only where the split has them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..answers import LETTERS, answers_match, canonical_vote
from ..config import SelectConfig
from ..data import Example
from ..prompts import TEMPLATE_IDS, justify_prompt
from ..runctx import (
    RunContext,
    atomic_write_json,
    atomic_write_jsonl,
    generate_one,
    read_jsonl,
    score_options,
)
from .propagate import read_votes


class SelectionError(RuntimeError):
    """Selection kept nothing, or its inputs are unusable."""


def normalized_entropy(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    if len(p) < 2:
        return 0.0
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum() / math.log(len(p)))


def majority(answers: list[str | None]) -> str | None:
    """Most common non-empty answer; ties go to the one seen first."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


# ---------------------------------------------------------------- selection rules (pure)


def select_mask(scores: list[float], cfg: SelectConfig, unanimous: list[bool] | None = None,
                groups: list[str | None] | None = None, valid: list[bool] | None = None) -> tuple[list[bool], dict[str, Any]]:
    """Which rows to keep (score <= threshold); returns the mask and the thresholds used."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(valid if valid is not None else [True] * len(s), dtype=bool) & np.isfinite(s)
    info: dict[str, Any] = {"rule": cfg.rule}
    if not ok.any():
        return [False] * len(s), info
    if cfg.rule == "all":
        keep = ok
    elif cfg.rule == "percentile":
        tau = float(np.percentile(s[ok], cfg.theta))
        keep = ok & (s <= tau)
        info["tau"] = tau
    elif cfg.rule == "fixed":
        keep = ok & (s <= cfg.threshold)
        info["tau"] = cfg.threshold
    elif cfg.rule == "released":
        una = np.asarray(unanimous if unanimous is not None else [False] * len(s), dtype=bool)
        dis = ok & ~una
        tau = float(np.percentile(s[dis], cfg.released_theta)) if dis.any() else float("-inf")
        keep = ok & (una | (s <= tau))
        info["tau_disagreeing"] = tau
    elif cfg.rule in ("class_percentile", "subject_percentile"):
        g = groups if groups is not None else [None] * len(s)
        keep = np.zeros(len(s), dtype=bool)
        taus: dict[str, float] = {}
        for key in sorted({x for x in g if x is not None} | ({None} if None in g else set()), key=str):
            m = ok & np.asarray([x == key for x in g])
            if m.any():
                t = float(np.percentile(s[m], cfg.theta))
                taus[str(key)] = t
                keep |= m & (s <= t)
        info["tau_per_group"] = taus
    else:  # pragma: no cover - Literal guards this
        raise SelectionError(f"select.rule: unknown rule {cfg.rule}")
    return [bool(x) for x in keep], info


# ---------------------------------------------------------------- the stage


def _vote_score(row: dict[str, Any], answer: str | None, kind: str, confidence: str) -> float:
    votes = row["votes"]
    if kind == "choice":
        mean = np.mean([v["dist"] for v in votes], axis=0)
        if confidence == "entropy":
            return normalized_entropy(mean)
        i = LETTERS.index(answer) if answer else 0
        return float(-math.log(max(mean[i] / mean.sum(), 1e-30)))
    nll = [v["mean_nll"] for v in votes if v["answer"] is not None and v["answer"] == answer and math.isfinite(v["mean_nll"])]
    return float(np.mean(nll)) if nll else float("inf")


def justify_rows(ctx: RunContext, rows: list[dict[str, Any]], examples: dict[str, Example], warm: str,
                 which: list[int]) -> dict[int, tuple[str | None, float, Any]]:
    """(answer, score, record) for the rows in ``which``, from the warm model (calls go through the run's cache)."""
    engine = ctx.get_engine()
    kind, conf = ctx.task.kind, ctx.cfg.select.confidence
    out: dict[int, tuple[str | None, float, Any]] = {}
    if not which:
        return out
    prompts = []
    for i in which:
        r = rows[i]
        ex = examples[r["id"]]
        cands = [v["answer"] or "(no answer)" for v in r["votes"]]
        if kind == "choice":
            cands = [f"{c}. {ex.options[LETTERS.index(c)]}" if c in LETTERS[: len(ex.options or [])] else c for c in cands]
        prompts.append(justify_prompt(ex, kind, cands, [v.get("text", "") for v in r["votes"]]))
    cache = ctx.call_cache()
    if kind == "choice":
        dists = score_options(engine, cache, prompts, [len(examples[rows[i]["id"]].options or []) for i in which], warm)
        for i, d in zip(which, dists, strict=True):
            a = int(np.argmax(d))
            score = normalized_entropy(d) if conf == "entropy" else float(-math.log(max(d[a], 1e-30)))
            out[i] = (LETTERS[a], score, [round(float(x), 6) for x in d])
    else:
        from ..answers import extract_free

        samples = generate_one(engine, cache, prompts, 0.0, ctx.cfg.seed, ctx.cfg.model.max_new_tokens, warm)
        for i, s in zip(which, samples, strict=True):
            ans = extract_free(s.text)
            if ans is None:
                ans = majority(canonical_vote([v["answer"] for v in rows[i]["votes"]], kind))
            out[i] = (ans, s.mean_nll, s.text)
    return out


def run_select(ctx: RunContext, votes_path: Path, out: Path, warm_adapter: Path) -> Path:
    """Write ``pseudo_labels.jsonl`` and ``selection.json`` into ``out``."""
    scfg = ctx.cfg.select
    kind = ctx.task.kind
    latest = read_votes(votes_path)
    examples = {e.id: e for e in ctx.task.unlabeled.examples}
    if set(latest) != set(examples):
        raise SelectionError(f"{votes_path}: {len(latest)} rows but the unlabeled split has {len(examples)}; rerun propagate")
    failed = [i for i in examples if latest[i].get("failed")]
    if failed:  # a failed row has no votes: never let it pass for one that was voted on
        raise SelectionError(f"{votes_path}: {len(failed)} rows failed in propagate (first: {failed[0]}); "
                             "rerun propagate to retry them")
    rows = [latest[i] for i in examples]
    votes_of = [canonical_vote([v["answer"] for v in r["votes"]], kind) for r in rows]
    unanimous = [len({a for a in vs}) == 1 and vs[0] is not None for vs in votes_of]
    if scfg.justify == "all":
        which = list(range(len(rows)))
    elif scfg.justify == "disagree":
        which = [i for i, u in enumerate(unanimous) if not u]
    else:
        which = []
    confidence = scfg.confidence if kind == "choice" else "nll"
    warm = ctx.adapter(f"warm-{ctx.fingerprints.get('warm', 'x')}", warm_adapter) if which else None
    justified = justify_rows(ctx, rows, examples, warm, which) if which else {}
    answers: list[str | None] = []
    scores: list[float] = []
    for i, r in enumerate(rows):
        if i in justified:
            a, s, _ = justified[i]
        else:
            a = majority(votes_of[i])
            s = _vote_score(r, a, kind, confidence)
        answers.append(a)
        scores.append(float(s))
    valid = [a is not None for a in answers]
    groups = answers if scfg.rule == "class_percentile" else [r.get("subject") for r in rows]
    keep, info = select_mask(scores, scfg, unanimous, groups, valid)
    if not any(keep):
        raise SelectionError(
            f"select: no pseudo-label passed the '{scfg.rule}' rule ({sum(valid)} of {len(rows)} rows had an answer); "
            "raise select.theta or select.threshold"
        )
    records = []
    for i, r in enumerate(rows):
        rec = {
            "id": r["id"], "row": r["row"], "question": r["question"], "options": r["options"],
            "votes": r["votes"], "unanimous": unanimous[i],
            "justified": i in justified, "answer": answers[i], "score": round(scores[i], 6), "selected": keep[i],
        }
        if i in justified and kind == "choice":
            rec["justify_dist"] = justified[i][2]
        if i in justified and kind == "free":
            rec["justify_text"] = justified[i][2]
        gold = examples[r["id"]].answer
        if gold is not None:
            rec["gold"] = gold
            rec["correct"] = answers_match(answers[i], gold, kind)
        records.append(rec)
    atomic_write_jsonl(out / "pseudo_labels.jsonl", records)
    per_class = defaultdict(lambda: [0, 0])
    for a, k in zip(answers, keep, strict=True):
        per_class[str(a)][0] += 1
        per_class[str(a)][1] += int(k)
    atomic_write_json(out / "selection.json", {
        **info, "theta": scfg.theta, "justify": scfg.justify, "confidence": confidence,
        "confidence_note": "normalised option entropy" if confidence == "entropy" else "mean NLL per token",
        "template": TEMPLATE_IDS["justify_" + kind], "rows": len(rows), "selected": int(sum(keep)),
        "justified": len(justified), "unanimous": int(sum(unanimous)),
        "per_class": {k: {"predicted": v[0], "selected": v[1]} for k, v in sorted(per_class.items())},
    })
    return out / "pseudo_labels.jsonl"


def selected_examples(pseudo_path: Path, unlabeled: list[Example]) -> list[Example]:
    """The selected rows as training examples with their pseudo-label as the answer (never the gold)."""
    by_id = {e.id: e for e in unlabeled}
    out = []
    for r in read_jsonl(pseudo_path):
        if r["selected"] and r["answer"] is not None:
            e = by_id[r["id"]]
            out.append(Example(id=e.id, question=e.question, options=e.options, answer=r["answer"],
                               rationale=_reasoning(r.get("justify_text")), subject=e.subject, row=e.row))
    return out


def _reasoning(text: str | None) -> str | None:
    """The reasoning part of a justified free-form response (everything before its last 'Answer' line)."""
    if not text:
        return None
    lines = text.strip().splitlines()
    for j in range(len(lines) - 1, -1, -1):
        if "answer" in lines[j].lower():
            body = "\n".join(lines[:j]).strip()
            return body or None
    return None
