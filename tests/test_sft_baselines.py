"""The SFT baselines of the few-labels protocol (benchmarks/sft_baselines.py): a warm-only config at
semievol's defaults, and SFT whose epochs semievol chooses by cross-validation on the labeled draw."""

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


@pytest.mark.slow  # two folds x two settings, then the final training: tiny, but in semievol processes
def test_cross_validated_sft_trains_the_chosen_epochs_on_the_whole_draw(tiny_model, tmp_path):
    task = write_choice_task(tmp_path / "task", n_labeled=12, n_test=8)
    cfg = tiny_config_dict(tiny_model, task, tmp_path / "unused")
    cfg = {"seed": 0, "model": cfg["model"], "task": cfg["task"] | {"limit_labeled": 10}, "sft": cfg["sft"]}
    rd = tmp_path / "cv"
    record = sft_baselines.run_sft_cv(cfg, rd, epochs=(1.0, 2.0), k=2)
    assert set(record["held_out"]) == {"1", "2"} and all(len(v) == 2 for v in record["held_out"].values())
    assert record["mean"][f"{record['chosen_epochs']:g}"] == max(record["mean"].values())
    final = yaml.safe_load((rd.parent / "cv.yaml").read_text())
    assert final["sft"]["cv_epochs"] == [1.0, 2.0] and final["sft"]["lr"] == sft_baselines.CV_LR
    assert final["evaluate"] == {"models": ["warm"]}
    summary = json.loads((rd / "sft" / "train_summary.json").read_text())
    assert summary["examples"] == 10  # the whole draw, not a fold
    rows = [json.loads(line) for line in open(rd / "evaluate" / "predictions_warm.jsonl")]
    assert len(rows) == 8  # the whole test split
    assert sft_baselines.run_sft_cv(cfg, rd, epochs=(1.0, 2.0), k=2) == record  # finished: read back, not re-run
