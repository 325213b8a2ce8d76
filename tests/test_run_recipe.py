"""Recipes: 'auto' gives few labeled rows recipe 'few_labels' (v5 of the few-labels protocol) and more rows the
paper's procedure, under the user's settings and over the command's defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_config_dict

from semievol.cli import DEMO_DEFAULTS, main
from semievol.config import ConfigError, build_config, load_yaml
from semievol.config.recipes import FEW_LABELS_MAX_ROWS, config_with_recipe, pick_recipe, resolve_recipe

STAGE_SECTIONS = ("sft", "propagate", "select", "evolve", "evaluate")


def _sections(cfg) -> dict:
    return {s: dataclasses.asdict(getattr(cfg, s)) for s in STAGE_SECTIONS}


def test_few_labels_is_the_measured_recipe_v5():
    path = "benchmarks/recipes/few_labels_v5.yaml"
    measured = build_config(load_yaml(REPO / path))
    user = {k: v for k, v in load_yaml(REPO / path).items() if k in ("model", "task")}
    preset = config_with_recipe({}, user, n_labeled=measured.task.limit_labeled)
    assert preset.recipe == "few_labels"
    want, got = _sections(measured), _sections(preset)
    # v5 says 48 epochs of its 64 rows; the recipe says the 384 steps they make, whatever the labeled count
    assert measured.task.limit_labeled * measured.sft.epochs / measured.sft.batch_size == got["sft"]["max_steps"]
    for d in (want, got):
        del d["sft"]["epochs"], d["sft"]["max_steps"]
    assert got == want


def test_auto_picks_by_the_labeled_rows_and_the_config_names_the_choice():
    unresolved = config_with_recipe({}, {})
    assert unresolved.recipe == "auto" and unresolved.sft.members == 1  # the paper's settings until counted
    few = config_with_recipe({}, {}, n_labeled=FEW_LABELS_MAX_ROWS)
    many = config_with_recipe({}, {}, n_labeled=FEW_LABELS_MAX_ROWS + 1)
    assert (few.recipe, few.sft.members, few.evolve.mode, few.select.rule) == ("few_labels", 5, "fresh", "all")
    assert many.recipe == "paper" and _sections(many) == _sections(build_config({}))
    # the line sits at the largest draw measured against both recipes (docs/results/few_labels.md, session 36)
    assert (pick_recipe("auto", 128), pick_recipe("auto", 129)) == ("few_labels", "paper")
    named = config_with_recipe({}, {"recipe": "paper"}, n_labeled=10)
    assert named.recipe == "paper" and _sections(named) == _sections(build_config({}))
    assert config_with_recipe({}, {"recipe": "few_labels"}, n_labeled=500).recipe == "few_labels"
    with pytest.raises(ConfigError, match="^recipe: "):
        config_with_recipe({}, {"recipe": "fewlabels"}, n_labeled=10)


def test_the_users_settings_sit_over_the_recipe_and_the_commands_defaults_under_it():
    base = {"sft": {"lr": 2e-3, "epochs": 6, "lora_r": 4}}
    cfg = config_with_recipe(base, {"sft": {"lr": 5e-4}, "evolve": {"labeled_repeat": 3}}, n_labeled=32)
    assert cfg.sft.lr == 5e-4  # the user's, over the recipe's 1e-3 and the command's 2e-3
    assert cfg.sft.lora_r == 4  # the command's, where the recipe says nothing
    assert (cfg.sft.max_steps, cfg.sft.members, cfg.evolve.labeled_repeat) == (384, 5, 3)
    demo = config_with_recipe(DEMO_DEFAULTS, {}, n_labeled=48)  # the demo's 48 rows keep its own settings
    assert demo.recipe == "paper" and (demo.sft.lr, demo.sft.epochs, demo.sft.members) == (1e-3, 6, 1)


def test_a_run_folder_from_before_recipes_keeps_the_papers_settings(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text(yaml.safe_dump({"run_dir": str(old), "seed": 0}))
    layers = ({}, {"run_dir": str(old)})
    cfg = resolve_recipe(config_with_recipe(*layers), 16, layers)
    assert cfg.recipe == "paper" and cfg.sft.members == 1
    new = {"run_dir": str(tmp_path / "new")}
    assert resolve_recipe(config_with_recipe({}, new), 16, ({}, new)).recipe == "few_labels"
    # a config built in Python, without the layers it came from, keeps the settings it holds
    assert resolve_recipe(config_with_recipe({}, new), 16, None).recipe == "paper"


def _user_config(tiny_model: Path, task: Path, run_dir: Path) -> Path:
    d = tiny_config_dict(tiny_model, task, run_dir)
    del d["recipe"]
    d["sft"] |= {"max_steps": 2, "members": 2}  # the recipe's shape, at seconds
    d["evolve"] = {"steps": 2}
    path = run_dir.parent / "run.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_semievol_run_with_few_labeled_rows_runs_recipe_few_labels(tiny_model, choice_task, tmp_path, capsys):
    run_dir = tmp_path / "run"
    path = _user_config(tiny_model, choice_task, run_dir)
    assert main(["run", str(path)]) == 0
    said = capsys.readouterr().err
    assert "recipe: few_labels (16 labeled rows, at most 128): 2 warm model(s) of 2 steps, then a student of 2" in said
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["recipe"] == "few_labels"
    assert (saved["sft"]["members"], saved["sft"]["max_steps"], saved["evolve"]["steps"]) == (2, 2, 2)
    assert (saved["select"]["rule"], saved["evolve"]["targets"], saved["evolve"]["mode"]) == ("all", "soft", "fresh")
    assert saved["propagate"]["configs"] == ["members:0:0"]
    assert (run_dir / "sft" / "members").is_dir()
    assert main(["--quiet", "report", str(run_dir)]) == 0
    assert "recipe <code>few_labels</code>" in (run_dir / "report.html").read_text()
    # a stage command resolves the same way, so it finds the run's stages finished for their settings
    before = (run_dir / "evolve" / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["--quiet", "evolve", str(path)]) == 0
    assert (run_dir / "evolve" / "adapter_model.safetensors").stat().st_mtime_ns == before
    # and its config read back (the relaunch of a distributed stage reads it) is the same config
    assert build_config(yaml.safe_load((run_dir / "config.yaml").read_text())) == build_config(saved)


def test_recipe_paper_on_the_command_line_keeps_the_papers_procedure(tiny_model, choice_task, tmp_path):
    run_dir = tmp_path / "run"
    path = _user_config(tiny_model, choice_task, run_dir)
    assert main(["--quiet", "sft", str(path), "--recipe", "paper"]) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["recipe"] == "paper" and saved["select"]["rule"] != "all"
    assert (saved["evolve"]["targets"], saved["sft"]["lr"]) == ("hard", 5e-3)
    assert saved["propagate"]["configs"] != ["members:0:0"]
