"""Two of issue 22's SFT baselines, on the same labeled draw as a few-labels cell (``few_labels.py``):

- ``sft_default``: SFT on the labeled rows at semievol's default training settings (the paper's: lr 1e-4,
  2 epochs), what a user gets who changes nothing;
- ``sft_cv``: SFT with its epochs chosen by cross-validation on the labeled rows alone (``sft.cv_epochs``):
  each number of epochs is trained on all folds but one and scored on the held-out fold, for every fold; the
  best mean held-out accuracy then trains on all the labeled rows (the strongest SFT a careful user would run
  without a test split). ``sft/cv.json`` in the cell's folder keeps every fold's score.

Each writes ``evaluate/predictions_warm.jsonl`` on the whole test split into its folder, which the
protocol's table reads as that baseline's answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recipe_runs import run_semievol

# sft_cv: lr 1e-3 is where SFT stops collapsing at 64 rows (issue 22); the epochs tried span v1's warm model
# (8), v2's (24) and about what the compute-matched control trains (48)
CV_LR = 1e-3
CV_EPOCHS: tuple[float, ...] = (8, 24, 48)
CV_FOLDS = 2


def sft_only(cfg: dict[str, Any], sft: dict[str, Any] | None) -> dict[str, Any]:
    """``cfg`` reduced to a warm model: its sft settings replaced by ``sft`` (None = semievol's defaults, only
    the batch size kept), evaluated alone."""
    out = {k: v for k, v in cfg.items() if k in ("seed", "model", "task")}
    keep = {k: v for k, v in cfg.get("sft", {}).items() if k in ("batch_size", "micro_batch_size")}
    out["sft"] = keep | (sft or {})
    out["evaluate"] = {"models": ["warm"]}
    return out


def run_sft_default(cfg: dict[str, Any], rd: Path) -> None:
    if not (rd / "evaluate" / "metrics.json").exists():
        run_semievol(sft_only(cfg, None), rd, commands=("sft", "evaluate"))


def run_sft_cv(
    cfg: dict[str, Any], rd: Path, epochs: tuple[float, ...] = CV_EPOCHS, k: int = CV_FOLDS
) -> dict[str, Any]:
    """SFT on ``cfg``'s labeled draw at lr 1e-3 with the epochs chosen among ``epochs`` by ``k``-fold
    cross-validation on that draw (semievol's own ``sft.cv_epochs``), evaluated on the test split into ``rd``.
    Returns the choice (``sft/cv.json``). A finished run is read back, not re-run."""
    if not (rd / "evaluate" / "metrics.json").exists():
        run_semievol(
            sft_only(cfg, {"lr": CV_LR, "epochs": epochs[0], "cv_epochs": list(epochs), "cv_folds": k}),
            rd,
            commands=("sft", "evaluate"),
        )
    cv = rd / "sft" / "cv.json"  # absent in a cell run before the choice moved into semievol (session 13)
    return json.loads(cv.read_text()) if cv.exists() else {}
