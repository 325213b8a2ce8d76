"""In-weight propagation: the warm model is a LoRA fine-tune of the base model on the labeled split."""

from __future__ import annotations

from pathlib import Path

from ..models import resolve_model
from ..prompts import training_pair
from ..runctx import RunContext
from ..tasks import Example
from ..training import train_lora


def labeled_pairs(examples: list[Example], kind: str, use_rationale: bool) -> list:
    return [training_pair(e, e.answer or "", kind, use_rationale) for e in examples if e.answer is not None]


def tensorboard_dir(ctx: RunContext, stage_out: Path) -> Path | None:
    """RUN_DIR/tensorboard/<stage folder name> when sft.report_to is 'tensorboard' (one logdir for every stage)."""
    return ctx.run_dir / "tensorboard" / stage_out.name if ctx.cfg.sft.report_to == "tensorboard" else None


def run_sft(ctx: RunContext, out: Path, examples: list[Example] | None = None, max_steps: int | None = None,
            desc: str = "sft") -> Path:
    """Train the warm adapter on ``examples`` (default: the labeled split) and write it to ``out``."""
    cfg = ctx.cfg
    ex = examples if examples is not None else ctx.task.labeled.examples
    tcfg = cfg.sft
    if max_steps is not None:
        from dataclasses import replace

        tcfg = replace(tcfg, max_steps=max_steps)
    result = train_lora(resolve_model(cfg.model.model), labeled_pairs(ex, ctx.task.kind, tcfg.use_rationale),
                        tcfg, out, seed=cfg.seed, desc=desc, log_dir=tensorboard_dir(ctx, out))
    return result.adapter_dir

