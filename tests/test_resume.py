"""Nothing lost, nothing half-written: `semievol run` killed with SIGKILL in each stage, then rerun.

The real command line runs in a subprocess on the tiny random Llama. The test watches the run directory
(``.pending`` markers, the votes file) to see which stage is running and kills the process there: during
sft, part way through propagate (then finished by ``semievol propagate``), during select, during evolve
and as evaluate starts. (Model calls killed part way through select or evaluate are covered in-process by
test_cache.py.) After a rerun to completion the artifacts must be byte-identical to those of an
uninterrupted run with the same seed, and no temporary file or in-progress marker may be left. The same
finished run then serves the CLI-level checks that an empty selection and a NaN loss each end with exit
code 2 and one line.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config_dict

from semievol.cli import main

COMPARED = [
    "propagate/votes.jsonl",
    "select/pseudo_labels.jsonl",
    "select/selection.json",
    "evolve/train_data.jsonl",
    "evolve/adapter_model.safetensors",
    "sft/adapter_model.safetensors",
    "evaluate/predictions_base.jsonl",
    "evaluate/predictions_warm.jsonl",
    "evaluate/predictions_evolved.jsonl",
]


def _write_config(tiny_model: Path, task: Path, run_dir: Path) -> Path:
    cfg = tiny_config_dict(tiny_model, task, run_dir)
    cfg["propagate"]["chunk_size"] = 6
    # enough steps that sft and evolve are still training a second after they start: with the output head
    # run only at target positions, the default single epoch took 0.1 s and evolve ended before its kill
    cfg["sft"]["epochs"] = 60
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "semievol", "--quiet", "run", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll every 2 ms; SIGKILL the process as soon as ``ready()`` holds."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(
                f"the run ended (exit {proc.returncode}) before the kill point in {what}: {proc.stderr.read()}"
            )
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            return
        time.sleep(0.002)
    proc.kill()
    raise AssertionError(f"the kill point in {what} was never reached")


def _running(stage_dir: Path, after: float = 0.0) -> Callable[[], bool]:
    """True once ``stage_dir`` has been in progress (``.pending`` there) for ``after`` seconds."""
    seen: list[float] = []

    def ready() -> bool:
        if not (stage_dir / ".pending").exists():
            return False
        if not seen:
            seen.append(time.time())
        return time.time() - seen[0] >= after

    return ready


def _has_lines(path: Path) -> Callable[[], bool]:
    return lambda: path.exists() and path.stat().st_size > 0


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """(task folder, run directory) of one uninterrupted run through the real command line."""
    from conftest import write_choice_task

    root = tmp_path_factory.mktemp("resume")
    task = write_choice_task(root / "task", n_labeled=12, n_unlabeled=16, n_test=6)
    run_dir = root / "reference"
    proc = subprocess.run(
        [sys.executable, "-m", "semievol", "--quiet", "run", str(_write_config(tiny_model, task, run_dir))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return task, run_dir


def _left_over(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob(".*"))


def test_kill_9_in_every_stage_then_rerun_gives_identical_artifacts(tiny_model, reference, tmp_path):
    task, ref = reference
    rd = tmp_path / "run"
    config = _write_config(tiny_model, task, rd)
    kills = [
        ("sft", _running(rd / "sft", after=1.0)),
        ("propagate", _has_lines(rd / "propagate" / "votes.jsonl")),
        ("select", _running(rd / "select", after=0.1)),
        ("evolve", _running(rd / "evolve", after=1.0)),
        ("evaluate", _running(rd / "evaluate")),
    ]
    for stage, ready in kills:
        if stage == "select":
            # select takes a tenth of a second once propagate has loaded the engine in the same process; with
            # propagate finished by its own command, select loads the engine itself and lasts long enough to hit
            done = subprocess.run(
                [sys.executable, "-m", "semievol", "--quiet", "propagate", str(config)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
        _kill_when(_start(config), ready, stage)
        # the kill landed inside the stage: in progress, not finished
        assert (rd / stage / ".pending").exists() and not (rd / stage / "manifest.json").exists(), stage
        if stage == "propagate":
            assert 0 < (rd / "propagate" / "votes.jsonl").read_bytes().count(b"\n") < 16  # part of the rows

    proc = subprocess.run(
        [sys.executable, "-m", "semievol", "--quiet", "run", str(config)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    for name in COMPARED:
        assert (rd / name).read_bytes() == (ref / name).read_bytes(), name
    for stage in ("sft", "propagate", "select", "evolve", "evaluate"):
        assert (rd / stage / "manifest.json").exists()
    assert _left_over(rd) == []


def test_a_stage_killed_while_writing_leaves_nothing_a_reader_would_take(tiny_model, reference, tmp_path):
    """A killed evolve: no manifest, so the next stage refuses it; its folder is cleared and redone on rerun."""
    task, ref = reference
    rd = tmp_path / "run"
    shutil.copytree(ref, rd)
    config = _write_config(tiny_model, task, rd)
    for stage in ("evolve", "evaluate"):
        shutil.rmtree(rd / stage)
    _kill_when(_start(config), _running(rd / "evolve", after=0.5), "evolve")
    rc = main(["--quiet", "evaluate", str(config)])
    assert rc == 2  # StageMissing: the half-done evolve is not taken as finished
    (rd / "evolve" / "stale.bin").write_bytes(b"left by a killed run")
    assert main(["--quiet", "run", str(config)]) == 0
    assert not (rd / "evolve" / "stale.bin").exists()
    for name in COMPARED:
        assert (rd / name).read_bytes() == (ref / name).read_bytes(), name
    assert _left_over(rd) == []


def _one_line_exit_2(rc: int, err: str, expect: str) -> None:
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("semievol: error: ") and expect in lines[0], lines[0]


def test_empty_selection_is_one_line_and_exit_2(tiny_model, reference, tmp_path, capsys):
    task, ref = reference
    rd = tmp_path / "run"
    shutil.copytree(ref, rd)
    config = _write_config(tiny_model, task, rd)
    rc = main(["--quiet", "run", str(config), "--select.rule", "fixed", "--select.threshold", "-1"])
    _one_line_exit_2(rc, capsys.readouterr().err, "select: no pseudo-label passed the 'fixed' rule")
    # finished upstream stages are kept; the failed select is not marked finished, nothing downstream ran again
    assert (rd / "propagate" / "manifest.json").read_bytes() == (ref / "propagate" / "manifest.json").read_bytes()
    assert not (rd / "select" / "manifest.json").exists()
    assert not (rd / "select" / "pseudo_labels.jsonl").exists()


def test_nan_loss_is_one_line_and_exit_2_with_no_adapter(tiny_model, reference, tmp_path, capsys):
    task, _ = reference
    rd = tmp_path / "run"
    config = _write_config(tiny_model, task, rd)
    rc = main(
        [
            "--quiet",
            "run",
            str(config),
            "--sft.lr",
            "1e30",
            "--sft.warmup_ratio",
            "0",
            "--sft.epochs",
            "3",
            "--sft.batch_size",
            "2",
            "--sft.micro_batch_size",
            "2",
        ]
    )
    _one_line_exit_2(rc, capsys.readouterr().err, "nothing was written")
    assert {p.name for p in (rd / "sft").iterdir()} == {".pending"}
    assert not list(rd.rglob("adapter_*")) and not list(rd.rglob("*.tmp"))
    assert not any((rd / s).exists() for s in ("propagate", "select", "evolve", "evaluate"))
