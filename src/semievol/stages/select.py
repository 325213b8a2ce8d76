"""Self-justification, confidence and adaptive selection of pseudo-labels, as four steps.

1. ``judge``: the warm model sees each question with the n candidate answers and gives the final one
   (every question, or only those whose votes disagree); the others keep the majority vote (or the mean of
   the votes' distributions). Confidence: the option distribution's normalised entropy (multiple choice) or
   the paper's mean negative log-likelihood per token of the justified response (free form).
2. ``calibrate``: batch calibration divides each distribution by its mean over the rows, so a small model's
   lean to one position does not decide the labels; alignment pulls each class to its labeled share.
3. ``choose``: a selection rule keeps the confident rows (``scoring.select_mask``, ``scoring.rank_by_class``).
4. ``write``: ``pseudo_labels.jsonl`` (one line per unlabeled row, gold answers attached for the record
   only) and ``selection.json``. Votes and the unlabeled split are streamed; one small ``Judged`` a row.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..answers import LETTERS, answers_match, canonical_vote, extract_free
from ..config import SelectConfig
from ..engines import Engine
from ..engines.cached import CALL_CHUNK
from ..errors import UserError
from ..jsonio import atomic_write_json, atomic_write_jsonl, iter_jsonl
from ..progress import log
from ..prompts import TEMPLATE_IDS, justify_prompt
from ..runctx import Adapter, RunContext
from ..tasks import Example, Split
from .scoring import (
    QUOTA_RULES,
    adjusted,
    class_shares,
    decide,
    lean_from_counts,
    lean_warning,
    majority,
    mean_distributions,
    new_to_warm,
    rank_by_class,
    row_counts,
    select_mask,
    split_share,
    vote_score,
)

# rows justified per round of engine calls: a multiple of the cache's chunk, so the cache cuts the calls at
# the same places as one call over every row would (a resumed run then asks for nothing already cached)
JUSTIFY_BLOCK = CALL_CHUNK * 16


class SelectionError(UserError):
    """Selection kept nothing, or its inputs are unusable."""


@dataclass
class Judged:
    """One unlabeled row's pseudo-label, as the steps of selection refine it."""

    unanimous: bool
    justified: bool
    subject: str | None
    answer: str | None = None
    score: float = math.inf
    dist: list[float] | None = None
    """The option distribution the answer is read from: the justification's, or the mean of the votes."""
    candidates: list[str | None] | None = None
    """With ``select.candidates_only``: the answers the configurations gave, the only ones that may win."""
    text: str | None = None
    """A free-form justification's response."""
    target: list[float] | None = None
    """The rescaled distribution after calibration or alignment (soft targets train on it)."""


@dataclass(frozen=True)
class How:
    """What the steps read of the config and the task."""

    cfg: SelectConfig
    kind: str
    numeric: bool
    seed: int
    max_new_tokens: int
    student: bool = False  # evolve trains from the base model (mode 'fresh'): what repeated labels can teach

    @property
    def confidence(self) -> str:
        return self.cfg.confidence if self.kind == "choice" else "nll"

    @property
    def mean_vote(self) -> bool:
        return self.cfg.vote == "mean" and self.kind == "choice"

    @property
    def rescaled(self) -> bool:
        """Every distribution rescaled by one vector per number of options (calibration or alignment)."""
        return (self.cfg.calibrate or self.cfg.align) and self.kind == "choice"


def run_select(ctx: RunContext, votes: Path, out: Path, warm: Adapter) -> Path:
    """Write ``pseudo_labels.jsonl`` and ``selection.json`` into ``out`` from propagate's ``votes``."""
    c, task = ctx.cfg, ctx.task
    how = How(c.select, task.kind, task.numeric, c.seed, c.model.max_new_tokens, c.evolve.mode == "fresh")
    check_votes(votes, len(task.unlabeled))
    shares = class_shares(task.labeled.examples) if how.cfg.align or how.cfg.rule in QUOTA_RULES else {}
    judged = judge(ctx.cached_engine(), lambda: ctx.adapter(warm), votes, task.unlabeled, how)
    priors = calibrate(judged, how, shares)
    keep, info = choose(judged, how.cfg, shares)
    write(out, votes, task.unlabeled, judged, keep, info, priors, shares, how)
    return out / "pseudo_labels.jsonl"


