"""Files that are complete or absent: atomic writes and append-only JSONL.

A file is written under a hidden temporary name, fsynced and renamed, so a reader sees the old file or the
whole new one. An append-only JSONL file gets whole lines in one write; its reader cuts off a torn tail left
by a kill. Temporary names start with a dot and never enter a manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def tmp_name(path: Path) -> Path:
    """The hidden temporary sibling a file is written under before it is renamed to ``path``."""
    return path.with_name(f".{path.name}.tmp")


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per process: shard workers write the same run header and configs at the same time
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object a line, written as the rows come (a generator is never held whole), then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        for r in rows:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return list(iter_jsonl(path))


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows in one write, flushed and fsynced: a kill leaves at most a torn last line."""
    if not rows:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl_prefix(path: Path) -> Iterator[dict[str, Any]]:
    """The whole lines of an append-only JSONL file, one at a time; once they are all read, a torn or
    unreadable tail is cut off: a line cut short by a kill, the NUL bytes or other garbage a power loss
    leaves, bytes that are not UTF-8, JSON nested too deep to read."""
    if not path.exists():
        return
    good = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                break
            if not isinstance(row, dict):
                break
            yield row
            good += len(line)
    if good != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())


def read_jsonl_prefix(path: Path) -> list[dict[str, Any]]:
    """``iter_jsonl_prefix`` as a list."""
    return list(iter_jsonl_prefix(path))
