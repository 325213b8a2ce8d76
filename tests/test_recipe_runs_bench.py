"""benchmarks/recipe_runs.py: a benchmark killed with SIGTERM takes the commands it started with it, so no
orphaned `semievol` keeps a run folder's lock after its parent is gone."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

# a parent as few_labels.py is one: the handler installed, a command running from a worker thread
PARENT = """
import sys, threading
sys.path.insert(0, {bench!r})
from recipe_runs import end_children_on_sigterm, run_logged

end_children_on_sigterm(grace_s=10)
child = [sys.executable, "-c", "import os, time; open({pid!r}, 'w').write(str(os.getpid())); time.sleep(120)"]
with open({log!r}, "a") as log:
    worker = threading.Thread(target=run_logged, args=(child, log))
    worker.start()
    worker.join()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by its parent's parent) is not running
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ")[-1][0] != "Z"


def test_sigterm_to_the_benchmark_ends_the_commands_it_started(tmp_path):
    pid_file, log = tmp_path / "child.pid", tmp_path / "child.log"
    code = textwrap.dedent(PARENT).format(bench=str(BENCH), pid=str(pid_file), log=str(log))
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    assert _alive(child)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the command the benchmark started outlived it"


def test_a_failing_command_raises_as_subprocess_run_does(tmp_path):
    sys.path.insert(0, str(BENCH))
    from recipe_runs import run_logged

    with open(tmp_path / "log", "a") as log:
        run_logged([sys.executable, "-c", "print('fine')"], log)
        with pytest.raises(subprocess.CalledProcessError) as failed:
            run_logged([sys.executable, "-c", "import sys; sys.exit(3)"], log)
    assert failed.value.returncode == 3
    assert "fine" in (tmp_path / "log").read_text()
