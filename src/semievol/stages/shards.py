"""Propagate split between independent workers.

``semievol propagate --shard I/N`` votes on the I-th of N contiguous ranges of unlabeled rows into
``propagate/votes.shard-I-of-N.jsonl`` and marks it finished with ``votes.shard-I-of-N.jsonl.done``; the next
``select`` (or ``run``) checks that all N are finished for the current settings, concatenates them into
``votes.jsonl`` (byte-identical to a single worker's, since votes are seeded per row) and marks propagate
finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from ..jsonio import atomic_write_json, atomic_write_text, tmp_name
from ..progress import log
from ..runctx import Adapter, RunContext
from ..rundir import StageMissing, finish_stage, finished, input_records
from ..rundir_guard import disk_errors, file_lock
from ..tasks import Example
from .propagate import run_propagate, shard_file, shard_rows

_SHARD = re.compile(r"votes\.shard-(\d+)-of-(\d+)\.jsonl(\.done|\.pending)?")


def propagate_shard(
    ctx: RunContext,
    out: Path,
    fp: str,
    pool: list[Example],
    warm: Adapter,
    shard: tuple[int, int],
    members: tuple[Adapter, ...] = (),
) -> None:
    """One worker's share of propagate: shard I of N, resumable, marked finished by its ``.done`` file."""
    name = shard_file(shard)
    votes, done, pending = out / name, out / f"{name}.done", out / f"{name}.pending"
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / f"{name}.lock", f"propagate --shard {shard[0]}/{shard[1]}"), disk_errors("propagate"):
        made_for = (
            json.loads(done.read_text())["fingerprint"]
            if done.exists()
            else pending.read_text()
            if pending.exists()
            else fp
        )
        if made_for != fp:  # left by other settings: this shard starts again
            for p in (votes, done, pending):
                p.unlink(missing_ok=True)
        if done.exists():
            log(f"propagate: shard {shard[0]} of {shard[1]} finished earlier, skipped")
            return
        atomic_write_text(pending, fp)
        t = time.time()
        run_propagate(ctx, out, pool, warm, shard=shard, members=members)
        with open(votes, "rb") as f:
            rows = sum(1 for _ in f)
        atomic_write_json(done, {"fingerprint": fp, "shard": list(shard), "rows": rows})
        pending.unlink()
    log(f"propagate: shard {shard[0]} of {shard[1]} done ({rows} rows) in {time.time() - t:.0f}s")


def merge_shards(ctx: RunContext, out: Path, fp: str) -> None:
    """Concatenate finished shards into ``votes.jsonl`` and mark propagate finished; nothing without shards.

    A shard that is missing, unfinished, incomplete or made for other settings stops the run (StageMissing)."""
    if finished(out, fp) or not out.is_dir():
        return
    counts = sorted({int(m.group(2)) for p in out.iterdir() if (m := _SHARD.fullmatch(p.name))})
    if not counts:
        return
    if len(counts) > 1:
        raise StageMissing(f"{out}: shards of {' and of '.join(map(str, counts))} are mixed; remove the stale ones")
    n, total = counts[0], len(ctx.task.unlabeled)
    for i in range(1, n + 1):
        name = shard_file((i, n))
        done = out / f"{name}.done"
        expected = len(shard_rows(total, (i, n)))
        if not done.exists():
            how = "unfinished" if (out / name).exists() else "missing"
        else:
            made = json.loads(done.read_text())
            how = (
                "made for other settings"
                if made["fingerprint"] != fp
                else f"incomplete ({made['rows']} of {expected} rows)"
                if made["rows"] != expected
                else ""
            )
        if how:
            raise StageMissing(
                f"propagate: shard {i} of {n} is {how} ({out / name}); "
                f"run `semievol propagate --shard {i}/{n}` with the same config first"
            )
    merged = out / "votes.jsonl"
    tmp = tmp_name(merged)
    with open(tmp, "wb") as f:
        for i in range(1, n + 1):
            with open(out / shard_file((i, n)), "rb") as part:
                shutil.copyfileobj(part, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, merged)
    for i in range(1, n + 1):  # no shard worker runs now: this process holds the run folder's lock alone
        (out / shard_file((i, n))).unlink()
        (out / f"{shard_file((i, n))}.done").unlink()
        (out / f"{shard_file((i, n))}.lock").unlink(missing_ok=True)
    finish_stage(out, "propagate", fp, input_records(ctx.task))
    log(f"propagate: merged {n} shards ({total} rows)")
