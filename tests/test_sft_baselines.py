"""The SFT baselines of the few-labels protocol (benchmarks/sft_baselines.py): stratified folds of the
labeled draw, and a warm-only config at semievol's defaults or at a grid point."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config_dict, write_choice_task

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # sft_baselines imports recipe_runs beside it
_spec = importlib.util.spec_from_file_location("sft_baselines", BENCH / "sft_baselines.py")
sft_baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sft_baselines)

from semievol.tasks import Example  # noqa: E402


def _rows(counts: dict[str, int]) -> list[Example]:
    out = []
    for letter, n in counts.items():
        out += [
            Example(id=f"{letter}{i}", question=f"q {letter}{i}", options=["x", "y", "z"], answer=letter)
            for i in range(n)
        ]
    return out


def test_folds_cover_every_row_once_and_share_each_class():
    rows = _rows({"A": 9, "B": 4, "C": 1})
    parts = sft_baselines.folds(rows, 2, seed=3)
    ids = [e.id for p in parts for e in p]
    assert sorted(ids) == sorted(e.id for e in rows)
    for letter, n in {"A": 9, "B": 4}.items():
        per_fold = [sum(e.answer == letter for e in p) for p in parts]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == n
    assert [e.id for p in sft_baselines.folds(rows, 2, seed=3) for e in p] == ids  # seeded
    assert [e.id for p in sft_baselines.folds(rows, 2, seed=4) for e in p] != ids


def test_a_baseline_config_is_a_warm_model_alone():
    cfg = {
        "seed": 1,
        "model": {"model": "embedded"},
        "task": {"task": "fpb"},
        "sft": {"lr": 1e-3, "epochs": 24, "batch_size": 8},
        "propagate": {"configs": ["probe:0:0"]},
    }
    default = sft_baselines.sft_only(cfg, None)
    assert default["sft"] == {"batch_size": 8} and default["evaluate"] == {"models": ["warm"]}
    assert "propagate" not in default and default["task"] == {"task": "fpb"}
    assert sft_baselines.sft_only(cfg, {"lr": 3e-4, "epochs": 8})["sft"] == {"batch_size": 8, "lr": 3e-4, "epochs": 8}


@pytest.mark.slow  # five tiny trainings, each two semievol processes
def test_cross_validated_sft_scores_every_setting_on_every_fold_then_trains_the_best(tiny_model, tmp_path):
    task = write_choice_task(tmp_path / "task", n_labeled=12, n_test=8)
    cfg = tiny_config_dict(tiny_model, task, tmp_path / "unused")
    cfg = {"seed": 0, "model": cfg["model"], "task": cfg["task"] | {"limit_labeled": 10}, "sft": cfg["sft"]}
    grid = ((5e-3, 1.0), (5e-3, 2.0))
    rd = tmp_path / "cv"
    record = sft_baselines.run_sft_cv(cfg, rd, grid=grid, k=2)
    assert set(record["held_out"]) == {"lr0.005_e1", "lr0.005_e2"}
    assert all(len(v) == 2 for v in record["held_out"].values())
    folds = [
        sorted(r["id"] for r in map(json.loads, open(rd.parent / "cv_folds" / f"fold{i}" / "held.jsonl")))
        for i in (0, 1)
    ]
    assert len(folds[0]) + len(folds[1]) == 10 and not set(folds[0]) & set(folds[1])
    best = max(record["mean"].values())
    assert record["mean"][f"lr0.005_e{record['chosen'][1]:g}"] == best
    final = yaml.safe_load((rd.parent / "cv.yaml").read_text())
    assert final["sft"]["epochs"] == record["chosen"][1] and final["evaluate"] == {"models": ["warm"]}
    rows = [json.loads(line) for line in open(rd / "evaluate" / "predictions_warm.jsonl")]
    assert len(rows) == 8  # the whole test split, not a fold
    assert sft_baselines.run_sft_cv(cfg, rd, grid=grid, k=2) == record  # finished: read back, not re-run
