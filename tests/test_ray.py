"""Propagate on a real Ray cluster, started here with `ray start --head` on 127.0.0.1 with 2 CPUs.

The `ray` engine streams the unlabeled rows through Ray Data to two actors, each holding the hf engine over
the tiny random Llama (base and warm adapter); one actor is killed with SIGKILL while the run is under way.
The votes must be byte-identical to a one-process run's: the killed actor's chunks are run again by its
replacement, none lost or doubled. Every process of the cluster is stopped at the end.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config_dict, write_choice_task

from semievol.cli import main

psutil = pytest.importorskip("psutil")
if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (pip install 'semievol[ray]')", allow_module_level=True)

N_UNLABELED = 120
CHUNK = 2  # many small chunks, so a kill after the first one falls well inside the run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _session(head: subprocess.Popen) -> list[psutil.Process]:
    """Every live process of the cluster: `ray start` ran in a session of its own."""
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == head.pid and _alive(p):
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _vote_actors(head: subprocess.Popen) -> set[int]:
    pids = set()
    for p in _session(head):
        try:
            if "VoteActor" in " ".join(p.cmdline()):
                pids.add(p.pid)
        except psutil.Error:
            continue
    return pids


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """The head of a one-node cluster on 127.0.0.1 (2 CPUs, no dashboard, no usage stats); yields its address.

    Ray replaces a loopback --node-ip-address with the machine's own address and listens on every interface,
    except in its single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read when ray is imported):
    then the head, its workers and this process's driver all listen on 127.0.0.1 only."""
    env = pytest.MonkeyPatch()
    env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env.setenv("RAY_USAGE_STATS_ENABLED", "0")
    env.setenv("RAY_AUTH_MODE", "disabled")  # a token left in ~/.ray by another cluster must not be needed here
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    log = tmp_path_factory.mktemp("ray-head") / "head.log"
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
         "--disable-usage-stats", "--temp-dir", str(temp)],
        start_new_session=True, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            assert head.poll() is None, f"ray start ended early: {log.read_text()[-2000:]}"
            assert time.time() < deadline, "the Ray head did not come up in 60 s"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield head, f"127.0.0.1:{port}"
    finally:
        started = _session(head)
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the cluster's processes on SIGTERM
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(10)
        for grace in (5, 5):  # what has not stopped after the head within 5 s is killed (by its pid)
            deadline = time.time() + grace
            while any(_alive(p) for p in started) and time.time() < deadline:
                time.sleep(0.2)
            for p in started:
                if _alive(p):
                    p.kill()
        left = [p.pid for p in started if _alive(p)]
        shutil.rmtree(temp, ignore_errors=True)
        env.undo()
        assert not left, f"processes of the cluster outlived it: {left}"


def _config(tiny_model: Path, task: Path, run_dir: Path, **model: object) -> str:
    cfg = tiny_config_dict(tiny_model, task, run_dir)
    cfg["propagate"]["chunk_size"] = CHUNK
    cfg["model"] |= model
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_propagate_on_a_ray_cluster_is_byte_identical_and_survives_a_killed_actor(tiny_model, tmp_path, ray_head):
    head, address = ray_head
    task = write_choice_task(tmp_path / "task", n_unlabeled=N_UNLABELED)
    single, cluster = tmp_path / "single", tmp_path / "cluster"
    one = _config(tiny_model, task, single)
    many = _config(tiny_model, task, cluster, engine="ray")
    assert main(["--quiet", "sft", one]) == 0
    assert main(["--quiet", "propagate", one]) == 0
    shutil.copytree(single / "sft", cluster / "sft")

    codes: list[int] = []
    run = threading.Thread(target=lambda: codes.append(
        main(["--quiet", "propagate", many, "--ray.address", address, "--ray.actors", "2", "--ray.num_cpus", "1"])))
    run.start()
    votes = cluster / "propagate" / "votes.jsonl"
    seen: set[int] = set()
    killed, lines_at_kill = None, None
    while run.is_alive():
        actors = _vote_actors(head)
        seen |= actors
        lines = votes.read_bytes().count(b"\n") if votes.exists() else 0
        if killed is None and lines and actors:
            killed, lines_at_kill = min(actors), lines
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    run.join()

    assert codes == [0]
    assert killed is not None and lines_at_kill < N_UNLABELED, "the actor was killed only after the last chunk"
    assert len(seen - {killed}) >= 2, "no actor took the killed one's place"
    assert votes.read_bytes() == (single / "propagate" / "votes.jsonl").read_bytes()
    assert not (cluster / "propagate" / ".ray-rows").exists()
    assert (cluster / "propagate" / "manifest.json").exists()
