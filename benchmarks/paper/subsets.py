"""The table's data: each task's splits subsampled once with a fixed seed, the same rows for every run seed,
and the 80/20 split of the labeled subset that tuning uses."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Any

from .settings import SUBSET_SEED


def read_rows(path: Path) -> tuple[list[str] | None, list[Any]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    return None, [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, header: list[str] | None, rows: list[Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    if header is not None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows)
    else:
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def subset(task: str, data_dir: Path, sizes: dict[str, int], out: Path) -> Path:
    """Seeded subsample of each split into OUT/data/<task>/ (same rows for every run seed)."""
    dest = out / "data" / task
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        src = next(p for p in (data_dir / task / f"{split}.csv", data_dir / task / f"{split}.jsonl") if p.exists())
        target = dest / src.name
        header, rows = read_rows(src)
        if target.exists():
            have, want = len(read_rows(target)[1]), min(n or len(rows), len(rows))
            if have != want:  # another profile's subset: its runs would silently use the wrong rows
                raise SystemExit(
                    f"paper_table: {target} holds {have} rows, profile wants {want}; "
                    f"give this profile its own --out folder"
                )
            continue
        if n and n < len(rows):
            rows = [rows[i] for i in subsample_positions(task, split, len(rows), n)]
        write_rows(target, header, rows)
    return out / "data"


def subsample_positions(task: str, split: str, total: int, n: int) -> list[int]:
    """Which rows of a split's file (0-based, in the subset's order) a profile with ``n`` of its ``total``
    rows takes: the same for every run seed and every profile asking for ``n``."""
    return random.Random(f"{SUBSET_SEED}-{task}-{split}").sample(range(total), n)


def tune_split(task: str, data: Path, out: Path) -> Path:
    """80/20 split of the labeled subset: the validation slice for choosing hyper-parameters."""
    dest = out / "tune" / task / "data" / task
    dest.mkdir(parents=True, exist_ok=True)
    src = next(p for p in (data / task).iterdir() if p.stem == "labeled")
    header, rows = read_rows(src)
    rows = list(rows)
    random.Random(f"{SUBSET_SEED}-tune-{task}").shuffle(rows)
    cut = max(1, len(rows) // 5)
    write_rows(dest / src.name, header, rows[cut:])
    write_rows(dest / src.name.replace("labeled", "test"), header, rows[:cut])
    write_rows(dest / src.name.replace("labeled", "unlabeled"), header, rows[:cut])
    return dest.parent
