"""Propagate on a real Ray cluster, started here with `ray start --head` on 127.0.0.1 with 2 CPUs.

The `ray` engine streams the unlabeled rows through Ray Data to two actors, each holding the hf engine over
the tiny random Llama (base and warm adapter); one actor is killed with SIGKILL while the run is under way.
The votes must be byte-identical to a one-process run's: the killed actor's chunks are run again by its
replacement, none lost or doubled. Every process of the cluster is stopped at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config_dict, write_choice_task

from semievol.cli import main
from semievol.engines.ray_pool import spool
from semievol.ray_local import local_cluster
from semievol.tasks import Example

pytest.importorskip("psutil")
if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (pip install 'semievol[ray]')", allow_module_level=True)

N_UNLABELED = 120
CHUNK = 2  # many small chunks, so a kill after the first one falls well inside the run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node cluster on 127.0.0.1 with 2 CPUs; leaving the block stops every process it started."""
    with local_cluster(num_cpus=2, log=tmp_path_factory.mktemp("ray-head") / "head.log") as c:
        yield c


def _config(tiny_model: Path, task: Path, run_dir: Path, **model: object) -> str:
    cfg = tiny_config_dict(tiny_model, task, run_dir)
    cfg["propagate"]["chunk_size"] = CHUNK
    cfg["model"] |= model
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.slow  # a cluster and three actors start (tens of seconds)
def test_propagate_on_a_ray_cluster_is_byte_identical_and_survives_a_killed_actor(tiny_model, tmp_path, cluster):
    task = write_choice_task(tmp_path / "task", n_unlabeled=N_UNLABELED)
    single, on_ray = tmp_path / "single", tmp_path / "on-ray"
    one = _config(tiny_model, task, single)
    many = _config(tiny_model, task, on_ray, engine="ray")
    assert main(["--quiet", "sft", one]) == 0
    assert main(["--quiet", "propagate", one]) == 0
    shutil.copytree(single / "sft", on_ray / "sft")

    codes: list[int] = []
    run = threading.Thread(
        target=lambda: codes.append(
            main(
                [
                    "--quiet",
                    "propagate",
                    many,
                    "--ray.address",
                    cluster.address,
                    "--ray.actors",
                    "2",
                    "--ray.num_cpus",
                    "1",
                ]
            )
        ),
        daemon=True,
    )
    run.start()
    votes = on_ray / "propagate" / "votes.jsonl"
    seen: set[int] = set()
    killed, lines_at_kill = None, None
    deadline = time.time() + 600  # a pool that never recovers fails the test instead of hanging the suite
    while run.is_alive():
        assert time.time() < deadline, "propagate on the cluster did not finish in 600 s"
        actors = set(cluster.actors("VoteActor"))
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
    assert not (on_ray / "propagate" / ".ray-rows").exists()
    assert (on_ray / "propagate" / "manifest.json").exists()
    record = json.loads((on_ray / "propagate" / "configs.json").read_text())["engine"]
    assert record["pool"] == {"actors": 2, "engine": "hf", "num_cpus": 1.0, "num_gpus": 0.0}
    assert record["actor_engine"]["engine"] == "hf"

    # select stays in this process: engine 'ray' answers there with an hf engine, as 'hf' does
    assert main(["--quiet", "select", one]) == 0
    assert main(["--quiet", "select", many]) == 0
    for name in ("select/pseudo_labels.jsonl", "select/selection.json"):
        assert (on_ray / name).read_bytes() == (single / name).read_bytes(), name


def test_spooled_rows_are_one_ascii_line_a_chunk_without_gold_answers(tmp_path):
    """Ray Data splits a text file at every line break, U+2028 and U+0085 included."""
    rows = [
        (Example(id="u1", question="one\u2028two\u0085three", options=["x", "y"], answer="A", row=2), [1, 0]),
        (Example(id="u2", question="plain", options=["x", "y"], answer="B", row=3), [0, 1]),
    ]
    files = spool([rows, rows[:1]], tmp_path / "spool")
    text = files[0].read_text(encoding="ascii")
    assert len(text.splitlines()) == 2
    first = json.loads(text.splitlines()[0])
    assert first["chunk"] == 0 and first["rows"][0]["question"] == rows[0][0].question
    assert first["rows"][0]["nbrs"] == [1, 0] and "answer" not in first["rows"][0]