def check_votes(votes: Path, n_unlabeled: int) -> None:
    """Stop unless the votes file has one row, not marked failed, for every unlabeled row."""
    n, failed = _count_lines(votes)
    if failed:  # a failed row has no votes: never let it pass for one that was voted on
        raise SelectionError(f"{votes}: {len(failed)} rows failed in propagate (first: {failed[0]}); rerun propagate")
    if n != n_unlabeled:
        raise SelectionError(f"{votes}: {n} rows but the unlabeled split has {n_unlabeled}; rerun propagate")


def judge(engine: Engine, warm: Any, votes: Path, unlabeled: Split, how: How) -> list[Judged]:
    """Step 1: an answer and a score for every row. ``warm()`` adds the warm adapter to the engine and
    returns its name; it is called only when some row is justified."""
    cfg = how.cfg
    judged: list[Judged] = []
    block: list[tuple[Judged, dict[str, Any], Example]] = []
    name: list[str] = []

    def flush() -> None:
        if not name:
            name.append(warm())
        justify(engine, name[0], block, how)
        block.clear()

    for r, ex in _rows(votes, unlabeled):
        answers = canonical_vote([v["answer"] for v in r["votes"]], how.kind)
        unanimous = len(set(answers)) == 1 and answers[0] is not None
        j = Judged(unanimous, cfg.justify == "all" or (cfg.justify == "disagree" and not unanimous), r.get("subject"))
        judged.append(j)
        if j.justified:
            block.append((j, r, ex))
            if len(block) == JUSTIFY_BLOCK:
                flush()
        elif how.mean_vote:
            j.dist = [round(float(x), 6) for x in adjusted(np.mean([v["dist"] for v in r["votes"]], axis=0), None)]
            j.answer, j.score = decide(j.dist, None, None, how.confidence)
        else:
            j.answer = majority(answers)
            j.score = vote_score(r, j.answer, how.kind, how.confidence)
    if block:
        flush()
    return judged


def justify(engine: Engine, warm: str, block: list[tuple[Judged, dict[str, Any], Example]], how: How) -> None:
    """The warm model's answer and score for each (row, votes, example) of ``block``, set on the row."""
    prompts = [justification(r, ex, how.kind, reverse=False) for _, r, ex in block]
    if how.kind == "choice":
        sizes = [len(ex.options or []) for _, _, ex in block]
        dists = engine.score_options(prompts, sizes, warm)
        if how.cfg.fair_order:  # the same question with its options reversed, mapped back and averaged
            flipped = engine.score_options(
                [justification(r, ex, how.kind, reverse=True) for _, r, ex in block], sizes, warm
            )
            dists = [(np.asarray(a) + np.asarray(b)[::-1]) / 2 for a, b in zip(dists, flipped, strict=True)]
        for (j, r, _), d in zip(block, dists, strict=True):
            j.dist = [round(float(x), 6) for x in d]
            j.candidates = [v["answer"] for v in r["votes"]] if how.cfg.candidates_only else None
            j.answer, j.score = decide(j.dist, j.candidates, None, how.cfg.confidence)
        return
    samples = engine.generate(prompts, 1, 0.0, how.seed, how.max_new_tokens, warm)
    for (j, r, _), (s,) in zip(block, samples, strict=True):
        j.answer = extract_free(s.text, how.numeric)
        if j.answer is None:
            j.answer = majority(canonical_vote([v["answer"] for v in r["votes"]], how.kind))
        j.score, j.text = s.mean_nll, s.text


