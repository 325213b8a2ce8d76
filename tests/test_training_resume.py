"""A schedule stopped part-way and resumed trains as one run of the whole schedule would."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from semievol.config import TrainConfig
from semievol.models import ModelSource
from semievol.prompts import training_pair
from semievol.tasks import Example
from semievol.training import TrainingError, train_lora
from semievol.training_state import STATE_FILE


def _pairs(n=12, offset=0):
    exs = [
        Example(id=str(i), question=f"Question {i + offset}?", options=["yes", "no"], answer="AB"[i % 2])
        for i in range(n)
    ]
    return [training_pair(e, e.answer, "choice", False) for e in exs]


def _log(folder):
    return [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]


def test_resumed_schedule_equals_one_run(tiny_model, tmp_path):
    # 12 rows at batch 4 = 3 steps an epoch; lora_dropout on, so the random state must carry over too
    cfg = TrainConfig(lr=1e-2, batch_size=4, micro_batch_size=2, max_length=256, lora_dropout=0.1, warmup_ratio=0.2)
    src = ModelSource(str(tiny_model))
    whole = train_lora(src, _pairs(), replace(cfg, max_steps=10), tmp_path / "whole", seed=3)
    first = train_lora(src, _pairs(), replace(cfg, max_steps=4), tmp_path / "a", seed=3, schedule_tail=6)
    assert (first.adapter_dir / STATE_FILE).is_file() and not (whole.adapter_dir / STATE_FILE).exists()
    rest = train_lora(src, _pairs(), replace(cfg, max_steps=6), tmp_path / "b", seed=3, resume_from=first.adapter_dir)
    assert not (rest.adapter_dir / STATE_FILE).exists()  # the schedule is finished
    one, two = _log(whole.adapter_dir), _log(first.adapter_dir) + _log(rest.adapter_dir)
    assert [r["lr"] for r in two] == pytest.approx([r["lr"] for r in one], rel=1e-12)
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-6)
    a = load_file(whole.adapter_dir / "adapter_model.safetensors")
    b = load_file(rest.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    summary = json.loads((rest.adapter_dir / "train_summary.json").read_text())
    assert summary["schedule"] == {"from_step": 4, "to_step": 10, "planned_steps": 10}
    # the learning rate was not restarted: the first resumed step is below the peak and past the warm-up
    assert two[4]["lr"] < cfg.lr and two[3]["lr"] > two[4]["lr"]


def test_resume_on_other_rows_keeps_the_schedule_but_not_the_stream(tiny_model, tmp_path):
    cfg = TrainConfig(lr=1e-2, batch_size=4, micro_batch_size=2, max_length=256)
    src = ModelSource(str(tiny_model))
    first = train_lora(src, _pairs(), replace(cfg, max_steps=3), tmp_path / "a", seed=0, schedule_tail=3)
    same = train_lora(src, _pairs(), replace(cfg, max_steps=3), tmp_path / "s", seed=0, resume_from=first.adapter_dir)
    other = train_lora(
        src, _pairs(offset=50), replace(cfg, max_steps=3), tmp_path / "o", seed=0, resume_from=first.adapter_dir
    )
    assert [r["lr"] for r in _log(same.adapter_dir)] == [r["lr"] for r in _log(other.adapter_dir)]
    assert [r["loss"] for r in _log(same.adapter_dir)] != [r["loss"] for r in _log(other.adapter_dir)]


def test_resume_past_the_schedule_or_without_state_is_refused(tiny_model, tmp_path):
    cfg = TrainConfig(lr=1e-2, batch_size=4, micro_batch_size=2, max_length=256)
    src = ModelSource(str(tiny_model))
    first = train_lora(src, _pairs(), replace(cfg, max_steps=3), tmp_path / "a", seed=0, schedule_tail=2)
    with pytest.raises(TrainingError, match="go past the 5-step schedule"):
        train_lora(src, _pairs(), replace(cfg, max_steps=3), tmp_path / "b", seed=0, resume_from=first.adapter_dir)
    assert not (tmp_path / "b").exists()
    plain = train_lora(src, _pairs(), replace(cfg, max_steps=2), tmp_path / "c", seed=0)
    with pytest.raises(TrainingError, match="no resume_state.pt"):
        train_lora(src, _pairs(), replace(cfg, max_steps=2), tmp_path / "d", seed=0, resume_from=plain.adapter_dir)
