"""Guards of a run folder: whose it is, one writer at a time, and one-line errors when the disk refuses.

A folder is a semievol run folder when it holds ``LOCK_FILE`` (created before any other file of a run) or a
stage folder semievol wrote. Before a byte is written, ``run_dir_lock`` refuses any other folder that holds a
name semievol would write (``config.yaml``, a stage's folder, ...); a folder of the user's own other files (a
config file kept beside its run, notes) is taken, and those files are never touched. It then takes an
exclusive ``flock`` on ``LOCK_FILE`` for as long as the command writes. The operating system releases the lock
when the process ends, however it ends, so a killed run never leaves a stale lock; the holder's PID is written
in the file so that a second writer is told who holds it. ``owned_stage_dir`` tells the clean-up of unfinished
stages whether a stage-named folder is one semievol wrote, and ``disk_errors`` turns a full or read-only disk
into one line naming the stage.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import ConfigError, RunConfig
from .distributed import LAUNCHED, is_main

LOCK_FILE = "semievol.lock"
# the disk, not the data or the code: a full disk, a quota, a read-only mount or folder, a file too large
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
# every name semievol writes directly in a run folder (files and folders)
_WRITTEN_BY_SEMIEVOL = re.compile(
    r"config\.yaml|versions\.json|templates\.json|timings\.json|data_warnings\.json|report\.html|eval_.*\.json"
    r"|cache|tensorboard|export|merged_.*|(sft|propagate|select|evolve|evaluate|sft_matched)(_r\d+)?"
)
_SEMIEVOL_STAGE_FILES = re.compile(r"manifest\.json|\.pending|votes\.shard-\d+-of-\d+\.jsonl(\.done|\.pending|\.lock)?")


class RunDirError(ConfigError):
    """The run folder cannot be used: not semievol's, held by another writer, or not writable. One line."""


def is_run_dir(path: Path) -> bool:
    """True where ``path`` holds a semievol run: its lock file, or a stage folder semievol wrote (one copied in
    from another run, as the warm adapter of a sharded propagate is)."""
    if (path / LOCK_FILE).is_file():
        return True
    return any(p.is_dir() and ((p / "manifest.json").is_file() or (p / ".pending").is_file()) for p in path.iterdir())


def check_run_dir(path: Path) -> None:
    """Refuse, before anything is written, a run folder that exists and is not semievol's to write in."""
    if not path.exists():
        return
    if not path.is_dir():
        raise RunDirError(f"run_dir: {path} exists and is not a folder")
    try:
        empty = not any(path.iterdir())
    except OSError as e:
        raise RunDirError(f"run_dir: cannot read {path} ({e.strerror})") from None
    if empty or is_run_dir(path):
        return
    clash = sorted(p.name for p in path.iterdir() if _WRITTEN_BY_SEMIEVOL.fullmatch(p.name))
    if clash:
        raise RunDirError(
            f"run_dir: {path} exists and is not a semievol run folder (no {LOCK_FILE}), and "
            f"semievol would write over its {', '.join(clash[:3])}; choose a new or empty folder"
        )


def owned_stage_dir(folder: Path) -> bool:
    """True where semievol may delete ``folder``: empty, or marked by a stage (manifest, ``.pending``, shards)."""
    entries = [p.name for p in folder.iterdir()]
    return not entries or any(_SEMIEVOL_STAGE_FILES.fullmatch(n) for n in entries)


def not_owned(folder: Path) -> RunDirError:
    return RunDirError(
        f"{folder}: this folder has a stage's name but semievol did not write it (no manifest.json "
        "or .pending); move it out of the run folder, nothing in it was changed"
    )


def _holder(fd: int) -> str:
    """Who holds the lock on ``fd``: the PID an exclusive holder wrote, or shard workers (shared holders)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return f"PID {text}" if text.isdigit() else "PID unknown"
    fcntl.flock(fd, fcntl.LOCK_UN)
    return "propagate --shard workers"


@contextmanager
def file_lock(lock: Path, what: str, shared: bool = False) -> Iterator[None]:
    """Hold a ``flock`` on ``lock`` (created) for the body; RunDirError naming ``what`` and the holder if taken.

    An exclusive holder writes its PID into the file; shared holders (propagate shard workers, which may
    run side by side) write nothing."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise RunDirError(
            f"{what}: cannot write in {lock.parent} ({e.strerror}); a finished run can still be "
            "read (semievol report RUN_DIR --out FILE, semievol pseudo RUN_DIR)"
        ) from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"{what}: {lock.parent} is being written by another semievol process "
                f"({_holder(fd)}); wait for it to end, or use another run_dir"
            ) from None
        if not shared:
            with disk_errors(what):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def run_dir_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """Check the run folder is semievol's (or new), create it and hold its write lock for the body.

    ``shared``: a propagate shard worker, which may write beside other shard workers but not beside a
    whole-folder writer. Processes launched by a semievol that holds the lock (``accelerate launch``
    workers) and the ranks other than 0 of a distributed run write under their launcher's lock and take none.
    """
    if LAUNCHED in os.environ or not is_main():
        yield
        return
    check_run_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise RunDirError(f"run_dir: cannot create {path} ({e.strerror})") from None
    with file_lock(path / LOCK_FILE, "run_dir", shared):
        yield


@contextmanager
def disk_errors(where: str, more: str = "") -> Iterator[None]:
    """Turn an OSError of the disk (full, over quota, read-only, permission) into a one-line RunDirError
    naming ``where`` (the stage), the file where known and what to do (``more`` is added to the advice)."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        what = f" writing {e.filename}" if e.filename else ""
        hint = (
            "free some space and run the command again: finished work and finished rows are kept"
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            else "check the folder's permissions"
        )
        raise RunDirError(
            f"{where}: {e.strerror or os.strerror(e.errno)}{what}; {hint}{' ' + more if more else ''}"
        ) from None


def check_model_source(cfg: RunConfig, stages: tuple[str, ...]) -> None:
    """The base model's path or id, checked before the run folder is touched (ModelError if it is missing).

    Needed by every engine but the fake one, and by the training stages whatever the engine (evaluate
    trains the compute-matched SFT adapter when it is asked for)."""
    training = {"sft", "evolve"} | ({"evaluate"} if "sft_matched" in cfg.evaluate.models else set())
    if cfg.model.engine == "fake" and not training & set(stages):
        return
    from .models import resolve_model

    resolve_model(cfg.model.model)
