"""The run folder: its layout, the stage manifests and what "finished" means.

Layout (round 1; later rounds add ``propagate_r2``, ``select_r2``, ``evolve_r2``, ...)::

    RUN_DIR/config.yaml  versions.json  templates.json  data_warnings.json  timings.json
    RUN_DIR/sft/          warm adapter (PEFT folder), train_log.jsonl, train_summary.json
    RUN_DIR/propagate/    votes.jsonl, configs.json, embedding caches
    RUN_DIR/select/       pseudo_labels.jsonl, selection.json
    RUN_DIR/evolve/       evolved adapter, train_data.jsonl, train_log.jsonl, train_summary.json
    RUN_DIR/sft_matched/  the compute-matched control adapter
    RUN_DIR/evaluate/     metrics.json, predictions_<model>.jsonl
    RUN_DIR/cache/        model_calls.jsonl (select's and evaluate's model calls)

Each stage folder is finished when its ``manifest.json``, written last, carries the fingerprint of the
stage's settings and inputs and lists every file with its size and sha256, and the files are still as
written. A stage in progress holds ``.pending`` (its fingerprint); a killed stage keeps only the files
that resume (``votes.jsonl``, embedding caches) and redoes the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .jsonio import atomic_write_json, read_jsonl
from .rundir_guard import not_owned, owned_stage_dir

if TYPE_CHECKING:
    from .tasks import Task

HEADER_FILES = ("config.yaml", "versions.json", "templates.json", "data_warnings.json")
CACHE_FILE = Path("cache") / "model_calls.jsonl"
PENDING = ".pending"  # marks a stage folder in progress; holds the fingerprint it is made for


class StageMissing(UserError):
    """A stage was asked for before the stage it needs has finished."""


def stage_dir(run_dir: Path, stage: str, round_: int = 1) -> Path:
    """The folder of ``stage`` in round ``round_``: ``select``, ``select_r2``, ..."""
    return run_dir / (stage if round_ == 1 else f"{stage}_r{round_}")


def stage_dirs(run_dir: Path, stage: str) -> list[Path]:
    """The folders of ``stage`` that exist, in round order."""
    found = []
    for p in run_dir.glob(f"{stage}*"):
        m = re.fullmatch(rf"{stage}(?:_r(\d+))?", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1) or 1), p))
    return [p for _, p in sorted(found)]


def last_finished(run_dir: Path, stage: str) -> Path | None:
    """The last round's folder of ``stage`` that is finished, or None."""
    done = [p for p in stage_dirs(run_dir, stage) if finished(p)]
    return done[-1] if done else None


def need_run_dir(run_dir: Path) -> None:
    """Stop unless ``run_dir`` is a run folder (it holds the config.yaml a run writes first)."""
    if not run_dir.is_dir():
        raise StageMissing(f"{run_dir}: no such run directory")
    if not (run_dir / "config.yaml").exists():
        raise StageMissing(
            f"{run_dir}: not a run directory (no config.yaml); start one with `semievol run --run-dir {run_dir}`"
        )


def need(out: Path, fp: str, what: str) -> None:
    """Stop unless the ``what`` stage in ``out`` is finished for ``fp``, saying which command makes it."""
    man = read_manifest(out)
    if man is not None and man.get("fingerprint") == fp and (problem := manifest_problem(out, man)):
        raise StageMissing(
            f"{out}: {problem}: damaged or edited since the {what} stage finished; run "
            f"`semievol {what}` (or `semievol run`) to redo it"
        )
    if not finished(out, fp):
        raise StageMissing(
            f"{out}: the {what} stage has not finished for this config; run `semievol {what}` (or `semievol run`) first"
        )


def load_pseudo_labels(run_dir: Path) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """(select folder, pseudo-label rows, selection.json) of the last finished select stage."""
    s = last_finished(run_dir, "select")
    if s is None:
        raise StageMissing(
            f"{run_dir}: the select stage has not finished; run `semievol select` (or `semievol run`) first"
        )
    selection = s / "selection.json"
    return s, read_jsonl(s / "pseudo_labels.jsonl"), json.loads(selection.read_text()) if selection.exists() else {}


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint_items(items: Iterable[Any]) -> str:
    """``fingerprint(list(items))`` without holding the list: the same JSON text, hashed as it is made."""
    h = hashlib.sha256(b"[[")
    for i, item in enumerate(items):
        if i:
            h.update(b", ")
        h.update(json.dumps(item, sort_keys=True, default=str).encode())
    h.update(b"]]")
    return h.hexdigest()[:16]


def manifest_path(stage_dir: Path) -> Path:
    return stage_dir / "manifest.json"


