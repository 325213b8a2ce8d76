"""A one-machine Ray cluster on 127.0.0.1 for the tests and the benchmark: ``ray start --head`` in a session of
its own, stopped at the end together with every process of that session (a real cluster is started by its
operators: docs/scaling.md).

Ray replaces a loopback ``--node-ip-address`` with the machine's own address and listens on every
interface, except in its single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ray is
imported): then the head, its workers and the driver in this process listen on 127.0.0.1 only. Usage
statistics and the dashboard are off; so is token authentication (nothing but this machine can connect).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRACE_S = 3  # after SIGTERM, before SIGKILL to every process of the cluster
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster:
    head: subprocess.Popen
    address: str

    def processes(self) -> list[Any]:
        """Every live process of the cluster (psutil processes of the head's session)."""
        import psutil  # type: ignore[import-untyped]

        out = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.head.pid and _alive(p):
                    out.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        return out

    def actors(self, name: str) -> dict[int, Any]:
        """The cluster's processes whose command line names ``name`` (Ray titles an actor's process with its
        class), by pid."""
        import psutil

        out = {}
        for p in self.processes():
            try:
                if name in " ".join(p.cmdline()):
                    out[p.pid] = p
            except psutil.Error:
                continue
        return out


def _alive(p: Any) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextlib.contextmanager
def local_cluster(num_cpus: int = 2, log: Path | None = None) -> Iterator[LocalCluster]:
    """Start the head (``num_cpus`` CPUs, no GPU), yield it once its port answers, then stop it: SIGTERM to
    ``ray start --block``, and SIGKILL, by pid, to any process of its session still there ``GRACE_S`` later.
    Raises RuntimeError if a process outlives that."""
    saved = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    out = open(log, "wb") if log else subprocess.DEVNULL
    head = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            str(num_cpus),
            "--num-gpus",
            "0",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
            "--temp-dir",
            str(temp),
        ],
        start_new_session=True,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    cluster = LocalCluster(head, f"127.0.0.1:{port}")
    try:
        deadline = time.time() + 120
        while True:
            if head.poll() is not None:
                raise RuntimeError(f"ray start ended with exit code {head.returncode} (log: {log})")
            if time.time() > deadline:
                raise RuntimeError("the Ray head did not come up in 120 s")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield cluster
    finally:
        started = cluster.processes()
        head.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            # once actors have run, Ray's own stop waits about 30 s for its workers; nothing of this throwaway
            # cluster (its temporary folder is removed below) needs that grace
            head.wait(GRACE_S)
        for p in started:
            if _alive(p):
                p.kill()
        head.wait(10)
        deadline = time.time() + 10
        while any(_alive(p) for p in started) and time.time() < deadline:
            time.sleep(0.2)
        if not isinstance(out, int):
            out.close()
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        left = [p.pid for p in started if _alive(p)]
        if left:
            raise RuntimeError(f"processes of the Ray cluster outlived it: {left}")
