"""Stopping a LoRA training part-way through its schedule and going on from there later.

A run planned over ``planned_steps`` but stopped after fewer writes ``resume_state.pt`` beside its adapter:
the optimizer's moments, the step it reached, the schedule's length, the random-number state and where it
was in its stream of batches. A run that goes on from it loads all of that, so the two together train as one
run of the whole schedule would: bit for bit when the second part trains on the same rows
(``tests/test_training_resume.py``), with another learning-rate restart nowhere. The evolve stage's
``resume`` mode is built on it: the warm model is the first part of one schedule, and the evolved model and
the compute-matched control are two ways of finishing it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

STATE_FILE = "resume_state.pt"


def data_digest(data: list[tuple[list[int], list[int]]], seed: int, micro_batch_size: int) -> str:
    """What decides the stream of micro-batches: the tokenised rows, the seed and the micro-batch size."""
    h = hashlib.sha256(f"{seed}:{micro_batch_size}".encode())
    for x, y in data:
        h.update(repr((x, y)).encode())
    return h.hexdigest()


def load_resume_state(folder: Path) -> dict[str, Any]:
    """The state a stopped run left in ``folder``; a clear error when there is none."""
    import torch

    from .losses import TrainingError

    path = folder / STATE_FILE
    if not path.is_file():
        raise TrainingError(
            f"{folder}: no {STATE_FILE} to go on from (the run that made this adapter did not stop part-way through "
            "its schedule; evolve.mode 'resume' needs the warm model trained with it: rerun sft)"
        )
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def resumed_schedule(
    resumed: dict[str, Any] | None, total: int, tail: int, lr: float, desc: str
) -> tuple[int, int, float]:
    """(steps of the schedule taken before this run, the schedule's length, its peak learning rate)."""
    from .losses import TrainingError

    first = resumed["step"] if resumed else 0
    planned = resumed["planned_steps"] if resumed else total + tail
    if first + total > planned:
        raise TrainingError(
            f"{desc}: {total} steps from step {first} go past the {planned}-step schedule this run goes on from"
        )
    return first, planned, resumed["peak_lr"] if resumed else lr


def resume_state(
    opt: Any, step: int, planned_steps: int, digest: str, micro_batches: int, peak_lr: float
) -> dict[str, Any]:
    """What a run stopped at ``step`` of ``planned_steps`` hands to the run that goes on from it."""
    import torch

    return {
        "optimizer": opt.state_dict(),
        "step": step,
        "planned_steps": planned_steps,
        "peak_lr": peak_lr,
        "rng": torch.get_rng_state(),
        "data_digest": digest,
        "micro_batches": micro_batches,
    }
