"""Self-justification, confidence and adaptive selection of pseudo-labels.

The warm model sees each question with the n candidate answers and gives the final one (every question, or
only those whose votes disagree). Confidence is the normalised Shannon entropy of its distribution over the
options (multiple choice), or the paper's mean negative log-likelihood per token of the justified response.
Questions not justified keep the majority vote, scored from the votes themselves (entropy of the mean
option distribution, or the mean NLL of the agreeing samples). Two options change how a multiple-choice
justification becomes an answer: ``candidates_only`` lets only an option some configuration gave win, and
``calibrate`` divides each option's probability by its mean over all justified rows first (batch
calibration, Zhou et al. 2024), so a small model's lean to one position (say, always the last option) does
not decide the labels. A selection rule then keeps the confident
ones. ``pseudo_labels.jsonl`` has one line per unlabeled row; gold answers are attached only for the
record, after selection, and only where the split has them.

The votes and the unlabeled split are read as streams, twice: the first pass scores every row (keeping
only arrays of scores and flags, since a percentile needs all of them) and writes the justified answers to
a hidden temporary file; the second writes ``pseudo_labels.jsonl`` row by row. Memory does not grow with
the rows beyond those arrays (and the cache of model calls).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..answers import LETTERS, answers_match, canonical_vote
from ..config import SelectConfig
from ..progress import log
from ..prompts import TEMPLATE_IDS, justify_prompt
from ..runctx import (
    CALL_CHUNK,
    RunContext,
    atomic_write_json,
    atomic_write_jsonl,
    generate_one,
    iter_jsonl,
    score_options,
    tmp_name,
)
from ..tasks import Example, Split


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


def decide(dist: list[float], candidates: list[str | None] | None, prior: np.ndarray | None,
           confidence: str) -> tuple[str, float]:
    """The answer and its score from the justifier's option distribution: divided by ``prior`` (batch
    calibration) when given, then the likeliest option among ``candidates`` (all options when None or none
    of them is an option). Ties go to the first letter; entropy is over the whole calibrated distribution."""
    p = adjusted(dist, prior)
    options = list(LETTERS[: len(p)])
    allowed = sorted({options.index(c) for c in candidates or [] if c in options}) or range(len(p))
    a = max(allowed, key=lambda i: p[i])
    score = normalized_entropy(p) if confidence == "entropy" else float(-math.log(max(p[a], 1e-30)))
    return LETTERS[a], score


def adjusted(dist: list[float] | np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """``dist`` divided by ``prior`` (when given) and renormalised."""
    p = np.asarray(dist, dtype=np.float64)
    if prior is not None:
        p = p / np.maximum(prior, 1e-12)
    return p / p.sum()


def class_shares(examples: list[Example]) -> dict[int, np.ndarray]:
    """The labeled rows' answer shares per number of options (add-one smoothed), the target of alignment."""
    counts: dict[int, np.ndarray] = {}
    for e in examples:
        n = len(e.options or [])
        if n and e.answer in LETTERS[:n]:
            counts.setdefault(n, np.ones(n))[LETTERS.index(e.answer)] += 1
    return {n: c / c.sum() for n, c in counts.items()}


