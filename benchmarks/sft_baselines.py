"""Two of issue 22's SFT baselines, on the same labeled draw as a few-labels cell (``few_labels.py``):

- ``sft_default``: SFT on the labeled rows at semievol's default training settings (the paper's: lr 1e-4,
  2 epochs), what a user gets who changes nothing;
- ``sft_cv``: SFT with learning rate and epochs chosen by cross-validation on the labeled rows alone: each
  setting of ``grid`` is trained on all folds but one and scored on the held-out fold, for every fold; the
  setting with the best mean held-out accuracy then trains on all the labeled rows (the strongest SFT a
  careful user would run without a test split). ``cv.json`` in the cell's folder keeps every fold's score.

Each writes ``evaluate/predictions_warm.jsonl`` on the whole test split into its folder, which the
protocol's table reads as that baseline's answers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from recipe_runs import run_semievol

from semievol.config import TaskConfig
from semievol.jsonio import atomic_write_json
from semievol.tasks import Example, load_task

# (learning rate, epochs) tried by sft_cv; lr 1e-3 is where SFT stops collapsing at 64 rows (issue 22), the
# epochs span the recipe's warm model (8, 24) and about what the compute-matched control trains (48)
CV_GRID: tuple[tuple[float, float], ...] = ((1e-3, 8), (1e-3, 24), (1e-3, 48))
CV_FOLDS = 2


def sft_only(cfg: dict[str, Any], sft: dict[str, Any] | None) -> dict[str, Any]:
    """``cfg`` reduced to a warm model: its sft settings replaced by ``sft`` (None = semievol's defaults, only
    the batch size kept), evaluated alone."""
    out = {k: v for k, v in cfg.items() if k in ("seed", "model", "task")}
    keep = {k: v for k, v in cfg.get("sft", {}).items() if k in ("batch_size", "micro_batch_size")}
    out["sft"] = keep | (sft or {})
    out["evaluate"] = {"models": ["warm"]}
    return out


def warm_accuracy(rd: Path) -> float:
    return float(json.loads((rd / "evaluate" / "metrics.json").read_text())["models"]["warm"]["accuracy"])


def run_sft_default(cfg: dict[str, Any], rd: Path) -> None:
    if not (rd / "evaluate" / "metrics.json").exists():
        run_semievol(sft_only(cfg, None), rd, commands=("sft", "evaluate"))


def folds(examples: list[Example], k: int, seed: int) -> list[list[Example]]:
    """``k`` folds of the rows, each class dealt round-robin after a seeded shuffle (so each fold holds each
    class in about its share)."""
    rng = random.Random(seed)
    rows = sorted(examples, key=lambda e: e.id)
    rng.shuffle(rows)
    rows.sort(key=lambda e: str(e.answer))  # stable: within a class the shuffled order stays
    return [rows[i::k] for i in range(k)]


def write_split(path: Path, examples: list[Example]) -> None:
    """A split in semievol's plain JSONL shape (id, question, options, answer letter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}")
    with open(tmp, "w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"id": e.id, "question": e.question, "options": e.options, "answer": e.answer}) + "\n")
    tmp.replace(path)


def run_sft_cv(
    cfg: dict[str, Any],
    rd: Path,
    grid: tuple[tuple[float, float], ...] = CV_GRID,
    k: int = CV_FOLDS,
) -> dict[str, Any]:
    """Cross-validate ``grid`` on ``cfg``'s labeled draw, then train the chosen setting on the whole draw into
    ``rd`` and evaluate it on the test split. Finished folds and the final run are reused."""
    if (rd / "cv.json").exists() and (rd / "evaluate" / "metrics.json").exists():
        return json.loads((rd / "cv.json").read_text())
    t = cfg["task"]
    drawn = load_task(TaskConfig(**{**t, "limit_unlabeled": 1}), seed=cfg["seed"]).labeled.examples
    parts = folds(drawn, k, cfg["seed"])
    scores: dict[str, list[float]] = {}
    for i, held in enumerate(parts):
        data = rd.parent / f"{rd.name}_folds" / f"fold{i}"  # beside the run folder: semievol owns what is in it
        write_split(data / "train.jsonl", [e for j, p in enumerate(parts) if j != i for e in p])
        write_split(data / "held.jsonl", held)
        for lr, epochs in grid:
            name = f"lr{lr:g}_e{epochs:g}"
            fold_cfg = sft_only(cfg, {"lr": lr, "epochs": epochs})
            # the preset's columns, the fold's rows: explicit splits win over data_dir's files
            fold_cfg["task"] = {
                **{key: v for key, v in t.items() if key not in ("limit_labeled", "limit_unlabeled")},
                "labeled": str(data / "train.jsonl"),
                "test": str(data / "held.jsonl"),
                "limit_unlabeled": 1,
            }
            frd = data / name
            if not (frd / "evaluate" / "metrics.json").exists():
                run_semievol(fold_cfg, frd, commands=("sft", "evaluate"))
            scores.setdefault(name, []).append(warm_accuracy(frd))
    means = {name: sum(v) / len(v) for name, v in scores.items()}
    best = max(grid, key=lambda s: means[f"lr{s[0]:g}_e{s[1]:g}"])  # ties: the first, the fewest epochs
    run_semievol(sft_only(cfg, {"lr": best[0], "epochs": best[1]}), rd, commands=("sft", "evaluate"))
    record = {"folds": k, "grid": [list(s) for s in grid], "held_out": scores, "mean": means, "chosen": list(best)}
    atomic_write_json(rd / "cv.json", record)
    return record
