"""The pure arithmetic of selection: scores, answers from distributions, calibration and alignment, the
justifier's lean, and the selection rules. No files and no model calls: each function is tested alone.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from ..answers import LETTERS, answers_match
from ..config import SelectConfig
from ..tasks import Example


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


def decide(
    dist: list[float], candidates: list[str | None] | None, prior: np.ndarray | None, confidence: str
) -> tuple[str, float]:
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
        if n and e.answer is not None and e.answer in LETTERS[:n]:
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
    (``select.calibrate``) is the fix to try. None when there is no such lean. A majority class the gold
    answers share (FPB's 'B') is not flagged unless the justifier exceeds the votes by the margin."""
    n, nv = sum(answers.values()), sum(votes.values())
    if n < 20 or not nv:
        return None
    top, k = answers.most_common(1)[0]
    share, vote_share = k / n, votes[top] / nv
    if share >= 0.8 and share >= vote_share + 0.25:
        return {"answer": top, "share": round(share, 3), "vote_share": round(vote_share, 3), "rows": n}
    return None


def lean_warning(lean: dict[str, Any], calibrated: bool) -> str:
    """The log line for a justifier's lean (``lean_from_counts``), with the fix when it is not applied yet."""
    return (
        f"warning: select: the justification answered {lean['answer']} for {lean['share']:.0%} of the "
        f"{lean['rows']} rows it justified, where the configurations voted {lean['answer']} "
        f"{lean['vote_share']:.0%} of the time; a small model's justifier can lean to one option whatever "
        "the question" + ("" if calibrated else ": try --select.calibrate true --select.candidates_only true")
    )


WARM_OWN = "warm:0:0"
"""The configuration whose vote is the warm model's own answer: no demos, greedy."""


def warm_agreement(votes: list[dict[str, Any]], answer: str | None, kind: str) -> tuple[str, ...]:
    """For a kept row: ('kept',) when its pseudo-label is the warm model's own vote, ('kept', 'new') when the
    two differ, () when no configuration gave the warm model's own answer. Counted over the kept rows."""
    own = next((v for v in votes if v.get("config") == WARM_OWN), None)
    if own is None:
        return ()
    return ("kept",) if answers_match(own.get("answer"), answer, kind) else ("kept", "new")


def members_split(votes: list[dict[str, Any]]) -> tuple[str, ...]:
    """For any row: ('members',) when the warm models of a 'members' configuration gave one answer,
    ('members', 'split') when they differ, () without such a configuration (or from votes written before
    the members' answers were recorded). Counted over the rows."""
    own = next((v["members"] for v in votes if "members" in v), None)
    if own is None:
        return ()
    return ("members", "split") if len(set(own)) > 1 else ("members",)


def row_counts(votes: list[dict[str, Any]], answer: str | None, kind: str, kept: bool) -> tuple[str, ...]:
    """What a row adds to the counts ``new_to_warm`` and ``split_share`` read."""
    return (warm_agreement(votes, answer, kind) if kept else ()) + members_split(votes)


def split_share(counts: Counter[str]) -> dict[str, Any] | None:
    """The rows the warm models answered differently, of those they answered: where they agree, their mean
    has little to teach a student that any one of them does not know. In issue 22's 64-label cells the
    evolved model's gain over the warm models followed the test rows they split on (few_labels_v5.md): FPB's
    answered about a fifth to a quarter of them differently and gained 1-4 points, SST-2's 30-47% and
    emotion's 57-75% (seeds 6 and 7), 3-10: it told the tasks apart, not a task's draws."""
    if not counts["members"]:
        return None
    return {"rows": counts["members"], "split": counts["split"], "share": round(counts["split"] / counts["members"], 4)}


def new_to_warm(counts: Counter[str], student: bool = False) -> dict[str, Any] | None:
    """How many kept pseudo-labels differ from the warm model's own answers, and the note to log when none
    does: evolve is then shown only answers the warm model already gives (at 64 labeled rows of FPB and
    SST-2 with recipe v4, 0 of 350 each: the evolved model, the warm one trained on, ended within a point of
    it). ``student``: evolve trains a model from the base model (evolve.mode 'fresh'), which learns the warm
    model's answers through the unlabeled rows instead of repeating them to itself; issue 22's one-teacher
    form measured such students -0.6 to +9.2 points from their teacher (four draws), so the note says what
    the student learns, not that nothing can come of it. None without the warm model's vote."""
    if not counts["kept"]:
        return None
    n, new = counts["kept"], counts["new"]
    if new:
        note = None
    elif student:
        note = (
            f"note: select: all {n} kept pseudo-labels are the warm model's own answers ({WARM_OWN}): the "
            "evolved model, trained from the base model, learns the warm model through the unlabeled rows; "
            "what it gains over the warm model is that transfer, not corrected labels"
        )
    else:
        note = (
            f"note: select: all {n} kept pseudo-labels are the warm model's own answers ({WARM_OWN}): evolve "
            "can only repeat what it already says; what adds is a teacher that corrects it where it is wrong"
        )
    return {"kept": n, "new": new, "share": round(new / n, 4), "note": note, "student": student}


