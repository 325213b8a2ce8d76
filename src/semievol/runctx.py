"""What the stages share within one process: the config, the task, the run directory and one engine.

Also the small file helpers every stage uses so artifacts are complete-or-absent: atomic writes (temporary
name, fsync, then rename), append-only JSONL files whose torn last line is cut off on reading, the cache of
model calls built on them, and the stage manifest, written last, that marks a stage finished for a
fingerprint of everything it depends on. Temporary names start with a dot and never enter a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig, to_dict
from .engines import Engine, Sample, engine_for
from .prompts import Prompt
from .tasks import Task


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


def is_done(stage_dir: Path, fp: str) -> bool:
    """True if the manifest carries ``fp`` and every file it lists is still there, as it was written."""
    man = read_manifest(stage_dir)
    return man is not None and man.get("fingerprint") == fp and manifest_problem(stage_dir, man) is None


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
    """Why the finished stage's files are not what its manifest recorded (one clause naming the file), or None.

    Manifests written before digests were recorded are checked for the files' presence only."""
    man = man if man is not None else read_manifest(stage_dir)
    if man is None:
        return "no manifest"
    for name in man.get("files", []):
        if not (stage_dir / name).exists():
            return f"{name} is missing"
    for name, want in (man.get("digests") or {}).items():
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
    atomic_write_json(manifest_path(stage_dir), {"stage": stage, "fingerprint": fp, "files": sorted(files),
                                                 "digests": digests, **extra})


def finish_stage(out: Path, stage: str, fp: str, inputs: dict[str, Any] | None = None) -> None:
    """Mark ``out`` finished: drop the in-progress marker, then write the manifest (last). ``inputs``: the
    data files the run read (``input_records``), recorded with the stage."""
    pending = out / ".pending"
    if pending.exists():
        pending.unlink()
    extra = {} if inputs is None else {"inputs": inputs}
    write_manifest(out, stage, fp, [p.name for p in out.iterdir() if p.name != "manifest.json" and not p.name.startswith(".")],
                   **extra)


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


def adapter_digest(folder: Path, fallback: str) -> str:
    """sha256 of a PEFT folder's weights file (``fallback`` where there is none, as with the fake engine)."""
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        weights = folder / "adapter_model.bin"
    if not weights.is_file():
        return fallback
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


CALL_CHUNK = 64  # prompts per cached engine call: a kill loses at most one chunk of work
# model settings that do not change results (where and how fast a server is reached is not which weights answer)
# how the openai engine reaches its server: moving the server changes no result
OPENAI_CONNECTION = {"api_base", "api_key_env", "concurrency", "timeout", "max_retries", "backoff"}
# every setting only the openai engine reads (the rest identify its results, but not another engine's)
OPENAI_ONLY = OPENAI_CONNECTION | {"served_model", "api", "top_logprobs"}
RUNTIME_ONLY = {"batch_size", "batch_tokens", "threads"} | OPENAI_CONNECTION
# an engine that runs another one elsewhere (engine 'ray': hf engines in Ray actors) gets its results, so a
# stage finished with one is finished for the other: sft on one machine, then propagate on the cluster
SAME_RESULTS = {"ray": "hf"}


def model_settings_key(model: dict[str, Any]) -> dict[str, Any]:
    """The model settings that decide what a model call returns (the fingerprint and cache key part)."""
    skip = RUNTIME_ONLY | (set() if model.get("engine") == "openai" else OPENAI_ONLY)
    key = {k: v for k, v in model.items() if k not in skip}
    if key.get("engine") in SAME_RESULTS:
        key["engine"] = SAME_RESULTS[key["engine"]]
    return key


def _entry_check(key: str, value: Any) -> str:
    """A digest binding a cached value to its key: a line whose value was damaged or edited is not trusted."""
    return fingerprint(key, value)


def _entry_ok(row: dict[str, Any]) -> bool:
    """A cache line to trust: key and value present, and its check matching (lines from before checks count)."""
    if not isinstance(row.get("key"), str) or "value" not in row:
        return False
    return "check" not in row or row["check"] == _entry_check(row["key"], row["value"])


