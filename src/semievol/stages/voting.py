"""How one chunk of unlabeled rows is voted on: every configuration answers every row, a multiple-choice
vote drawn from the option distribution with a generator seeded by (run seed, configuration, row id), so a
row's votes do not depend on chunking, sharding, resumption or which process (or Ray actor) voted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..answers import LETTERS, extract_free
from ..config import AnswerConfig
from ..engines.base import CallsFailed, Engine
from ..prompts import answer_prompt
from ..tasks import Example


def row_rng(seed: int, config_index: int, row_id: str) -> np.random.Generator:
    h = hashlib.sha256(f"{seed}\x00{config_index}\x00{row_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def draw_vote(dist: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Argmax at temperature 0, else a draw from dist ** (1 / T), renormalised."""
    if temperature <= 0:
        return int(np.argmax(dist))
    logits = np.log(np.clip(dist, 1e-30, 1.0)) / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


@dataclass(frozen=True)
class Voting:
    """What a chunk's votes depend on besides its rows, their demos and the engine. Plain data: the Ray
    engine's actors each get a copy and call ``vote_chunk`` with it, as this process does."""

    kind: str
    numeric: bool
    seed: int
    max_new_tokens: int
    configs: tuple[AnswerConfig, ...]
    warm: str | None  # the warm adapter's name in the engine
    members: tuple[str, ...] = ()  # the warm members' names ('members' configurations average them), warm first


def vote_chunk(
    engine: Engine,
    how: Voting,
    chunk: list[Example],
    demos_for: list[list[Example]],
    views: list[np.ndarray | None] | None = None,
) -> list[dict[str, Any]]:
    """One line per row of ``chunk``: its votes, or a failure record if any of its model calls failed for good.

    ``views[i]``, where given, holds configuration i's distributions for the chunk's rows, computed by the
    embedder's view (``EmbedderView.chunk_views``) instead of the engine."""
    kind, seed = how.kind, how.seed
    rows: list[dict[str, Any]] = [
        {"id": e.id, "row": e.row, "question": e.question, "options": e.options, "subject": e.subject, "votes": []}
        for e in chunk
    ]
    failed: dict[int, str] = {}
    # multiple choice: configurations that differ only in temperature share one forward pass per row (the
    # temperature only reshapes the distribution the pass gives)
    scored: dict[tuple[str | None, int, int], dict[int, np.ndarray]] = {}

    def distributions(adapter: str | None, c: AnswerConfig, live: list[int]) -> list[np.ndarray]:
        key = (adapter, c.demos, c.phrasing)
        if key not in scored or any(i not in scored[key] for i in live):
            prompts = [answer_prompt(chunk[i], kind, demos_for[i][: c.demos], c.phrasing) for i in live]
            try:
                results = engine.score_options(prompts, [len(chunk[i].options or []) for i in live], adapter)
            except CallsFailed as e:  # the rows answered are kept for the configurations that share the pass
                scored[key] = {i: r for i, r in zip(live, e.results, strict=True) if r is not None}
                raise
            scored[key] = dict(zip(live, results, strict=True))
        return [scored[key][i] for i in live]

    each_answers: dict[int, str] = {}  # row -> each warm member's answer, under the 'members' configuration voting

    def members_mean(c: AnswerConfig, live: list[int]) -> list[np.ndarray | None]:
        """The mean of the warm members' distributions; a row any member's call failed on fails."""
        each: list[list[Any]] = []
        errors: dict[int, str] = {}
        for name in how.members:
            try:
                each.append(distributions(name, c, live))
            except CallsFailed as e:
                errors.update(e.errors)
                each.append(e.results)
        mean = [None if j in errors else np.mean([d[j] for d in each], axis=0) for j in range(len(live))]
        for j in set(range(len(live))) - set(errors):
            each_answers[live[j]] = "".join(LETTERS[int(np.argmax(d[j]))] for d in each)
        if errors:
            raise CallsFailed(mean, errors)
        return mean

    for ci, c in enumerate(how.configs):
        adapter = how.warm if c.model == "warm" else None
        live = [i for i in range(len(chunk)) if i not in failed]  # a failed row asks for nothing more
        try:
            if c.is_view:
                view = views[ci] if views is not None else None
                assert view is not None, "the view answers its configurations"
                results = [view[i] for i in live]
            elif kind == "choice" and c.model == "members":
                results = members_mean(c, live)
            elif kind == "choice":
                results = distributions(adapter, c, live)
            else:
                prompts = [answer_prompt(chunk[i], kind, demos_for[i][: c.demos], c.phrasing) for i in live]
                results = engine.generate(prompts, 1, c.temperature, seed * 1000 + ci, how.max_new_tokens, adapter)
        except CallsFailed as e:
            results = e.results
            failed.update({live[j]: f"{c.name}: {msg}" for j, msg in e.errors.items()})
        for i, res in zip(live, results, strict=True):
            if i in failed:
                continue
            if kind == "choice":
                v = draw_vote(res, c.temperature, row_rng(seed, ci, chunk[i].id))
                vote = {"config": c.name, "answer": LETTERS[v], "dist": [round(float(x), 6) for x in res]}
                if c.model == "members":  # whether the warm models agree: how much their mean has to teach
                    vote["members"] = each_answers[i]
                rows[i]["votes"].append(vote)
            else:
                s = res[0]
                rows[i]["votes"].append(
                    {
                        "config": c.name,
                        "answer": extract_free(s.text, how.numeric),
                        "text": s.text,
                        "mean_nll": round(s.mean_nll, 6),
                    }
                )
    for i, error in failed.items():
        rows[i] = {"id": chunk[i].id, "row": chunk[i].row, "failed": True, "error": error}
    return rows
