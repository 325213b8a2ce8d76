"""In-weight propagation: the warm model is a LoRA fine-tune of the base model on the labeled split.

The same training on the labeled rows alone for as many optimizer steps as the evolved model took is the
compute-matched control (``run_sft_matched``): a gain of the evolved model over it cannot be more
training steps in disguise.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from ..jsonio import atomic_write_json
from ..models import resolve_model
from ..progress import log
from ..prompts import Prompt, training_pair
from ..runctx import RunContext
from ..tasks import Example
from ..training import TrainingError, train_lora
from .evaluate import predict


def labeled_pairs(examples: list[Example], kind: str, use_rationale: bool) -> list[tuple[Prompt, str]]:
    return [training_pair(e, e.answer or "", kind, use_rationale) for e in examples if e.answer is not None]


def tensorboard_dir(ctx: RunContext, stage_out: Path) -> Path | None:
    """RUN_DIR/tensorboard/<stage folder name> when sft.report_to is 'tensorboard' (one logdir for every stage)."""
    return ctx.run_dir / "tensorboard" / stage_out.name if ctx.cfg.sft.report_to == "tensorboard" else None


def run_sft(
    ctx: RunContext, out: Path, max_steps: int | None = None, desc: str = "sft", resume_from: Path | None = None
) -> Path:
    """Train the warm adapter on the labeled split and write it to ``out``; with evolve.mode 'resume' it is the
    first part of a schedule that evolve (or, going on from ``resume_from``, the matched control) finishes."""
    cfg = ctx.cfg
    tcfg = cfg.sft if max_steps is None else replace(cfg.sft, max_steps=max_steps)
    if max_steps is None and cfg.sft.cv_epochs:
        tcfg = replace(tcfg, epochs=choose_epochs(ctx, out))
    warm_of_resume = cfg.evolve.mode == "resume" and max_steps is None
    pairs = labeled_pairs(ctx.task.labeled.examples, ctx.task.kind, tcfg.use_rationale)
    train = partial(
        train_lora,
        resolve_model(cfg.model.model),
        pairs,
        tcfg,
        schedule_tail=cfg.evolve.steps if warm_of_resume else 0,
        resume_from=resume_from,
    )
    if max_steps is None:  # the other warm members first: each is kept when a killed stage starts again
        for j, member in enumerate(member_dirs(out, cfg.sft.members)[1:], start=1):
            if (member / "adapter_config.json").exists():
                log(f"sft: member {j} trained earlier, kept")
                continue
            train(member, seed=cfg.seed + MEMBER_SEED_STEP * j, desc=f"sft member {j}/{cfg.sft.members - 1}")
    return train(out, seed=cfg.seed, desc=desc, log_dir=tensorboard_dir(ctx, out)).adapter_dir


MEMBER_SEED_STEP = 1000  # member j of sft.members trains with the run's seed + 1000 j


def member_dirs(sft_out: Path, members: int) -> list[Path]:
    """The warm members' adapter folders: the warm model's (``sft_out``) first, then ``sft_out/members/member{j}``."""
    return [sft_out] + [sft_out / "members" / f"member{j}" for j in range(1, members)]


def trained_steps(adapters: list[Path]) -> int:
    """Optimizer steps the adapters in these folders took together (from their train_summary.json)."""
    return sum(json.loads((d / "train_summary.json").read_text())["steps"] for d in adapters)


def run_sft_matched(ctx: RunContext, out: Path, steps: int, warm: Path) -> Path:
    """The compute-matched control: the labeled split alone for exactly ``steps`` optimizer steps. With
    evolve.mode 'resume' its first steps are the warm model's (``warm``), which it goes on from."""
    if ctx.cfg.evolve.mode == "resume":
        return run_sft(ctx, out, max_steps=steps - trained_steps([warm]), desc="sft_matched", resume_from=warm)
    return run_sft(ctx, out, max_steps=steps, desc="sft_matched")


def stratified_folds(examples: list[Example], k: int, seed: int) -> list[list[Example]]:
    """``k`` folds of the rows, each class in about its share: the label audit's fold rule (``audit.fold_of``)."""
    from ..audit import fold_of

    fold = fold_of(np.array([str(e.answer) for e in examples]), k, seed)
    return [[e for e, f in zip(examples, fold, strict=True) if f == i] for i in range(k)]


def choose_epochs(ctx: RunContext, out: Path) -> float:
    """The warm model's epochs by k-fold cross-validation on the labeled rows (``sft.cv_epochs``): every
    setting trains on all folds but one with the run's other sft settings and is scored on the held-out fold;
    the best mean held-out accuracy wins, ties to the first listed. Writes ``out/cv.json``; the fold
    adapters are deleted once scored."""
    cfg, task = ctx.cfg, ctx.task
    labeled = [e for e in task.labeled.examples if e.answer is not None]
    k = cfg.sft.cv_folds
    if len(labeled) < 2 * k:
        raise TrainingError(f"sft.cv_epochs: {len(labeled)} labeled rows are too few for {k} folds")
    parts = stratified_folds(labeled, k, cfg.seed)
    engine = ctx.get_engine()
    held_out: dict[str, list[float]] = {f"{e:g}": [] for e in cfg.sft.cv_epochs}
    for i, held in enumerate(parts):
        pairs = labeled_pairs([e for j, p in enumerate(parts) if j != i for e in p], task.kind, cfg.sft.use_rationale)
        for epochs in cfg.sft.cv_epochs:
            fold = out / "cv" / f"fold{i}_epochs{epochs:g}"
            desc = f"sft cv fold {i + 1}/{k}, {epochs:g} epochs"
            train_lora(
                resolve_model(cfg.model.model), pairs, replace(cfg.sft, epochs=epochs), fold, cfg.seed, desc=desc
            )
            name = f"cv-{uuid.uuid4().hex[:12]}"  # a name no earlier adapter of this engine had
            engine.add_adapter(name, str(fold))
            preds = predict(engine, held, task.kind, name, cfg.model.max_new_tokens, task.numeric)
            held_out[f"{epochs:g}"].append(sum(bool(p["correct"]) for p in preds) / len(preds))
            shutil.rmtree(fold, ignore_errors=True)
    mean = {e: sum(v) / len(v) for e, v in held_out.items()}
    chosen = max(cfg.sft.cv_epochs, key=lambda e: mean[f"{e:g}"])  # max keeps the first of equals
    shutil.rmtree(out / "cv", ignore_errors=True)
    atomic_write_json(out / "cv.json", {"folds": k, "held_out": held_out, "mean": mean, "chosen_epochs": chosen})
    log(f"sft: {chosen:g} epochs chosen by {k}-fold cross-validation (held-out accuracy {mean[f'{chosen:g}']:.3f})")
    return chosen