class CallCache:
    """Results of model calls, keyed by a hash of (model, adapter, call, prompt, parameters).

    An append-only JSONL file (one ``{"key", "value"}`` line per call, flushed and fsynced) read once on
    start, so a stage killed part way, or rerun for a changed setting downstream of the model, reuses what
    was computed. ``model`` identifies the weights and the model settings; ``adapters`` maps an engine's
    adapter name to a digest of its weights file, so a retrained adapter never hits an old entry (a name
    missing there stands for itself).
    """

    def __init__(self, path: Path, model: str, adapters: dict[str, str] | None = None) -> None:
        self.path = path
        self.model = model
        self.adapters = adapters if adapters is not None else {}
        self.entries = {r["key"]: r["value"] for r in read_jsonl_prefix(path) if _entry_ok(r)}
        self.hits = 0

    def key(self, adapter: str | None, call: str, prompt_key: str, params: Any) -> str:
        who = None if adapter is None else self.adapters.get(adapter, adapter)
        blob = json.dumps([self.model, who, call, prompt_key, params], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        return self.entries.get(key)

    def put(self, items: dict[str, Any]) -> None:
        new = {k: v for k, v in items.items() if k not in self.entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.path, [{"key": k, "value": v, "check": _entry_check(k, v)} for k, v in new.items()])
        self.entries.update(new)

    def chunked(self, keys: list[str], compute: Any, chunk: int) -> list[Any]:
        """Values for ``keys`` in order; ``compute(indices)`` fills a chunk that is not wholly cached.

        Chunks are cut at fixed positions, and a chunk is taken from the cache only when all of it is
        there, so an engine sees the same batches as in an uninterrupted run and results stay identical.
        """
        out: list[Any] = [None] * len(keys)
        for s in range(0, len(keys), max(1, chunk)):
            idx = list(range(s, min(s + chunk, len(keys))))
            cached = [self.entries.get(keys[i]) for i in idx]
            if all(c is not None for c in cached):
                self.hits += len(idx)
                vals = cached
            else:
                vals = compute(idx)
                self.put({keys[i]: v for i, v in zip(idx, vals, strict=True)})
            for i, v in zip(idx, vals, strict=True):
                out[i] = v
        return out


def score_options(engine: Engine, cache: CallCache | None, prompts: list[Prompt], n_options: list[int],
                  adapter: str | None, chunk: int = CALL_CHUNK) -> list[np.ndarray]:
    """``engine.score_options`` through ``cache`` (chunk by chunk); a plain call when ``cache`` is None."""
    if cache is None:
        return engine.score_options(prompts, n_options, adapter)
    keys = [cache.key(adapter, "score_options", p.key(), n) for p, n in zip(prompts, n_options, strict=True)]

    def compute(idx: list[int]) -> list[list[float]]:
        dists = engine.score_options([prompts[i] for i in idx], [n_options[i] for i in idx], adapter)
        return [[float(x) for x in d] for d in dists]

    return [np.asarray(v, dtype=np.float64) for v in cache.chunked(keys, compute, chunk)]


def generate_one(engine: Engine, cache: CallCache | None, prompts: list[Prompt], temperature: float, seed: int,
                 max_new_tokens: int, adapter: str | None, chunk: int = CALL_CHUNK) -> list[Sample]:
    """One response per prompt (``engine.generate`` with n=1) through ``cache``; a plain call when None."""
    if cache is None:
        return [s[0] for s in engine.generate(prompts, 1, temperature, seed, max_new_tokens, adapter)]
    params = {"temperature": temperature, "seed": seed, "max_new_tokens": max_new_tokens}
    keys = [cache.key(adapter, "generate", p.key(), params) for p in prompts]

    def compute(idx: list[int]) -> list[dict[str, Any]]:
        out = engine.generate([prompts[i] for i in idx], 1, temperature, seed, max_new_tokens, adapter)
        return [{"text": s[0].text, "logprobs": [float(x) for x in s[0].logprobs]} for s in out]

    return [Sample(v["text"], v["logprobs"]) for v in cache.chunked(keys, compute, chunk)]


@dataclass
class RunContext:
    cfg: RunConfig
    task: Task
    run_dir: Path
    engine: Engine | None = None
    quiet: bool = False
    fingerprints: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    adapter_digests: dict[str, str] = field(default_factory=dict)
    _cache: CallCache | None = field(default=None, repr=False)

    def get_engine(self) -> Engine:
        if self.engine is None:
            self.engine = engine_for(self.cfg.model, quiet=self.quiet)
        return self.engine

    def stage_dir(self, stage: str, round_: int = 1) -> Path:
        return self.run_dir / (stage if round_ == 1 else f"{stage}_r{round_}")

    def adapter(self, name: str, path: Path) -> str:
        """Register an adapter folder with the engine under ``name`` (once) and return the name."""
        self.get_engine().add_adapter(name, str(path))
        if name not in self.adapter_digests:
            self.adapter_digests[name] = adapter_digest(Path(path), name)
        return name

    def call_cache(self) -> CallCache:
        """The run's cache of model calls, ``RUN_DIR/cache/model_calls.jsonl``."""
        if self._cache is None:
            settings = model_settings_key(to_dict(self.cfg)["model"])
            model = fingerprint(self.get_engine().name, self.get_engine().model_id(), settings)
            self._cache = CallCache(self.run_dir / "cache" / "model_calls.jsonl", model, self.adapter_digests)
        return self._cache

    def resolved_config(self) -> dict[str, Any]:
        return to_dict(self.cfg)
