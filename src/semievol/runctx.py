"""What the stages share within one process: the config, the task, the run directory and one engine.

Also the small file helpers every stage uses so artifacts are complete-or-absent: atomic writes (temporary
name, then rename) and the stage manifest, written last, that marks a stage finished for a fingerprint of
everything it depends on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, to_dict
from .data import Task
from .engines import Engine, make_engine


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def manifest_path(stage_dir: Path) -> Path:
    return stage_dir / "manifest.json"


def is_done(stage_dir: Path, fp: str) -> bool:
    m = manifest_path(stage_dir)
    if not m.exists():
        return False
    try:
        return json.loads(m.read_text()).get("fingerprint") == fp
    except (OSError, json.JSONDecodeError):
        return False


def write_manifest(stage_dir: Path, stage: str, fp: str, files: list[str], **extra: Any) -> None:
    atomic_write_json(manifest_path(stage_dir), {"stage": stage, "fingerprint": fp, "files": sorted(files), **extra})


def finish_stage(out: Path, stage: str, fp: str) -> None:
    """Mark ``out`` finished: drop the in-progress marker, then write the manifest (last)."""
    pending = out / ".pending"
    if pending.exists():
        pending.unlink()
    write_manifest(out, stage, fp, [p.name for p in out.iterdir() if p.name != "manifest.json"])


@dataclass
class RunContext:
    cfg: RunConfig
    task: Task
    run_dir: Path
    engine: Engine | None = None
    quiet: bool = False
    fingerprints: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def get_engine(self) -> Engine:
        if self.engine is None:
            m = self.cfg.model
            self.engine = make_engine(m.engine, model=m.model, dtype=m.dtype, batch_size=m.batch_size, quiet=self.quiet)
        return self.engine

    def stage_dir(self, stage: str, round_: int = 1) -> Path:
        return self.run_dir / (stage if round_ == 1 else f"{stage}_r{round_}")

    def adapter(self, name: str, path: Path) -> str:
        """Register an adapter folder with the engine under ``name`` (once) and return the name."""
        self.get_engine().add_adapter(name, str(path))
        return name

    def resolved_config(self) -> dict[str, Any]:
        return to_dict(self.cfg)
