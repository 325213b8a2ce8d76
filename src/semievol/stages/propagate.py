"""In-context propagation and collaborative pseudo-labelling: n configurations vote on each unlabeled question.

Each configuration is (base or warm model, number of retrieved demos, temperature). On the multiple-choice
path a vote comes from one forward pass: the exact distribution over the option letters, from which the
vote is drawn at the configuration's temperature with a generator seeded by (run seed, configuration, row
id), so a row's votes do not depend on chunking, sharding or resumption. On the free-form path each
configuration samples a response with token log-probabilities and the answer is extracted from it.

Votes are appended to ``votes.jsonl`` one chunk at a time (flushed and fsynced); a rerun skips the rows
already there. A row whose model calls failed for good (a server that kept failing after the engine's
retries) is appended as ``{"id", "failed": true, "error"}`` and the stage ends with an error giving the
count; a rerun retries those rows only and appends their votes. Readers take the last line of each id
(``read_votes``). The unlabeled split's gold answers are never read here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..answers import LETTERS, extract_free
from ..config import AnswerConfig, parse_answer_config
from ..data import Example
from ..engines import CallsFailed, EngineError
from ..progress import log, progress
from ..prompts import TEMPLATE_IDS, answer_prompt
from ..retrieval import cached_embeddings, embed, hash_embed, nearest
from ..runctx import RunContext, append_jsonl, atomic_write_json, read_jsonl_prefix


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


def neighbours(ctx: RunContext, pool: list[Example], unlabeled: list[Example], out: Path) -> np.ndarray:
    k = ctx.cfg.propagate.k
    if k == 0 or not pool:
        return np.zeros((len(unlabeled), 0), dtype=np.int64)
    if ctx.cfg.model.embedder == "hash":
        make = hash_embed
    else:
        from ..models import load_embedder

        model = load_embedder(ctx.cfg.model.embedder)
        def make(texts: list[str]) -> np.ndarray:
            return embed(texts, model)
    keys = cached_embeddings(out / "emb_labeled", [e.question for e in pool], make)
    queries = cached_embeddings(out / "emb_unlabeled", [e.question for e in unlabeled], make)
    idx, _ = nearest(keys, queries, k, ctx.cfg.propagate.index)
    return idx


def read_votes(path: Path) -> dict[str, dict[str, Any]]:
    """The last line of each id in the votes file (a retried row's earlier failure is superseded).

    A torn last line (killed mid-write) is cut off."""
    return {r["id"]: r for r in read_jsonl_prefix(path) if "id" in r}


def vote_chunk(ctx: RunContext, chunk: list[Example], demos_for: list[list[Example]], configs: list[AnswerConfig],
               warm: str | None) -> list[dict[str, Any]]:
    """One line per row of ``chunk``: its votes, or a failure record if any of its model calls failed for good."""
    engine = ctx.get_engine()
    kind = ctx.task.kind
    seed = ctx.cfg.seed
    rows: list[dict[str, Any]] = [
        {"id": e.id, "row": e.row, "question": e.question, "options": e.options, "subject": e.subject, "votes": []}
        for e in chunk
    ]
    failed: dict[int, str] = {}
    for ci, c in enumerate(configs):
        adapter = warm if c.model == "warm" else None
        live = [i for i in range(len(chunk)) if i not in failed]  # a failed row asks for nothing more
        prompts = [answer_prompt(chunk[i], kind, demos_for[i][: c.demos]) for i in live]
        try:
            if kind == "choice":
                results = engine.score_options(prompts, [len(chunk[i].options or []) for i in live], adapter)
            else:
                results = engine.generate(prompts, 1, c.temperature, seed * 1000 + ci, ctx.cfg.model.max_new_tokens,
                                          adapter)
        except CallsFailed as e:
            results = e.results
            failed.update({live[j]: f"{c.name}: {msg}" for j, msg in e.errors.items()})
        for i, res in zip(live, results, strict=True):
            if i in failed:
                continue
            if kind == "choice":
                v = draw_vote(res, c.temperature, row_rng(seed, ci, chunk[i].id))
                rows[i]["votes"].append({"config": c.name, "answer": LETTERS[v],
                                         "dist": [round(float(x), 6) for x in res]})
            else:
                s = res[0]
                rows[i]["votes"].append({"config": c.name, "answer": extract_free(s.text), "text": s.text,
                                         "mean_nll": round(s.mean_nll, 6)})
    for i, error in failed.items():
        rows[i] = {"id": chunk[i].id, "row": chunk[i].row, "failed": True, "error": error}
    return rows


def run_propagate(ctx: RunContext, out: Path, pool: list[Example], warm_adapter: Path) -> Path:
    """Write ``votes.jsonl`` (one line per unlabeled row) and ``configs.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    pcfg = ctx.cfg.propagate
    configs = [parse_answer_config(c) for c in pcfg.configs]
    unlabeled = ctx.task.unlabeled.examples
    record = {
        "configs": [c.name for c in configs], "k": pcfg.k, "embedder": ctx.cfg.model.embedder,
        "templates": {"answer": TEMPLATE_IDS[ctx.task.kind], "demos": TEMPLATE_IDS["demos"]},
        "pool_size": len(pool), "kind": ctx.task.kind,
        "vote_rule": "argmax over options at temperature 0, else a seeded draw from p^(1/T)"
        if ctx.task.kind == "choice" else "one sampled response per configuration, answer extracted",
    }
    atomic_write_json(out / "configs.json", record)
    nn = neighbours(ctx, pool, unlabeled, out)
    warm = None
    if any(c.model == "warm" for c in configs):
        warm = ctx.adapter(f"warm-{ctx.fingerprints.get('warm', 'x')}", warm_adapter)
    votes = out / "votes.jsonl"
    earlier = read_votes(votes)
    done = {i for i, r in earlier.items() if not r.get("failed")}
    todo = [i for i, e in enumerate(unlabeled) if e.id not in done]
    if earlier:
        retry = sum(1 for e in unlabeled if e.id in earlier and e.id not in done)
        log(f"propagate: resuming, {len(done)} of {len(unlabeled)} rows already voted"
            + (f", retrying {retry} that failed" if retry else ""))
    chunks = [todo[s : s + pcfg.chunk_size] for s in range(0, len(todo), pcfg.chunk_size)]
    for ch in progress(chunks, desc="pseudo-labelling", unit="chunk"):
        exs = [unlabeled[i] for i in ch]
        demos = [[pool[j] for j in nn[i]] for i in ch]
        append_jsonl(votes, vote_chunk(ctx, exs, demos, configs, warm))
    # the engine's record (its log-prob mode, and what this process's calls saw) is complete only now
    atomic_write_json(out / "configs.json", record | {"engine": ctx.get_engine().describe()})
    latest = read_votes(votes)
    failed = [latest[e.id] for e in unlabeled if latest[e.id].get("failed")]
    if failed:
        raise EngineError(
            f"propagate: {len(failed)} of {len(unlabeled)} rows failed after retries and are marked failed in "
            f"{votes}; run the command again to retry only those rows (first: {failed[0]['id']}: {failed[0]['error']})"
        )
    return votes