def calibrate(judged: list[Judged], how: How, shares: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Step 2: with calibration or alignment, each distribution divided by one vector per number of options
    (its mean over the rows; over the labeled share too when aligning) and the answer read again. Returns
    those divisors (none when neither is on)."""
    if not how.rescaled:
        return {}
    priors = mean_distributions([j.dist for j in judged if j.dist is not None])
    if how.cfg.align:  # the divisor becomes mean / target: each class pulled to its share of the labeled rows
        priors = {k: v / shares.get(k, np.full(k, 1.0 / k)) for k, v in priors.items()}
    for j in judged:
        if j.dist is not None:
            prior = priors[len(j.dist)]
            j.answer, j.score = decide(j.dist, j.candidates, prior, how.confidence)
            j.target = [round(float(x), 6) for x in adjusted(j.dist, prior)]
    return priors


def choose(judged: list[Judged], cfg: SelectConfig, shares: dict[int, np.ndarray]) -> tuple[list[bool], dict[str, Any]]:
    """Step 3: which rows the selection rule keeps, and the thresholds it used."""
    by_class = cfg.rule in ("class_percentile", "class_quota")
    label_set = next(iter(shares.values())) if len(shares) == 1 else None  # quotas need one label set
    if cfg.rule in QUOTA_RULES and label_set is None:
        raise SelectionError(f"select.rule {cfg.rule} needs a labeled split whose rows share one number of options")
    if cfg.rule == "class_rank" and label_set is not None:  # (None has raised above)
        dists, answers = [j.target or j.dist for j in judged], [j.answer for j in judged]
        keep, answers, info = rank_by_class(dists, answers, label_set, cfg.theta)
        for j, answer in zip(judged, answers, strict=True):
            j.answer = answer
    else:
        keep, info = select_mask(
            [j.score for j in judged],
            cfg,
            [j.unanimous for j in judged],
            [j.answer if by_class else j.subject for j in judged],
            [j.answer is not None for j in judged],
            None if label_set is None else {LETTERS[j]: float(x) for j, x in enumerate(label_set)},
        )
    if not any(keep):
        valid = sum(j.answer is not None for j in judged)
        raise SelectionError(
            f"select: no pseudo-label passed the '{cfg.rule}' rule ({valid} of {len(judged)} rows "
            "had an answer); raise select.theta or select.threshold"
        )
    return keep, info


def write(
    out: Path,
    votes: Path,
    unlabeled: Split,
    judged: list[Judged],
    keep: list[bool],
    info: dict[str, Any],
    priors: dict[int, np.ndarray],
    shares: dict[int, np.ndarray],
    how: How,
) -> None:
    """Step 4: ``pseudo_labels.jsonl``, one record per row streamed to the file, and ``selection.json``."""
    cfg, kind = how.cfg, how.kind
    per_class: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    lean_answers: Counter[str] = Counter()  # justified answers and their rows' votes, for the lean check
    lean_votes: Counter[str] = Counter()
    own: Counter[str] = Counter()  # row_counts: kept rows against the warm model's vote, the warm members' splits

    def records() -> Iterator[dict[str, Any]]:
        for (r, ex), j, kept in zip(_rows(votes, unlabeled), judged, keep, strict=True):
            rec = {
                "id": r["id"],
                "row": r["row"],
                "question": r["question"],
                "options": r["options"],
                "votes": r["votes"],
                "unanimous": j.unanimous,
                "justified": j.justified,
                "answer": j.answer,
                "score": round(float(j.score), 6),
                "selected": kept,
            }
            if j.justified and kind == "choice":
                rec["justify_dist"] = j.dist
            if j.justified and kind == "free":
                rec["justify_text"] = j.text
            target = j.target if how.rescaled else j.dist if how.mean_vote else None
            if target is not None:  # the distribution the answer was read from, for soft targets
                rec["target_dist"] = target
            if ex.answer is not None:
                rec["gold"] = ex.answer
                rec["correct"] = answers_match(j.answer, ex.answer, kind)
            per_class[str(j.answer)][0] += 1
            per_class[str(j.answer)][1] += int(kept)
            own.update(row_counts(r["votes"], j.answer, kind, kept))
            if j.justified and kind == "choice" and j.answer is not None:
                lean_answers[str(j.answer)] += 1
                lean_votes.update(
                    str(v) for v in canonical_vote([v["answer"] for v in r["votes"]], kind) if v is not None
                )
            yield rec

    atomic_write_jsonl(out / "pseudo_labels.jsonl", records())
    lean, new = lean_from_counts(lean_answers, lean_votes), new_to_warm(own, student=how.student)
    if new and new["note"]:
        log(new["note"])
    if lean:
        log(lean_warning(lean, cfg.calibrate))
    atomic_write_json(
        out / "selection.json",
        {
            **info,
            "theta": cfg.theta,
            "justify": cfg.justify,
            "confidence": how.confidence,
            "confidence_note": "normalised option entropy" if how.confidence == "entropy" else "mean NLL per token",
            "template": TEMPLATE_IDS["justify_" + kind],
            "rows": len(judged),
            "selected": int(sum(keep)),
            "justified": sum(j.justified for j in judged),
            "unanimous": sum(j.unanimous for j in judged),
            "candidates_only": cfg.candidates_only and kind == "choice",
            "calibrated": cfg.calibrate and kind == "choice",
            **(
                {
                    "vote": cfg.vote,
                    "aligned": cfg.align and kind == "choice",
                    "target_shares": {str(k): [round(float(x), 6) for x in v] for k, v in sorted(shares.items())},
                }
                if how.mean_vote or (cfg.align and kind == "choice") or cfg.rule in QUOTA_RULES
                else {}
            ),
            "prior": {str(k): [round(float(x), 6) for x in v] for k, v in sorted(priors.items())},
            "lean": lean,
            "new_to_warm": new,
            "members_split": split_share(own),
            "per_class": {k: {"predicted": v[0], "selected": v[1]} for k, v in sorted(per_class.items())},
        },
    )


def justification(r: dict[str, Any], ex: Example, kind: str, reverse: bool) -> Any:
    """The justification prompt of one row; ``reverse`` lists the options (and letters the candidates) in
    reverse order, for position-fair scoring."""
    n = len(ex.options or [])
    if reverse:
        ex = Example(
            id=ex.id,
            question=ex.question,
            options=list(reversed(ex.options or [])),
            answer=None,
            subject=ex.subject,
            row=ex.row,
        )
    cands = []
    for v in r["votes"]:
        c = v["answer"] or "(no answer)"
        if kind == "choice" and c in LETTERS[:n]:
            j = LETTERS.index(c)
            j = n - 1 - j if reverse else j
            c = f"{LETTERS[j]}. {(ex.options or [])[j]}"
        cands.append(c)
    return justify_prompt(ex, kind, cands, [v.get("text", "") for v in r["votes"]])


def _rows(votes_path: Path, unlabeled: Split) -> Iterator[tuple[dict[str, Any], Example]]:
    """(votes row, unlabeled example) pairs, checked to be the same row."""
    for i, (r, ex) in enumerate(zip(iter_jsonl(votes_path), unlabeled.iter_examples(), strict=False)):
        if r.get("id") != ex.id:
            raise SelectionError(
                f"{votes_path}: line {i + 1} is row '{r.get('id')}' where the unlabeled split has "
                f"'{ex.id}'; rerun propagate"
            )
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


def selected_examples(pseudo_path: Path, unlabeled: Split) -> list[Example]:
    """The selected rows as training examples with their pseudo-label as the answer (never the gold)."""
    chosen = {r["id"]: r for r in iter_jsonl(pseudo_path) if r["selected"] and r["answer"] is not None}
    out = []
    for e in unlabeled.iter_examples():
        r = chosen.get(e.id)
        if r is not None:
            out.append(
                Example(
                    id=e.id,
                    question=e.question,
                    options=e.options,
                    answer=r["answer"],
                    rationale=reasoning(r.get("justify_text")),
                    subject=e.subject,
                    row=e.row,
                )
            )
    return out


def reasoning(text: str | None) -> str | None:
    """The reasoning part of a justified free-form response (everything before its last 'Answer' line)."""
    if not text:
        return None
    lines = text.strip().splitlines()
    for j in range(len(lines) - 1, -1, -1):
        if "answer" in lines[j].lower():
            body = "\n".join(lines[:j]).strip()
            return body or None
    return None
