"""In-context propagation and collaborative pseudo-labelling: n configurations vote on each unlabeled question.

Each configuration is (base or warm model, number of retrieved demos, temperature). On the multiple-choice
path a vote comes from one forward pass: the exact distribution over the option letters, from which the
vote is drawn at the configuration's temperature with a generator seeded by (run seed, configuration, row
id), so a row's votes do not depend on chunking, sharding or resumption. On the free-form path each
configuration samples a response with token log-probabilities and the answer is extracted from it.

Votes are appended to ``votes.jsonl`` one chunk at a time (flushed and fsynced); a rerun skips the rows
already there. The unlabeled split is read as a stream, so memory does not grow with its rows; the nearest
labeled neighbours are found per fixed block of ``NN_BLOCK`` unlabeled rows (counted from the start of the
split), so they too do not depend on chunking, sharding or resumption. A shard (``--shard I/N``) votes on
one contiguous range of rows into its own file; ``stages.shards`` merges them.
With engine ``ray`` (or ``ray-vllm``) the chunks are voted on by a pool of Ray actors (``engines.ray_pool``)
with the same ``vote_chunk`` and come back in order, so the file is the same as in one process.
A row whose model calls failed for good (a server that kept failing after the engine's retries) is
appended as ``{"id", "failed": true, "error"}`` and the stage ends with an error giving the count; a rerun
retries those rows only. Readers take the last line of each id. The unlabeled split's gold answers are
never read here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AnswerConfig, ConfigError, parse_answer_config
from ..engines import ACTOR_ENGINE, EngineError
from ..jsonio import append_jsonl, atomic_write_json, atomic_write_jsonl, iter_jsonl_prefix, read_jsonl_prefix
from ..progress import log, progress
from ..prompts import TEMPLATE_IDS
from ..retrieval import cached_embeddings, nearest, text_embedder
from ..runctx import Adapter, RunContext
from ..tasks import Example, Split
from ..views import Probe, ViewError, knn_distributions, label_indices, shared_options
from .voting import Voting, vote_chunk

NN_BLOCK = 4096  # unlabeled rows embedded and searched together


def shard_rows(n_rows: int, shard: tuple[int, int]) -> range:
    """Positions of the unlabeled rows that shard I of N (1-based) votes on: one contiguous range."""
    i, n = shard
    return range((i - 1) * n_rows // n, i * n_rows // n)


def shard_file(shard: tuple[int, int]) -> str:
    return f"votes.shard-{shard[0]}-of-{shard[1]}.jsonl"


class Neighbours:
    """The k nearest labeled examples of each unlabeled row, computed one fixed block of rows at a time."""

    def __init__(self, ctx: RunContext, pool: list[Example], out: Path, vectors: bool = False) -> None:
        self.k = ctx.cfg.propagate.k if pool else 0
        self.index = ctx.cfg.propagate.index
        self.block: int | None = None
        self.idx = np.zeros((0, 0), dtype=np.int64)
        self.vectors = vectors  # keep each block's query vectors (for the embedder's view)
        self.queries = np.zeros((0, 0), dtype=np.float32)
        if self.k == 0 and not vectors:
            return
        self.make = text_embedder(ctx.cfg.model.embedder)
        self.keys = cached_embeddings(out / "emb_labeled", [e.question for e in pool], self.make)

    def of_block(self, start: int, questions: list[str]) -> None:
        """Search for the block of rows that begins at position ``start``."""
        if self.k or self.vectors:
            queries = self.make(questions)
            if self.k:
                self.idx, _ = nearest(self.keys, queries, self.k, self.index)
            if self.vectors:
                self.queries = queries
        self.block = start

    def row(self, pos: int) -> list[int]:
        return [int(j) for j in self.idx[pos - (self.block or 0)]] if self.k else []

    def vector(self, pos: int) -> np.ndarray:
        return self.queries[pos - (self.block or 0)]


class EmbedderView:
    """The embedder's answers (``knn`` and ``probe`` configurations) from the labeled pool's vectors."""

    def __init__(self, pool: list[Example], keys: np.ndarray, configs: list[AnswerConfig]) -> None:
        self.options = shared_options(pool)
        labeled = [i for i, e in enumerate(pool) if e.answer is not None]
        self.keys = keys[labeled]
        self.labels = label_indices(pool, len(self.options))
        self.probe = (
            Probe(self.keys, self.labels, len(self.options)) if any(c.model == "probe" for c in configs) else None
        )

    def chunk_views(
        self, configs: list[AnswerConfig], chunk: list[tuple[Example, list[int], np.ndarray | None]]
    ) -> list[np.ndarray | None]:
        """Per configuration, its distributions for the chunk's rows (None for a language model's)."""
        rows = [e for e, _, _ in chunk]
        assert all(v is not None for _, _, v in chunk), "rows carry their vectors when a view answers"
        vectors = np.stack([v for _, _, v in chunk if v is not None])
        return [self.distributions(c, rows, vectors) if c.is_view else None for c in configs]

    def distributions(self, c: AnswerConfig, chunk: list[Example], vectors: np.ndarray) -> np.ndarray:
        for e in chunk:
            if list(e.options or []) != self.options:
                raise ViewError(
                    f"propagate.configs: {c.name} needs every row to share the labeled rows' options; "
                    f"unlabeled row '{e.id}' has other options"
                )
        if c.model == "knn":
            return knn_distributions(self.keys, self.labels, vectors, c.demos, len(self.options))
        assert self.probe is not None, "the probe is fitted when a probe configuration is asked for"
        return self.probe.distributions(vectors)


def read_votes(path: Path) -> dict[str, dict[str, Any]]:
    """The last line of each id in the votes file (held in memory: for inspection and tests)."""
    return {r["id"]: r for r in read_jsonl_prefix(path) if "id" in r}


def vote_status(path: Path) -> tuple[set[str], dict[str, str]]:
    """Ids voted for good, and the ids whose last line is a failure (with its error); a later line of an
    id supersedes an earlier one. A torn last line (killed mid-write) is cut off. Read as a stream."""
    done: set[str] = set()
    failed: dict[str, str] = {}
    for r in iter_jsonl_prefix(path):
        if "id" not in r:
            continue
        if r.get("failed"):
            done.discard(r["id"])
            failed[r["id"]] = str(r.get("error", ""))
        else:
            done.add(r["id"])
            failed.pop(r["id"], None)
    return done, failed


def run_propagate(
    ctx: RunContext,
    out: Path,
    pool: list[Example],
    warm_adapter: Adapter,
    shard: tuple[int, int] | None = None,
    members: tuple[Adapter, ...] = (),
) -> Path:
    """Write ``votes.jsonl`` (one line per unlabeled row) and ``configs.json`` into ``out``.

    With ``shard`` (I, N): vote only on shard I's rows, into ``votes.shard-I-of-N.jsonl``. ``members``: the
    warm members besides ``warm_adapter`` that 'members' configurations average (sft.members).
    """
    out.mkdir(parents=True, exist_ok=True)
    pcfg = ctx.cfg.propagate
    configs = [parse_answer_config(c) for c in pcfg.configs]
    unlabeled: Split = ctx.task.unlabeled
    if ctx.task.kind != "choice" and any(c.is_view for c in configs):
        raise ViewError("propagate.configs: knn and probe configurations answer multiple-choice tasks only")
    if ctx.task.kind != "choice" and any(c.phrasing for c in configs):
        raise ConfigError("propagate.configs: a phrasing (':p1', ':p2') words multiple-choice prompts only")
    if ctx.task.kind != "choice" and any(c.model == "members" for c in configs):
        raise ConfigError("propagate.configs: 'members' averages option distributions: multiple-choice tasks only")
    record = {
        "configs": [c.name for c in configs],
        "k": pcfg.k,
        "embedder": ctx.cfg.model.embedder,
        "templates": {"answer": TEMPLATE_IDS[ctx.task.kind], "demos": TEMPLATE_IDS["demos"]}
        | {f"phrasing_{c.phrasing}": TEMPLATE_IDS[f"phrasing_{c.phrasing}"] for c in configs if c.phrasing},
        "pool_size": len(pool),
        "kind": ctx.task.kind,
        "vote_rule": "argmax over options at temperature 0, else a seeded draw from p^(1/T)"
        if ctx.task.kind == "choice"
        else "one sampled response per configuration, answer extracted",
    }
    atomic_write_json(out / "configs.json", record)
    uses_view = any(c.is_view for c in configs)
    nn = Neighbours(ctx, pool, out, vectors=uses_view)
    view = EmbedderView(pool, nn.keys, configs) if uses_view else None
    warm = None
    if any(c.model in ("warm", "members") for c in configs):
        warm = ctx.adapter(warm_adapter)
    averaged = (warm_adapter, *members) if any(c.model == "members" for c in configs) else ()
    names = tuple(ctx.adapter(a) for a in averaged)
    how = Voting(
        ctx.task.kind, ctx.task.numeric, ctx.cfg.seed, ctx.cfg.model.max_new_tokens, tuple(configs), warm, names
    )
    votes = out / (shard_file(shard) if shard else "votes.jsonl")
    rows = shard_rows(len(unlabeled), shard) if shard else range(len(unlabeled))
    done, earlier_failed = vote_status(votes)
    if done or earlier_failed:
        log(
            f"propagate: resuming, {len(done)} of {len(rows)} rows already voted"
            + (f", retrying {len(earlier_failed)} that failed" if earlier_failed else "")
        )
    todo = len(rows) - len(done)
    failed: list[dict[str, Any]] = []  # every row not voted before was tried in this loop
    chunks = _todo_chunks(unlabeled, rows, done, nn, pcfg.chunk_size)
    pooled: dict[str, Any] = {}  # the Ray pool's record of its actors' engine
    if ctx.cfg.model.engine in ACTOR_ENGINE:
        from ..engines.ray_pool import vote_on_cluster

        if view is not None:
            raise ViewError(
                "propagate.configs: knn and probe configurations run in one process, not with engine "
                f"{ctx.cfg.model.engine}; vote with them in one process or leave them out"
            )
        voted_chunks = vote_on_cluster(
            ctx.cfg,
            how,
            ([(e, nbrs) for e, nbrs, _ in c] for c in chunks),
            pool,
            {warm: str(warm_adapter.path)} | {a.name: str(a.path) for a in averaged} if warm else {},
            out / ".ray-rows",
            pooled,
        )
    else:
        engine = ctx.get_engine()
        voted_chunks = (
            vote_chunk(
                engine,
                how,
                [e for e, _, _ in c],
                [[pool[j] for j in nbrs] for _, nbrs, _ in c],
                view.chunk_views(configs, c) if view is not None else None,
            )
            for c in chunks
        )
    for voted in progress(voted_chunks, desc="pseudo-labelling", total=-(-todo // pcfg.chunk_size), unit="chunk"):
        append_jsonl(votes, voted)
        failed += [r for r in voted if r.get("failed")]
    if earlier_failed:  # retried rows were appended at the end: put every row back in its place, once
        _compact(votes, unlabeled, rows)
    # the engine's record (its log-prob mode, and what this process's calls saw) is complete only now
    atomic_write_json(out / "configs.json", record | {"engine": pooled or ctx.get_engine().describe()})
    if failed:
        raise EngineError(
            f"propagate: {len(failed)} of {len(rows)} rows failed after retries and are marked failed in "
            f"{votes}; run the command again to retry only those rows "
            f"(first: {failed[0]['id']}: {failed[0]['error']})"
        )
    return votes


def _compact(votes: Path, split: Split, rows: range) -> None:
    """Rewrite the votes file with the last line of each row, in the split's order (atomically). It holds the
    file in memory: done only after a rerun retried failed rows."""
    latest = read_votes(votes)
    ordered = (latest[e.id] for pos, e in enumerate(split.iter_examples()) if pos in rows and e.id in latest)
    atomic_write_jsonl(votes, ordered)


def _todo_chunks(
    split: Split, rows: range, done: set[str], nn: Neighbours, size: int
) -> Iterator[list[tuple[Example, list[int], np.ndarray | None]]]:
    """Chunks of (row, its neighbours' positions in the pool, its vector when the view needs it) for the rows
    in ``rows`` not yet voted."""
    chunk: list[tuple[Example, list[int], np.ndarray | None]] = []
    for b, block in enumerate(split.chunks(NN_BLOCK)):
        start = b * NN_BLOCK
        if start >= rows.stop:
            break
        wanted = [(start + i, e) for i, e in enumerate(block) if start + i in rows and e.id not in done]
        if not wanted:
            continue
        nn.of_block(start, [e.question for e in block])
        for pos, e in wanted:
            chunk.append((e, nn.row(pos), nn.vector(pos) if nn.vectors else None))
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