def justifier_lean(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``lean_from_counts`` over pseudo-label rows (those justified, multiple choice)."""
    answers: Counter[str] = Counter()
    votes: Counter[str] = Counter()
    for r in rows:
        if r.get("justified") and r.get("answer") is not None and r.get("options"):
            answers[str(r["answer"])] += 1
            votes.update(str(v["answer"]) for v in r.get("votes", []) if v.get("answer") is not None)
    return lean_from_counts(answers, votes)


def lean_from_counts(answers: Counter[str], votes: Counter[str]) -> dict[str, Any] | None:
    """The answer the justification gives far more often than the configurations do: at least 80% of the
    justified answers and 25 points above its share of their votes, over at least 20 rows. A justifier that
    picks one position whatever the question hands evolve one class; batch calibration
    (``select.calibrate``) is the fix to try. None when there is no such lean. (Runs measured here: the
    demo's 93% 'C' against 55% of the votes and ARC's 90% 'A' against 40% are flagged; FPB's 71-76% of its
    majority class 'B', which is also 66% of the gold answers, is not.)"""
    n, nv = sum(answers.values()), sum(votes.values())
    if n < 20 or not nv:
        return None
    top, k = answers.most_common(1)[0]
    share, vote_share = k / n, votes[top] / nv
    if share >= 0.8 and share >= vote_share + 0.25:
        return {"answer": top, "share": round(share, 3), "vote_share": round(vote_share, 3), "rows": n}
    return None


class PriorSums:
    """Running sums of the justifier's distributions per number of options, for batch calibration."""

    def __init__(self) -> None:
        self.sums: dict[int, np.ndarray] = {}
        self.counts: Counter[int] = Counter()

    def add(self, dist: list[float]) -> None:
        d = np.asarray(dist, dtype=np.float64)
        self.sums[len(d)] = self.sums.get(len(d), np.zeros(len(d))) + d / d.sum()
        self.counts[len(d)] += 1

    def priors(self) -> dict[int, np.ndarray]:
        return {k: v / self.counts[k] for k, v in self.sums.items()}


# ---------------------------------------------------------------- selection rules (pure)


def select_mask(scores: list[float], cfg: SelectConfig, unanimous: list[bool] | None = None,
                groups: list[str | None] | None = None, valid: list[bool] | None = None,
                shares: dict[str, float] | None = None) -> tuple[list[bool], dict[str, Any]]:
    """Which rows to keep (score <= threshold); returns the mask and the thresholds used.

    ``shares`` (class -> share of the labeled rows) sets the 'class_quota' rule's quotas; ``groups`` then
    holds each row's predicted class."""
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
    elif cfg.rule == "class_quota":
        g = groups if groups is not None else [None] * len(s)
        w = shares or {}
        budget = int(round(cfg.theta / 100 * int(ok.sum())))
        total = sum(w.values()) or 1.0
        keep = np.zeros(len(s), dtype=bool)
        quotas: dict[str, int] = {}
        for key in sorted({str(x) for x in g if x is not None}):
            members = np.flatnonzero(ok & np.asarray([str(x) == key for x in g]))
            quota = int(round(budget * w.get(key, 0.0) / total))
            quotas[key] = quota
            keep[members[np.argsort(s[members], kind="stable")[:quota]]] = True
        info["quota_per_class"] = quotas
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


def justify_rows(ctx: RunContext, rows: list[tuple[dict[str, Any], Example]], warm: str) -> list[tuple[str | None, float, Any]]:
    """(answer, score, record) for each (votes row, example), from the warm model (calls go through the run's cache)."""
    engine = ctx.get_engine()
    kind, conf = ctx.task.kind, ctx.cfg.select.confidence
    out: list[tuple[str | None, float, Any]] = []
    if not rows:
        return out
    prompts = [justification(r, ex, kind, reverse=False) for r, ex in rows]
    cache = ctx.call_cache()
    if kind == "choice":
        sizes = [len(ex.options or []) for _, ex in rows]
        dists = score_options(engine, cache, prompts, sizes, warm)
        if ctx.cfg.select.fair_order:  # the same question with its options reversed, mapped back and averaged
            flipped = score_options(engine, cache, [justification(r, ex, kind, reverse=True) for r, ex in rows],
                                    sizes, warm)
            dists = [(np.asarray(a) + np.asarray(b)[::-1]) / 2 for a, b in zip(dists, flipped, strict=True)]
        only = ctx.cfg.select.candidates_only
        for (r, _), d in zip(rows, dists, strict=True):
            d = [round(float(x), 6) for x in d]
            cands = [v["answer"] for v in r["votes"]] if only else None
            a, score = decide(d, cands, None, conf)
            out.append((a, score, d))
    else:
        from ..answers import extract_free

        samples = generate_one(engine, cache, prompts, 0.0, ctx.cfg.seed, ctx.cfg.model.max_new_tokens, warm)
        for (r, _), s in zip(rows, samples, strict=True):
            ans = extract_free(s.text, ctx.task.numeric)
            if ans is None:
                ans = majority(canonical_vote([v["answer"] for v in r["votes"]], kind))
            out.append((ans, s.mean_nll, s.text))
    return out


def justification(r: dict[str, Any], ex: Example, kind: str, reverse: bool) -> Any:
    """The justification prompt of one row; ``reverse`` lists the options (and letters the candidates) in
    reverse order, for position-fair scoring."""
    n = len(ex.options or [])
    if reverse:
        ex = Example(id=ex.id, question=ex.question, options=list(reversed(ex.options or [])), answer=None,
                     subject=ex.subject, row=ex.row)
    cands = []
    for v in r["votes"]:
        c = v["answer"] or "(no answer)"
        if kind == "choice" and c in LETTERS[:n]:
            j = LETTERS.index(c)
            j = n - 1 - j if reverse else j
            c = f"{LETTERS[j]}. {ex.options[j]}"
        cands.append(c)
    return justify_prompt(ex, kind, cands, [v.get("text", "") for v in r["votes"]])


# rows justified per round of engine calls: a multiple of the cache's chunk, so the cache cuts the calls at
# the same places as one call over every row would (a resumed run then asks for nothing already cached)
JUSTIFY_BLOCK = CALL_CHUNK * 16


def _rows(votes_path: Path, unlabeled: Split) -> Iterator[tuple[dict[str, Any], Example]]:
    """(votes row, unlabeled example) pairs, checked to be the same row."""
    for i, (r, ex) in enumerate(zip(iter_jsonl(votes_path), unlabeled.iter_examples(), strict=False)):
        if r.get("id") != ex.id:
            raise SelectionError(f"{votes_path}: line {i + 1} is row '{r.get('id')}' where the unlabeled split has "
                                 f"'{ex.id}'; rerun propagate")
        yield r, ex


def _count_lines(path: Path) -> tuple[int, list[str]]:
    """Rows in the votes file, and the ids of those marked failed (one streaming pass)."""
    n, failed = 0, []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                n += 1
                if b'"failed"' in line and (row := json.loads(line)).get("failed"):
                    failed.append(str(row.get("id")))
    return n, failed


def run_select(ctx: RunContext, votes_path: Path, out: Path, warm_adapter: Path) -> Path:
    """Write ``pseudo_labels.jsonl`` and ``selection.json`` into ``out``."""
    scfg = ctx.cfg.select
    kind = ctx.task.kind
    unlabeled = ctx.task.unlabeled
    n, failed = _count_lines(votes_path)
    if failed:  # a failed row has no votes: never let it pass for one that was voted on
        raise SelectionError(f"{votes_path}: {len(failed)} rows failed in propagate (first: {failed[0]}); "
                             "rerun propagate to retry them")
    if n != len(unlabeled):
        raise SelectionError(f"{votes_path}: {n} rows but the unlabeled split has {len(unlabeled)}; rerun propagate")
    confidence = scfg.confidence if kind == "choice" else "nll"
    calibrate = scfg.calibrate and kind == "choice"
    align = scfg.align and kind == "choice"
    mean_vote = scfg.vote == "mean" and kind == "choice"
    transform = calibrate or align  # every distribution rescaled by one vector per number of options
    shares = class_shares(ctx.task.labeled.examples) if align or scfg.rule == "class_quota" else {}
    prior_sums = PriorSums()
    # pass 1: a score, a validity flag, unanimity and a group for every row; justified answers to a file
    scores = np.zeros(n, dtype=np.float64)
    valid = np.zeros(n, dtype=bool)
    unanimous = np.zeros(n, dtype=bool)
    group_code = np.zeros(n, dtype=np.int32)
    group_names: dict[str | None, int] = {}
    justified_path = tmp_name(out / "justified.jsonl")
    out.mkdir(parents=True, exist_ok=True)
    n_justified = 0
    warm: list[str] = []
    pending: list[tuple[int, dict[str, Any], Example]] = []

    def set_row(i: int, answer: str | None, score: float, subject: str | None) -> None:
        scores[i], valid[i] = float(score), answer is not None
        g = answer if scfg.rule in ("class_percentile", "class_quota") else subject
        group_code[i] = group_names.setdefault(g, len(group_names))

    def justify_pending(f: Any) -> None:
        if not warm:  # the warm adapter is loaded only when some row is justified
            warm.append(ctx.adapter(f"warm-{ctx.fingerprints.get('warm', 'x')}", warm_adapter))
        results = justify_rows(ctx, [(r, ex) for _, r, ex in pending], warm[0])
        for (i, r, _), (a, s, rec) in zip(pending, results, strict=True):
            set_row(i, a, s, r.get("subject"))
            if transform:
                prior_sums.add(rec)
            cands = [v["answer"] for v in r["votes"]] if scfg.candidates_only else None
            f.write(json.dumps([i, a, s, rec, cands, r.get("subject")], ensure_ascii=False) + "\n")
        pending.clear()

    mean_path = tmp_name(out / "mean_votes.jsonl")  # rows not justified, answered from the mean vote
    with open(justified_path, "w", encoding="utf-8") as f, open(mean_path, "w", encoding="utf-8") as mf:
        for i, (r, ex) in enumerate(_rows(votes_path, unlabeled)):
            votes = canonical_vote([v["answer"] for v in r["votes"]], kind)
            unanimous[i] = len(set(votes)) == 1 and votes[0] is not None
            if scfg.justify == "all" or (scfg.justify == "disagree" and not unanimous[i]):
                pending.append((i, r, ex))
                n_justified += 1
                if len(pending) == JUSTIFY_BLOCK:
                    justify_pending(f)
            elif mean_vote:
                d = [round(float(x), 6) for x in adjusted(np.mean([v["dist"] for v in r["votes"]], axis=0), None)]
                a, s = decide(d, None, None, confidence)
                set_row(i, a, s, r.get("subject"))
                if transform:
                    prior_sums.add(d)
                mf.write(json.dumps([i, a, s, d, None, r.get("subject")], ensure_ascii=False) + "\n")
            else:
                a = majority(votes)
                set_row(i, a, _vote_score(r, a, kind, confidence), r.get("subject"))
        if pending:
            justify_pending(f)
    priors = prior_sums.priors()
    if align:  # the divisor becomes mean / target: each class pulled to its share of the labeled rows
        priors = {k: v / shares.get(k, np.full(k, 1.0 / k)) for k, v in priors.items()}
    if transform:  # pass 1b: every such row again, answered and scored from its rescaled distribution
        for path in (justified_path, mean_path):
            with open(path, encoding="utf-8") as jf:
                for line in jf:
                    i, _, _, d, cands, subject = json.loads(line)
                    set_row(i, *decide(d, cands, priors[len(d)], confidence), subject)
    names = {code: g for g, code in group_names.items()}
    groups = [names[int(c)] for c in group_code]
    letter_shares = ({LETTERS[j]: float(x) for n, v in shares.items() for j, x in enumerate(v)}
                     if len(shares) == 1 else None)  # quotas need one label set
    if scfg.rule == "class_quota" and letter_shares is None:
        justified_path.unlink()
        mean_path.unlink()
        raise SelectionError("select.rule class_quota needs a labeled split whose rows share one number of options")
    keep, info = select_mask(scores, scfg, list(unanimous), groups, list(valid), letter_shares)
    del groups
    if not any(keep):
        justified_path.unlink()
        mean_path.unlink()
        raise SelectionError(
            f"select: no pseudo-label passed the '{scfg.rule}' rule ({int(valid.sum())} of {n} rows had an answer); "
            "raise select.theta or select.threshold"
        )
    # pass 2: one record per row, streamed to the output file
    per_class: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    lean_answers: Counter[str] = Counter()  # justified answers and their rows' votes, for the lean check
    lean_votes: Counter[str] = Counter()

    def records() -> Iterator[dict[str, Any]]:
        with open(justified_path, encoding="utf-8") as jf, open(mean_path, encoding="utf-8") as mf:
            for i, (r, ex) in enumerate(_rows(votes_path, unlabeled)):
                votes = canonical_vote([v["answer"] for v in r["votes"]], kind)
                is_justified = scfg.justify == "all" or (scfg.justify == "disagree" and not unanimous[i])
                target = None
                if is_justified or mean_vote:
                    _, answer, _, extra, cands, _ = json.loads((jf if is_justified else mf).readline())
                    if transform:
                        answer = decide(extra, cands, priors[len(extra)], confidence)[0]
                        target = adjusted(extra, priors[len(extra)])
                    elif mean_vote:
                        target = extra
                    if not is_justified:
                        extra = None
                else:
                    answer, extra = majority(votes), None
                rec = {
                    "id": r["id"], "row": r["row"], "question": r["question"], "options": r["options"],
                    "votes": r["votes"], "unanimous": bool(unanimous[i]),
                    "justified": is_justified, "answer": answer, "score": round(float(scores[i]), 6),
                    "selected": keep[i],
                }
                if is_justified and kind == "choice":
                    rec["justify_dist"] = extra
                if is_justified and kind == "free":
                    rec["justify_text"] = extra
                if target is not None:  # the distribution the answer was read from, for soft targets
                    rec["target_dist"] = [round(float(x), 6) for x in target]
                if ex.answer is not None:
                    rec["gold"] = ex.answer
                    rec["correct"] = answers_match(answer, ex.answer, kind)
                per_class[str(answer)][0] += 1
                per_class[str(answer)][1] += int(keep[i])
                if is_justified and kind == "choice" and answer is not None:
                    lean_answers[str(answer)] += 1
                    lean_votes.update(str(v) for v in votes if v is not None)
                yield rec

    atomic_write_jsonl(out / "pseudo_labels.jsonl", records())
    os.unlink(justified_path)
    os.unlink(mean_path)
    lean = lean_from_counts(lean_answers, lean_votes)
    if lean:
        log(f"warning: select: the justification answered {lean['answer']} for {lean['share']:.0%} of the "
            f"{lean['rows']} rows it justified, where the configurations voted {lean['answer']} "
            f"{lean['vote_share']:.0%} of the time; a small model's justifier can lean to one option whatever "
            "the question" + ("" if calibrate else ": try --select.calibrate true --select.candidates_only true"))
    atomic_write_json(out / "selection.json", {
        **info, "theta": scfg.theta, "justify": scfg.justify, "confidence": confidence,
        "confidence_note": "normalised option entropy" if confidence == "entropy" else "mean NLL per token",
        "template": TEMPLATE_IDS["justify_" + kind], "rows": n, "selected": int(sum(keep)),
        "justified": n_justified, "unanimous": int(unanimous.sum()),
        "candidates_only": scfg.candidates_only and kind == "choice", "calibrated": calibrate,
        **({"vote": scfg.vote, "aligned": align,
            "target_shares": {str(k): [round(float(x), 6) for x in v] for k, v in sorted(shares.items())}}
           if mean_vote or align or scfg.rule == "class_quota" else {}),
        "prior": {str(k): [round(float(x), 6) for x in v] for k, v in sorted(priors.items())},
        "lean": lean,
        "per_class": {k: {"predicted": v[0], "selected": v[1]} for k, v in sorted(per_class.items())},
    })
    return out / "pseudo_labels.jsonl"


def row_distribution(rec: dict[str, Any]) -> list[float]:
    """The option distribution a pseudo-label row's answer was read from: the rescaled or mean one where
    the run kept it, else the justification's, else the mean of the votes."""
    if rec.get("target_dist") is not None:
        return rec["target_dist"]
    if rec.get("justify_dist") is not None:
        return list(adjusted(rec["justify_dist"], None))
    return list(adjusted(np.mean([v["dist"] for v in rec["votes"]], axis=0), None))


def selected_examples(pseudo_path: Path, unlabeled: Split) -> list[Example]:
    """The selected rows as training examples with their pseudo-label as the answer (never the gold)."""
    chosen = {r["id"]: r for r in iter_jsonl(pseudo_path) if r["selected"] and r["answer"] is not None}
    out = []
    for e in unlabeled.iter_examples():
        r = chosen.get(e.id)
        if r is not None:
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
