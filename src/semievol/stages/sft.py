"""In-weight propagation: the warm model is a LoRA fine-tune of the base model on the labeled split.

The same training on the labeled rows alone for as many optimizer steps as the evolved model took is the
compute-matched control (``run_sft_matched``): a gain of the evolved model over it cannot be more
training steps in disguise.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..models import resolve_model
from ..prompts import Prompt, training_pair
from ..runctx import RunContext
from ..tasks import Example
from ..training import train_lora


def labeled_pairs(examples: list[Example], kind: str, use_rationale: bool) -> list[tuple[Prompt, str]]:
    return [training_pair(e, e.answer or "", kind, use_rationale) for e in examples if e.answer is not None]


def tensorboard_dir(ctx: RunContext, stage_out: Path) -> Path | None:
    """RUN_DIR/tensorboard/<stage folder name> when sft.report_to is 'tensorboard' (one logdir for every stage)."""
    return ctx.run_dir / "tensorboard" / stage_out.name if ctx.cfg.sft.report_to == "tensorboard" else None


def run_sft(ctx: RunContext, out: Path, max_steps: int | None = None, desc: str = "sft") -> Path:
    """Train the warm adapter on the labeled split and write it to ``out``."""
    cfg = ctx.cfg
    tcfg = cfg.sft if max_steps is None else replace(cfg.sft, max_steps=max_steps)
    pairs = labeled_pairs(ctx.task.labeled.examples, ctx.task.kind, tcfg.use_rationale)
    result = train_lora(
        resolve_model(cfg.model.model), pairs, tcfg, out, seed=cfg.seed, desc=desc, log_dir=tensorboard_dir(ctx, out)
    )
    return result.adapter_dir


def trained_steps(adapters: list[Path]) -> int:
    """Optimizer steps the adapters in these folders took together (from their train_summary.json)."""
    return sum(json.loads((d / "train_summary.json").read_text())["steps"] for d in adapters)


def run_sft_matched(ctx: RunContext, out: Path, steps: int) -> Path:
    """The compute-matched control: the labeled split alone for exactly ``steps`` optimizer steps."""
    return run_sft(ctx, out, max_steps=steps, desc="sft_matched")
