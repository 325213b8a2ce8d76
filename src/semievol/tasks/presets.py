"""Presets of the known benchmark tasks, and finding a task's split files.

A preset (``task.task``) sets the answer kind and the column conventions of its benchmark; with
``task.data_dir`` the splits are found as ``DATA_DIR/TASK/SPLIT.EXT``. Splits given explicitly win over
those found, and explicit column settings over the preset's.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import ConfigError, TaskConfig
from .types import AnswerKind

PRESETS: dict[str, dict[str, Any]] = {
    "arc": {"answer_kind": "choice", "ext": "csv", "index_base": 1},
    "fpb": {"answer_kind": "choice", "ext": "csv"},
    "pubmedqa": {"answer_kind": "choice", "ext": "csv"},
    "sst2": {"answer_kind": "choice", "ext": "csv"},
    "agnews": {"answer_kind": "choice", "ext": "csv"},
    "emotion": {"answer_kind": "choice", "ext": "csv"},
    "mmlu": {"answer_kind": "choice", "ext": "csv", "subject_col": "Subject"},
    "mmlu_pro": {"answer_kind": "choice", "ext": "csv", "subject_col": "Subject"},
    "usmle": {"answer_kind": "choice", "ext": "csv", "subject_col": "meta_info"},
    "convfinqa": {"answer_kind": "free", "ext": "jsonl", "numeric": True},
    "gsm8k": {"answer_kind": "free", "ext": "jsonl", "numeric": True},
}


def _find(data_dir: Path, task: str, split: str, ext: str) -> str | None:
    for e in (ext, "csv", "jsonl", "json", "parquet"):
        p = data_dir / task / f"{split}.{e}"
        if p.exists():
            return str(p)
    return None


def resolve_sources(
    cfg: TaskConfig, required: tuple[str, ...] = ("labeled", "unlabeled")
) -> tuple[str, AnswerKind | None, TaskConfig, dict[str, str | None]]:
    """Name, answer kind (None = guess from data), effective TaskConfig and split sources; the ``required``
    splits must be found."""
    kind: AnswerKind | None = None if cfg.answer_kind == "auto" else cfg.answer_kind
    name = cfg.task or "custom"
    # an empty string (``--test ''``) means not given, as None does
    sources: dict[str, str | None] = {
        "labeled": cfg.labeled or None,
        "unlabeled": cfg.unlabeled or None,
        "test": cfg.test or None,
    }
    task = cfg.task
    if task and task != "demo":
        if task not in PRESETS:
            import difflib

            close = difflib.get_close_matches(task, list(PRESETS) + ["demo"], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"task.task: unknown preset '{task}'{hint}")
        preset = PRESETS[task]
        kind = kind or preset["answer_kind"]
        if preset.get("subject_col") and cfg.subject_col == "subject":
            cfg = replace(cfg, subject_col=preset["subject_col"])
        if cfg.index_base == -1:
            cfg = replace(cfg, index_base=preset.get("index_base", 0))
        if cfg.data_dir:
            d = Path(cfg.data_dir)
            for folder in (d, d / task):
                if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
                    raise ConfigError(f"task.data_dir: cannot read the folder {folder} (permission denied)")
            if not (d / task).is_dir():
                raise ConfigError(f"task.data_dir: {d / task} is not a folder")
            for s in sources:
                if sources[s] is None:
                    sources[s] = _find(d, task, s, preset["ext"])
            for s in required:
                if not sources[s]:
                    raise ConfigError(f"task.data_dir: no {s}.{{csv,jsonl,json,parquet}} in {d / task}")
    for s in required:
        if not sources[s]:
            raise ConfigError(f"task.{s}: no {s} split given (set task.{s}, or task.task with task.data_dir)")
    return name, kind, cfg, sources