def select_mask(
    scores: list[float],
    cfg: SelectConfig,
    unanimous: list[bool] | None = None,
    groups: list[str | None] | None = None,
    valid: list[bool] | None = None,
    shares: dict[str, float] | None = None,
) -> tuple[list[bool], dict[str, Any]]:
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
        raise ValueError(f"select.rule: unknown rule {cfg.rule}")
    return [bool(x) for x in keep], info


QUOTA_RULES = ("class_quota", "class_rank")
"""The selection rules that share the kept rows among the classes by the labeled split's class shares."""


def class_rank(dists: np.ndarray, shares: np.ndarray, theta: float) -> np.ndarray:
    """The 'class_rank' rule: for each row the index of the class it is kept for, or -1.

    ``dists``: one option distribution per row (n x k); ``shares``: the labeled split's class shares. The
    budget, ``theta`` percent of the rows, is shared among the classes in proportion to ``shares``; each class
    takes the rows with the highest probability of it relative to its mean probability over the rows, and the
    (row, class) pairs are taken in that order, so a row wanted by two classes goes to the one it stands out
    for most and each class fills its quota from the rows left."""
    n, k = dists.shape
    budget = int(round(theta / 100 * n))
    quota = np.floor(budget * shares / shares.sum() + 0.5).astype(int)
    rel = dists / np.maximum(dists.mean(axis=0), 1e-12)
    order = np.argsort(-rel, axis=None, kind="stable")
    label = np.full(n, -1)
    left = quota.copy()
    for flat in order:
        row, c = divmod(int(flat), k)
        if label[row] < 0 and left[c] > 0:
            label[row] = c
            left[c] -= 1
            if not left.any():
                break
    return label


def rank_by_class(
    dists: list[list[float] | None], answers: list[str | None], shares: np.ndarray, theta: float
) -> tuple[list[bool], list[str | None], dict[str, Any]]:
    """The 'class_rank' rule over the rows with a distribution of the labeled split's width (the rescaled one
    when calibrating or aligning): which rows are kept, every row's answer (a kept row's is the class it was
    kept for) and the rule's record."""
    rows = [i for i, d in enumerate(dists) if d is not None and len(d) == len(shares)]
    keep, answers = [False] * len(dists), list(answers)
    if not rows:
        return keep, answers, {"rule": "class_rank"}
    label = class_rank(np.asarray([dists[i] for i in rows], dtype=np.float64), shares, theta)
    relabeled = 0
    for i, c in zip(rows, label, strict=True):
        if c >= 0:
            keep[i] = True
            relabeled += answers[i] != LETTERS[c]
            answers[i] = LETTERS[c]
    quotas = {LETTERS[c]: int((label == c).sum()) for c in range(len(shares))}
    return keep, answers, {"rule": "class_rank", "quota_per_class": quotas, "relabeled": relabeled}


def vote_score(row: dict[str, Any], answer: str | None, kind: str, confidence: str) -> float:
    votes = row["votes"]
    if kind == "choice":
        mean = np.mean([v["dist"] for v in votes], axis=0)
        if confidence == "entropy":
            return normalized_entropy(mean)
        i = LETTERS.index(answer) if answer else 0
        return float(-math.log(max(mean[i] / mean.sum(), 1e-30)))
    nll = [
        v["mean_nll"]
        for v in votes
        if v["answer"] is not None and v["answer"] == answer and math.isfinite(v["mean_nll"])
    ]
    return float(np.mean(nll)) if nll else float("inf")


def row_distribution(rec: dict[str, Any]) -> list[float]:
    """The option distribution a pseudo-label row's answer was read from: the rescaled or mean one where
    the run kept it, else the justification's, else the mean of the votes."""
    if rec.get("target_dist") is not None:
        return rec["target_dist"]
    if rec.get("justify_dist") is not None:
        return list(adjusted(rec["justify_dist"], None))
    return list(adjusted(np.mean([v["dist"] for v in rec["votes"]], axis=0), None))


def mean_distributions(dists: list[list[float]]) -> dict[int, np.ndarray]:
    """The mean of the (renormalised) distributions per number of options: batch calibration's prior."""
    sums: dict[int, np.ndarray] = {}
    counts: Counter[int] = Counter()
    for dist in dists:
        d = np.asarray(dist, dtype=np.float64)
        sums[len(d)] = sums.get(len(d), np.zeros(len(d))) + d / d.sum()
        counts[len(d)] += 1
    return {k: v / counts[k] for k, v in sums.items()}
