"""Every shipped example config parses, validates and points at a preset with a known data layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from semievol.config import build_config, load_yaml
from semievol.config.recipes import config_with_recipe
from semievol.tasks import PRESETS, load_task

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_are_examples_for_the_four_tasks():
    assert {p.stem for p in EXAMPLES} >= {"arc", "fpb", "pubmedqa", "gsm8k"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_config_is_valid(path):
    cfg = build_config(load_yaml(path))
    assert cfg.task.task in PRESETS
    assert cfg.run_dir.startswith("runs/")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_config_loads_its_task(path, data_dir):
    cfg = build_config(load_yaml(path))
    cfg.task.data_dir = str(data_dir)
    task = load_task(cfg.task, seed=cfg.seed, need_test=True)
    assert len(task.labeled) > 0 and len(task.unlabeled) > 0 and task.test is not None


def _resolved(path: Path):
    """An example as `semievol run` resolves it at its own labeled count, stage settings only, with the
    warm models' length in steps (v5's file says 48 epochs of 64 rows, the recipe 384 steps)."""
    values = load_yaml(path)
    cfg = config_with_recipe({}, values, n_labeled=values["task"]["limit_labeled"])
    out = {s: dataclasses.asdict(getattr(cfg, s)) for s in ("task", "model", "sft", "propagate", "select", "evolve")}
    out["evaluate"] = dataclasses.asdict(cfg.evaluate)
    sft = out["sft"]
    sft["steps"] = sft.pop("max_steps") or values["task"]["limit_labeled"] * sft["epochs"] / sft["batch_size"]
    del sft["epochs"]
    return out


def test_few_labels_example_is_the_v5_recipe():
    """The example a few-labels user copies is the recipe the benchmark ran on the test splits, but its seed."""
    assert load_yaml(ROOT / "examples/fpb_few_labels.yaml")["recipe"] == "few_labels"
    assert _resolved(ROOT / "examples/fpb_few_labels.yaml") == _resolved(ROOT / "benchmarks/recipes/few_labels_v5.yaml")


def test_one_teacher_example_is_v5_with_the_warm_model_alone_teaching():
    """The two-training option is the llm_only ablation of v5 that the benchmark measured, without the four
    warm models that served there as further controls only."""
    example = _resolved(ROOT / "examples/fpb_few_labels_one_teacher.yaml")
    recipe = _resolved(ROOT / "benchmarks/recipes/few_labels_v5.yaml")
    recipe["sft"]["members"] = 1
    recipe["propagate"]["configs"] = ["warm:0:0"]
    recipe["evaluate"]["models"] = [m for m in recipe["evaluate"]["models"] if m != "members"]
    assert example == recipe
