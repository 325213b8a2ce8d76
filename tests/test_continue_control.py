"""The second compute-matched control (benchmarks/continue_control.py): the warm adapter trained on for evolve's
steps on the labeled rows alone, scored on the same test rows as the run's own models."""

import importlib.util
import json
import sys
from pathlib import Path

from conftest import tiny_config_dict, write_choice_task

from semievol.config import build_config

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # continue_control imports recipe_runs and paper beside it
_spec = importlib.util.spec_from_file_location("continue_control", BENCH / "continue_control.py")
continue_control = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(continue_control)


def test_the_continued_control_starts_from_warm_and_trains_evolves_steps(tiny_model, tmp_path):
    from semievol.pipeline import make_context, run

    task = write_choice_task(tmp_path / "task")
    rd = tmp_path / "run"
    d = tiny_config_dict(tiny_model, task, rd)
    d["propagate"]["configs"] = ["warm:0:0"]
    d["select"] = {"justify": "none"}
    d["evolve"] = {"mode": "warm_start", "labeled_repeat": 2}
    d["evaluate"] = {"models": ["warm", "evolved", "sft_matched"]}
    run(make_context(build_config(d), quiet=True, need_test=True))

    row = continue_control.measure(rd)
    summary = json.loads((rd / "sft_continue" / "train_summary.json").read_text())
    evolve = json.loads((rd / "evolve" / "train_summary.json").read_text())
    assert summary["steps"] == evolve["steps"] and summary["init_adapter"] == str(rd / "sft")
    n_labeled = json.loads((rd / "sft" / "train_summary.json").read_text())["examples"]
    assert summary["examples"] == 2 * n_labeled  # the labeled rows, repeated as evolve repeats them; nothing else
    assert row["steps"]["continue"] == row["steps"]["sft_matched"]
    n_test = len((task / "test.csv").read_text().strip().splitlines()) - 1
    assert row["evolved_minus_continue"]["rows"] == n_test  # paired on the run's own test rows
    assert set(row["accuracy"]) == {"warm", "evolved", "sft_matched", "continue"}
    trained = (rd / "sft_continue" / "adapter_config.json").stat().st_mtime
    continue_control.measure(rd)  # the adapter is kept, not trained again
    assert (rd / "sft_continue" / "adapter_config.json").stat().st_mtime == trained
    table = continue_control.markdown([row]).splitlines()[-1]
    assert "seed 0 |" in table and table.count("|") == 11
