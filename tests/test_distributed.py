"""Training under accelerate: two CPU processes (gloo) take the same steps as one process.

One process accumulates two micro-batches of 4 per optimizer step; two processes take one micro-batch of 4
each (the same effective batch of 8), launched by semievol itself (``sft.launcher: accelerate``). LoRA
dropout is off, since its masks are drawn per process. Tolerance: losses within 1e-6 relative and adapter
weights within 1e-5. With two processes the sum of the two gradients is exact in fp32 (each process scales
its loss by 2 and DDP halves the sum: powers of two), and on the 2-core Xeon and EPYC machines of earlier
sessions the curves and weights measured identical. On an Intel Xeon with AMX the weights differed by
1.9e-6 after the 6 steps (losses still within 1e-6): the CPU kernels there do not sum a micro-batch's
gradient in the same order in a lone process as in one of two. An error in how the processes share the
work moves a weight by about the learning rate (5e-3) per Adam step, hundreds of times the margin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config_dict, write_choice_task
from safetensors.torch import load_file

from semievol.cli import main

pytestmark = pytest.mark.slow


def _config(tiny_model: Path, task: Path, run_dir: Path, launcher: str) -> str:
    cfg = tiny_config_dict(tiny_model, task, run_dir)
    cfg["sft"].update(
        {
            "batch_size": 8,
            "micro_batch_size": 4,
            "max_steps": 6,
            "lora_dropout": 0.0,
            # the same arithmetic in both runs: fp32, and the shared prompt prefix (one process only) off
            "bf16": "off",
            "shared_prefix": False,
            "launcher": launcher,
            "num_processes": 2,
        }
    )
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in open(run_dir / "sft" / "train_log.jsonl")]


def test_two_gloo_processes_follow_the_single_process_loss_curve(tiny_model, tmp_path):
    task = write_choice_task(tmp_path / "task")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["--quiet", "sft", _config(tiny_model, task, one, "none")]) == 0
    assert main(["--quiet", "sft", _config(tiny_model, task, two, "accelerate")]) == 0

    summary = json.loads((two / "sft" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and "processes" not in json.loads((one / "sft" / "train_summary.json").read_text())
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 6 and a[0] != a[-1]  # it trained
    assert b == pytest.approx(a, rel=1e-6)
    wa, wb = load_file(one / "sft" / "adapter_model.safetensors"), load_file(two / "sft" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-5
    # rank 0 alone wrote: the same files, one manifest, nothing temporary
    assert {p.name for p in (two / "sft").iterdir()} == {p.name for p in (one / "sft").iterdir()}
    assert not list(two.rglob("*.tmp")) and not list(two.rglob(".pending"))


def test_steps_that_do_not_split_over_the_processes_are_refused(tiny_model, tmp_path, capsys):
    task = write_choice_task(tmp_path / "task")
    cfg = yaml.safe_load(Path(_config(tiny_model, task, tmp_path / "run", "accelerate")).read_text())
    cfg["sft"].update({"batch_size": 4, "num_processes": 2})  # one micro-batch a step, two processes
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["--quiet", "sft", str(path)]) == 2
    assert "accelerate launch ended with exit code" in capsys.readouterr().err
    assert not (tmp_path / "run" / "sft" / "manifest.json").exists()
