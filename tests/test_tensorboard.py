"""sft.report_to: tensorboard writes each training stage's loss curve as TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_config_dict

from semievol.config import ConfigError, build_config
from semievol.pipeline import make_context, run

pytest.importorskip("tensorboard")


def _scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_loss_curves_of_sft_and_evolve_match_their_train_logs(tiny_model, choice_task, tmp_path):
    d = tiny_config_dict(tiny_model, choice_task, tmp_path / "run")
    d["sft"]["report_to"] = "tensorboard"
    d["evaluate"] = {"models": ["warm"]}
    run(make_context(build_config(d), quiet=True, need_test=True))
    rd = tmp_path / "run"
    assert {p.name for p in (rd / "tensorboard").iterdir()} == {"sft", "evolve"}
    for stage in ("sft", "evolve"):
        log = [json.loads(x) for x in (rd / stage / "train_log.jsonl").read_text().splitlines()]
        loss = _scalars(rd / "tensorboard" / stage, "train/loss")
        assert [s for s, _ in loss] == [r["step"] for r in log] and len(log) >= 2
        assert [round(v, 4) for _, v in loss] == [round(r["loss"], 4) for r in log]
        assert [s for s, _ in _scalars(rd / "tensorboard" / stage, "train/lr")] == [r["step"] for r in log]


def test_switching_reporting_on_does_not_retrain(tiny_model, choice_task, tmp_path):
    d = tiny_config_dict(tiny_model, choice_task, tmp_path / "run")
    run(make_context(build_config(d), quiet=True), stages=["sft"])
    before = (tmp_path / "run" / "sft" / "adapter_model.safetensors").stat().st_mtime_ns
    d["sft"]["report_to"] = "tensorboard"
    run(make_context(build_config(d), quiet=True), stages=["sft"])
    assert (tmp_path / "run" / "sft" / "adapter_model.safetensors").stat().st_mtime_ns == before
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_missing_package_is_a_config_error(monkeypatch, tiny_model, choice_task, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    d = tiny_config_dict(tiny_model, choice_task, tmp_path / "run")
    d["sft"]["report_to"] = "tensorboard"
    with pytest.raises(ConfigError, match=r"sft.report_to: .*pip install 'semievol\[tensorboard\]'"):
        build_config(d)
