"""What the few-labels benchmarks share (``recipe_dev.py`` on development rows, ``few_labels.py`` on the test
splits): running one `semievol run` into its folder, starting a variant from a finished run, grading the
pseudo-labels, fitting the embedder's logistic regression on a run's labeled draw, and naming the machine."""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

WALL = "wall_seconds.txt"  # the seconds `semievol run` took, written into the run folder after it ends
_CHILDREN: set[subprocess.Popen[bytes]] = set()  # the commands running now, from any worker thread


def run_logged(argv: list[str], log: Any) -> None:
    """Run ``argv`` with its output into the open file ``log``, as ``subprocess.run(check=True)``, where
    ``end_children_on_sigterm`` can reach it."""
    with subprocess.Popen(argv, stdout=log, stderr=log) as child:
        _CHILDREN.add(child)
        try:
            code = child.wait()
        finally:
            _CHILDREN.discard(child)
    if code:
        raise subprocess.CalledProcessError(code, argv)


def end_children_on_sigterm(grace_s: float = 30.0) -> None:
    """On SIGTERM, pass it to every command ``run_logged`` started, wait up to ``grace_s`` for them, and exit
    143. Without this a killed benchmark leaves its `semievol` children running, and they hold their run
    folders' locks until they finish; a semievol command killed mid-stage resumes from its last finished
    stage, and the benchmark's own files are written by rename, so nothing is left half-written."""

    def stop(signum: int, frame: Any) -> None:
        children = list(_CHILDREN)
        for child in children:
            child.terminate()
        deadline = time.time() + grace_s
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                child.kill()
        os._exit(128 + signum)  # the worker threads would otherwise start the next queued cell

    signal.signal(signal.SIGTERM, stop)


def run_semievol(cfg: dict[str, Any], rd: Path, commands: tuple[str, ...] = ("run",)) -> None:
    """``semievol run`` of ``cfg`` into ``rd`` (its YAML and log beside the folder), timed into ``rd/WALL``;
    ``commands``: these semievol commands one after the other instead (``("sft", "evaluate")``)."""
    cfg = {"recipe": "paper", **cfg, "run_dir": str(rd)}  # every setting is spelt out: no recipe's underneath
    rd.mkdir(parents=True, exist_ok=True)
    path = rd.parent / f"{rd.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.time()
    with open(rd.parent / f"{rd.name}.log", "a") as log:
        for command in commands:
            run_logged([sys.executable, "-m", "semievol", command, str(path)], log)
    (rd / WALL).write_text(f"{time.time() - t0:.0f}\n")


def wall_seconds(rd: Path) -> int | None:
    wall = rd / WALL
    return int(wall.read_text()) if wall.exists() else None


def pseudo_accuracy(rd: Path) -> dict[str, Any]:
    """The pseudo-labels graded against the unlabeled split's gold answers: ``all``, every row as the teacher
    labels it (its configurations' mean, before alignment or selection; class_rank relabels kept rows, so the
    records' answers are not that baseline), and ``kept``, the selected rows' final labels."""
    from semievol.answers import LETTERS

    rows = [json.loads(line) for line in open(rd / "select" / "pseudo_labels.jsonl")]
    graded = [r for r in rows if r.get("gold") is not None]
    plain = [LETTERS[int(np.argmax(np.mean([v["dist"] for v in r["votes"]], axis=0)))] == r["gold"] for r in graded]
    kept = [r["correct"] for r in graded if r.get("selected") and "correct" in r]
    soft = [r for r in graded if r.get("selected") and r.get("target_dist")]
    return {
        "all": float(np.mean(plain)) if plain else None,
        "kept": float(np.mean(kept)) if kept else None,
        "n_kept": len(kept),
        "weighted": soft_weighted_accuracy(soft) if soft else None,
    }


def soft_weighted_accuracy(rows: list[dict[str, Any]]) -> float:
    """How right soft targets are, counted as training sees them: each kept row's most likely option graded
    against its gold answer, weighted by one minus its target's entropy over log(options) (1 for a one-hot
    target, 0 for a uniform one, which teaches no option). Under evolve.targets 'soft' every row is kept, so
    the kept rows' plain accuracy is the teacher's; this is the analogue of a confidence-weighted selection."""
    from semievol.answers import LETTERS

    targets = [np.clip(np.asarray(r["target_dist"], dtype=float), 1e-12, None) for r in rows]
    weights = np.asarray([1 + (t * np.log(t)).sum() / np.log(len(t)) for t in targets])
    right = np.asarray([LETTERS[int(np.argmax(t))] == r["gold"] for t, r in zip(targets, rows, strict=True)])
    return float((weights * right).sum() / weights.sum())


def trained_steps(rd: Path) -> dict[str, int]:
    """Optimizer steps of each training stage the run finished; the control's counted from the base model
    (under evolve.mode 'resume' its first steps are the warm model's)."""
    out = {}
    for s in ("sft", "evolve", "sft_matched"):
        if (rd / s / "train_summary.json").exists():
            summary = json.loads((rd / s / "train_summary.json").read_text())
            out[s] = (
                summary["schedule"]["to_step"] if s == "sft_matched" and "schedule" in summary else summary["steps"]
            )
    return out


def with_resume_steps(cfg: dict[str, Any], n_labeled: int, n_unlabeled: int) -> dict[str, Any]:
    """``cfg`` with evolve.steps filled in where evolve.mode is 'resume' and it is not given: train_epochs
    passes over the labeled rows labeled_repeat times and half the unlabeled rows (what class_rank keeps at
    theta 50). The budget depends on the data's size only, so variants that select otherwise share the warm
    model planned for it; a selection that keeps fewer rows makes more passes over them."""
    ev = cfg.get("evolve", {})
    if ev.get("mode") != "resume" or ev.get("steps"):
        return cfg
    rows = n_labeled * ev.get("labeled_repeat", 1) + n_unlabeled // 2
    steps = math.ceil(math.ceil(rows / cfg["sft"]["batch_size"]) * ev["train_epochs"])
    return {**cfg, "evolve": {**ev, "steps": steps}}


def training_precision(rd: Path) -> str | None:
    """'bf16' or 'fp32': how the run's warm model trained (bf16 autocast only on CPUs where it is faster)."""
    path = rd / "sft" / "train_summary.json"
    return ("bf16" if json.loads(path.read_text())["bf16_autocast"] else "fp32") if path.exists() else None


@functools.cache
def embedder() -> Any:
    """The embedded all-MiniLM-L6-v2, loaded once per process (collecting reads every finished run)."""
    from semievol.models import load_embedder

    return load_embedder("embedded")


def fit_probe(vectors: np.ndarray, examples: list[Any], drawn: list[Any]) -> Any:
    """The logistic regression on the ``drawn`` labeled rows, given every labeled row's ``examples`` and
    ``vectors`` in the same order."""
    from semievol.views import Probe, label_indices

    pos = {e.id: i for i, e in enumerate(examples)}
    n_opt = len(drawn[0].options)
    return Probe(vectors[[pos[e.id] for e in drawn]], label_indices(drawn, n_opt), n_opt)


def machine() -> str:
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {len(os.sched_getaffinity(0))} CPUs, no GPU"
