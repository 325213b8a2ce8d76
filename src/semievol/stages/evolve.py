"""Evolution: the final LoRA fine-tune on the labeled rows plus the selected pseudo-labels.

``evolve.mode`` says where it starts: from the base model (the paper), from the warm adapter on the same
data (``warm_start``), from the warm adapter on the selected rows alone (``continue``, the released code),
or going on with the warm model's own schedule (``resume``: its optimizer and learning rate carry on).
Pseudo-labelled rows can carry soft targets (the option distribution their label was read from) and
SoftMatch-style confidence weights; labeled rows always train on their hard answer at weight 1.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..answers import LETTERS
from ..config import EvolveConfig
from ..distributed import is_main
from ..jsonio import atomic_write_jsonl, iter_jsonl
from ..models import resolve_model
from ..progress import log
from ..runctx import Adapter, RunContext
from ..tasks import Example
from ..training import train_lora
from .scoring import row_distribution
from .select import selected_examples
from .sft import labeled_pairs, tensorboard_dir


def with_pseudo(pool: list[Example], chosen: list[Example], n_gold: int) -> list[Example]:
    """The pool (its first ``n_gold`` rows labeled by hand, the rest pseudo-labelled in earlier rounds) with
    this round's selected rows, each unlabeled row once: a row selected again keeps its place and takes the
    newer label, which the later round's model gave."""
    pseudo = {e.id: e for e in pool[n_gold:]}
    for e in chosen:
        pseudo[e.id] = e
    return pool[:n_gold] + list(pseudo.values())


def run_evolve(ctx: RunContext, out: Path, pool: list[Example], pseudo_labels: Path, warm: Adapter) -> None:
    """Train the evolved adapter into ``out`` and write the rows it trained on to ``train_data.jsonl``.

    ``pool``: the labeled rows, then rows pseudo-labelled in earlier rounds; ``pseudo_labels``: this
    round's select output; ``warm``: the adapter the round started from."""
    cfg, ecfg = ctx.cfg, ctx.cfg.evolve
    chosen = selected_examples(pseudo_labels, ctx.task.unlabeled)
    n_gold = len(ctx.task.labeled.examples)
    tcfg = replace(cfg.sft, epochs=ecfg.train_epochs) if ecfg.train_epochs > 0 else cfg.sft
    tcfg = replace(tcfg, max_steps=ecfg.steps) if ecfg.steps > 0 else tcfg
    init: Path | None
    lr: float | None
    if ecfg.mode == "continue":
        data, gold, init, lr = chosen, 0, warm.path, ecfg.continue_lr
    else:
        data, gold = with_pseudo(pool, chosen, n_gold), n_gold
        init, lr = (warm.path, None) if ecfg.mode in ("warm_start", "resume") else (None, None)
    if ecfg.labeled_repeat > 1:  # the labeled rows first, repeated; the batches are shuffled in training
        data, gold = data[:gold] * ecfg.labeled_repeat + data[gold:], gold * ecfg.labeled_repeat
    weights, soft = pseudo_targets(pseudo_labels, data, gold, ecfg, ctx.task.kind)
    res = train_lora(
        resolve_model(cfg.model.model),
        labeled_pairs(data, ctx.task.kind, cfg.sft.use_rationale),
        tcfg,
        out,
        seed=cfg.seed,
        init_adapter=init,
        lr=lr,
        desc="evolve",
        log_dir=tensorboard_dir(ctx, out),
        weights=weights,
        soft=soft,
        resume_from=warm.path if ecfg.mode == "resume" else None,
    )
    if not is_main():
        return
    rows: list[dict[str, Any]] = [
        {
            "id": e.id,
            "question": e.question,
            "options": e.options,
            "answer": e.answer,
            "rationale": e.rationale,
            "source": "labeled" if i < gold else "pseudo",
        }
        for i, e in enumerate(data)
    ]
    for i, r in enumerate(rows):
        if weights is not None:
            r["weight"] = round(weights[i], 6)
        target = soft[i] if soft is not None else None
        if target is not None:
            r["soft_target"] = [round(x, 6) for x in target]
    atomic_write_jsonl(out / "train_data.jsonl", rows)
    log(f"evolve: {len(data)} examples ({len(data) - gold} pseudo-labelled), {res.steps} steps")


def pseudo_targets(
    pseudo_labels: Path, data: list[Example], gold: int, ecfg: EvolveConfig, kind: str
) -> tuple[list[float] | None, list[list[float] | None] | None]:
    """Per-row loss weights and soft targets for the evolve data (the first ``gold`` rows labeled by hand:
    weight 1, hard); (None, None) when evolve trains plain hard targets."""
    soft_on = ecfg.targets == "soft" and kind == "choice"
    if ecfg.weighting == "none" and not soft_on:
        return None, None
    records = {r["id"]: r for r in iter_jsonl(pseudo_labels) if r.get("answer") is not None}
    scores = np.asarray([r["score"] for r in records.values()], dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    mu, var = (float(scores.mean()), float(scores.var())) if len(scores) else (0.0, 0.0)
    weights: list[float] | None = [1.0] * len(data) if ecfg.weighting == "confidence" else None
    soft: list[list[float] | None] | None = [None] * len(data) if soft_on else None
    for i, e in enumerate(data[gold:], start=gold):
        rec = records.get(e.id)
        if rec is None:  # a row pseudo-labelled in an earlier round: its record is in that round's folder
            continue
        if weights is not None and rec["score"] > mu:
            weights[i] = math.exp(-((rec["score"] - mu) ** 2) / (2 * var)) if var > 0 else 1.0
        if soft is not None:
            p = np.asarray(row_distribution(rec), dtype=np.float64) ** (1.0 / ecfg.sharpen)
            if e.answer is not None and int(p.argmax()) == LETTERS.index(e.answer):
                soft[i] = [float(x) for x in p / p.sum()]
            # else the row was kept for a class its distribution does not favour (select.rule class_rank):
            # it trains on that class, hard, as a soft target would teach the other one
    return weights, soft
