"""The warm model's epochs chosen by cross-validation on the labeled rows (``sft.cv_epochs``): stratified
folds, the settings' checks, the fingerprint of runs made before the setting, and a run on the tiny model."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace

import pytest
import yaml
from conftest import tiny_config_dict, write_choice_task

from semievol.cli import main
from semievol.config import ConfigError, RunConfig, TrainConfig, fingerprint_settings
from semievol.stages.sft import stratified_folds
from semievol.tasks import Example


def _rows(counts: dict[str, int]) -> list[Example]:
    out, i = [], 0
    for answer, n in counts.items():
        for _ in range(n):
            out.append(Example(id=f"r{i}", question=f"q{i}", options=["x", "y", "z"], answer=answer))
            i += 1
    return out


def test_folds_are_disjoint_cover_every_row_and_share_each_class_evenly():
    rows = _rows({"A": 9, "B": 6, "C": 3})
    parts = stratified_folds(rows, 3, seed=1)
    ids = [e.id for p in parts for e in p]
    assert sorted(ids) == sorted(e.id for e in rows) and len(set(ids)) == len(ids)
    for p in parts:
        assert Counter(e.answer for e in p) == {"A": 3, "B": 2, "C": 1}
    assert [e.id for e in stratified_folds(rows, 3, seed=1)[0]] == [e.id for e in parts[0]]
    assert [e.id for e in stratified_folds(rows, 3, seed=2)[0]] != [e.id for e in parts[0]]


@pytest.mark.parametrize(
    "settings, field",
    [({"cv_epochs": [4, 0]}, "sft.cv_epochs"), ({"cv_folds": 1}, "sft.cv_folds"),
     ({"cv_epochs": [2, 4], "launcher": "accelerate"}, "sft.cv_epochs")],
)  # fmt: skip
def test_impossible_cross_validation_settings_are_refused_by_name(settings, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**settings)


def test_the_settings_enter_the_fingerprint_only_when_used():
    """A run folder made before cv_epochs existed keeps its sft fingerprint; asking for it re-runs sft."""
    sft = RunConfig().sft
    assert not {"cv_epochs", "cv_folds"} & set(fingerprint_settings(sft))
    used = fingerprint_settings(replace(sft, cv_epochs=[8.0, 24.0]))
    assert used["cv_epochs"] == [8.0, 24.0] and "cv_folds" not in used
    assert fingerprint_settings(replace(sft, cv_epochs=[8.0], cv_folds=3))["cv_folds"] == 3


def test_sft_trains_the_epochs_the_held_out_folds_chose(tiny_model, tmp_path):
    task = write_choice_task(tmp_path / "task", n_labeled=12, n_unlabeled=4, n_test=4)
    cfg = tiny_config_dict(tiny_model, task, tmp_path / "run")
    cfg["sft"] |= {"epochs": 2, "cv_epochs": [1, 3], "cv_folds": 2}  # 2: in no fold, so it must not train
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["--quiet", "sft", str(path)]) == 0
    sft = tmp_path / "run" / "sft"
    cv = json.loads((sft / "cv.json").read_text())
    assert cv["folds"] == 2 and set(cv["held_out"]) == {"1", "3"}
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in cv["held_out"].values())
    means = {e: sum(v) / 2 for e, v in cv["held_out"].items()}
    assert cv["chosen_epochs"] == (1 if means["1"] >= means["3"] else 3)
    summary = json.loads((sft / "train_summary.json").read_text())
    assert summary["steps"] == math.ceil(12 / 4) * cv["chosen_epochs"]  # every labeled row, the chosen epochs
    assert not (sft / "cv").exists()  # the folds' adapters are not kept