def finished(stage_dir: Path, fp: str | None = None) -> bool:
    """True if the stage's manifest is there (carrying ``fp``, where given) and every file it lists is still
    there, as it was written."""
    man = read_manifest(stage_dir)
    ok = man is not None and (fp is None or man.get("fingerprint") == fp)
    return ok and manifest_problem(stage_dir, man) is None


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """The stage's manifest, or None where there is none (or it cannot be read)."""
    m = manifest_path(stage_dir)
    if not m.exists():
        return None
    try:
        man = json.loads(m.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return man if isinstance(man, dict) else None


_DIGESTS: dict[tuple[str, int, int, int], dict[str, Any]] = {}


def file_record(path: Path) -> dict[str, Any]:
    """Size, sha256 and (for JSONL) line count of a file; remembered per (path, inode, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h, lines = hashlib.sha256(), 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                lines += block.count(b"\n")
        rec: dict[str, Any] = {"bytes": st.st_size, "sha256": h.hexdigest()}
        if path.suffix == ".jsonl":
            rec["rows"] = lines
        _DIGESTS[key] = rec
    return _DIGESTS[key]


def manifest_problem(stage_dir: Path, man: dict[str, Any] | None = None) -> str | None:
    """Why the finished stage's files are not what its manifest recorded (one clause naming the file), or None."""
    man = man if man is not None else read_manifest(stage_dir)
    if man is None:
        return "no manifest"
    if not isinstance(man.get("digests"), dict):
        return "its manifest records no file digests"
    for name in man.get("files", []):
        if not (stage_dir / name).exists():
            return f"{name} is missing"
    for name, want in man["digests"].items():
        path = stage_dir / name
        if not path.is_file():
            return f"{name} is missing"
        have = file_record(path)
        if "rows" in want and have.get("rows") != want["rows"]:
            return f"{name} has {have.get('rows')} rows where the stage wrote {want['rows']}"
        if have["sha256"] != want.get("sha256"):
            return f"{name} is not the file the stage wrote (its digest differs)"
    return None


def write_manifest(stage_dir: Path, stage: str, fp: str, files: list[str], **extra: Any) -> None:
    digests = {f: file_record(stage_dir / f) for f in sorted(files) if (stage_dir / f).is_file()}
    atomic_write_json(
        manifest_path(stage_dir),
        {"stage": stage, "fingerprint": fp, "files": sorted(files), "digests": digests, **extra},
    )


def finish_stage(out: Path, stage: str, fp: str, inputs: dict[str, Any] | None = None) -> None:
    """Mark ``out`` finished: drop the in-progress marker, then write the manifest (last). ``inputs``: the
    data files the run read (``input_records``), recorded with the stage."""
    (out / PENDING).unlink(missing_ok=True)
    extra = {} if inputs is None else {"inputs": inputs}
    write_manifest(
        out,
        stage,
        fp,
        [p.name for p in out.iterdir() if p.name != "manifest.json" and not p.name.startswith(".")],
        **extra,
    )


def input_records(task: Task) -> dict[str, Any]:
    """Source, size and sha256 of each split's data file (an ``hf:`` source by its name only).

    The stages' fingerprints already hash the rows they read, so an edited file re-runs them; this records
    which bytes a finished stage was made from."""
    out: dict[str, Any] = {}
    for split in (task.labeled, task.unlabeled, task.test):
        if split is None or not split.source:
            continue
        path = Path(split.source)
        rec: dict[str, Any] = {"source": split.source}
        if not split.source.startswith("hf:") and path.is_file():
            rec |= {k: v for k, v in file_record(path).items() if k != "rows"}
        out[split.name] = rec
    return out


# Files a stage appends to or reuses when it is restarted for the same fingerprint; everything else in an
# unfinished stage folder is removed and redone.
_RESUMABLE = ("votes.jsonl", "members")


def _keeps_on_restart(name: str) -> bool:
    return name == PENDING or name in _RESUMABLE or (name.startswith("emb_") and name.endswith(".npy"))


def clear_unfinished(out: Path, fp: str) -> None:
    """Prepare ``out`` for a stage that has not finished for ``fp``.

    A folder finished or started for other settings is removed; one started for the same settings (a
    killed run) keeps only what resumes (``votes.jsonl``, the embedding caches, and sft's ``members`` folder
    of warm members trained before the kill, each renamed into place whole), so the rest is redone.
    """
    if not out.exists():
        return
    if not owned_stage_dir(out):
        raise not_owned(out)
    pending = out / PENDING
    if (out / "manifest.json").exists() or not pending.exists() or pending.read_text() != fp:
        shutil.rmtree(out)
        return
    for p in out.iterdir():
        if _keeps_on_restart(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
