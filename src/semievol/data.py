"""Loading tasks: labeled, unlabeled and test splits from CSV, JSONL, JSON, Parquet or Hugging Face datasets.

Columns are mapped by name (``TaskConfig``); unknown columns are ignored. Every problem with a file is a
``DataError`` naming the file, the row as a person counts it (for CSV and JSONL the line in the file where
the record starts, header included; for JSON, Parquet and datasets the 1-based record number) and the column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .answers import LETTERS, normalize_free
from .config import ConfigError, TaskConfig

csv.field_size_limit(1 << 30)

AnswerKind = Literal["choice", "free"]


class DataError(ValueError):
    """Bad input data. ``str(err)`` is one line: 'FILE, row N, column C: what is wrong'."""

    def __init__(self, path: str, row: int | None, column: str | None, msg: str):
        self.path, self.row, self.column, self.msg = path, row, column, msg
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {msg}")


@dataclass
class Example:
    """One question. ``answer`` is a letter for choice tasks, the normalised value for free-form ones."""

    id: str
    question: str
    options: list[str] | None = None
    answer: str | None = None
    rationale: str | None = None
    subject: str | None = None
    row: int = 0

    @property
    def letters(self) -> list[str]:
        return list(LETTERS[: len(self.options or [])])


@dataclass
class Split:
    name: str
    source: str
    examples: list[Example]

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class Task:
    name: str
    kind: AnswerKind
    labeled: Split
    unlabeled: Split
    test: Split | None = None
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    "arc": {"answer_kind": "choice", "ext": "csv", "index_base": 1},
    "fpb": {"answer_kind": "choice", "ext": "csv"},
    "pubmedqa": {"answer_kind": "choice", "ext": "csv"},
    "mmlu": {"answer_kind": "choice", "ext": "csv", "subject_col": "Subject"},
    "mmlu_pro": {"answer_kind": "choice", "ext": "csv", "subject_col": "Subject"},
    "usmle": {"answer_kind": "choice", "ext": "csv", "subject_col": "meta_info"},
    "convfinqa": {"answer_kind": "free", "ext": "jsonl"},
    "gsm8k": {"answer_kind": "free", "ext": "jsonl"},
}


# ---------------------------------------------------------------- raw readers
# Each yields (row_number, record_dict) so errors can point at the row a person sees.


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(str(path), None, None, f"cannot read file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(str(path), line, None, f"not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    return text


def _csv_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    if not text.strip():
        raise DataError(str(path), None, None, "file is empty")
    lines = io.StringIO(text, newline="")
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except csv.Error as e:
        raise DataError(str(path), 1, None, f"bad CSV header ({e})") from None
    header = [h.strip() for h in header]
    dup = [h for h, c in Counter(header).items() if c > 1 and h]
    if dup:
        raise DataError(str(path), 1, dup[0], "column name appears twice in the header")
    out: list[tuple[int, dict[str, Any]]] = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(str(path), start, None, f"bad CSV ({e})") from None
        if cells and any(c.strip() for c in cells):
            if len(cells) > len(header):
                raise DataError(str(path), start, None, f"{len(cells)} cells but the header has {len(header)} columns")
            out.append((start, dict(zip(header, cells, strict=False))))
        start = reader.line_num + 1
    return out


def _jsonl_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    if not text.strip():
        raise DataError(str(path), None, None, "file is empty")
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(str(path), i, None, f"invalid JSON ({e.msg} at character {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(str(path), i, None, "each line must be a JSON object")
        out.append((i, rec))
    return out


def _json_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    if not text.strip():
        raise DataError(str(path), None, None, "file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(str(path), e.lineno, None, f"invalid JSON ({e.msg})") from None
    if isinstance(data, dict):
        # {"data": [...]} or {"train": [...]}: take the single list value
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(str(path), None, None, "expected a JSON list of records")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(str(path), None, None, "expected a JSON list of records")
    out = []
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise DataError(str(path), i, None, "record is not a JSON object")
        out.append((i, rec))
    return out


def _parquet_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(str(path), None, None, f"not a readable Parquet file ({str(e).splitlines()[0]})") from None
    return [(i, rec) for i, rec in enumerate(table.to_pylist(), start=1)]


def _hf_records(spec: str) -> list[tuple[int, dict[str, Any]]]:
    """hf:NAME[:CONFIG[:SPLIT]] through the datasets library (a Hub id or a local dataset folder/file)."""
    try:
        import datasets
    except ImportError:
        raise DataError(spec, None, None, "the 'datasets' package is needed for hf: sources") from None
    parts = spec[3:].split(":")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    try:
        p = Path(name)
        if p.is_file():
            builder = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(p.suffix)
            ds = datasets.load_dataset(builder, data_files=str(p), split=split)
        elif p.is_dir() and (p / "dataset_info.json").exists():
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(spec, None, None, f"cannot load dataset ({first})") from None
    return [(i, rec) for i, rec in enumerate(ds, start=1)]


def read_records(source: str) -> list[tuple[int, dict[str, Any]]]:
    if source.startswith("hf:"):
        return _hf_records(source)
    path = Path(source)
    if not path.exists():
        raise DataError(source, None, None, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_records(path)
    if suffix == ".jsonl":
        return _jsonl_records(path)
    if suffix == ".json":
        return _json_records(path)
    if suffix in (".parquet", ".pq"):
        return _parquet_records(path)
    raise DataError(source, None, None, f"unsupported file type '{suffix}' (use .csv, .jsonl, .json, .parquet or hf:NAME)")


# ---------------------------------------------------------------- mapping records to examples


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def parse_options(value: Any) -> list[str]:
    """Options as a list of strings from a list, a JSON list in a string, or a Python-style list string."""
    if isinstance(value, str):
        s = value.strip()
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            import ast

            try:
                value = ast.literal_eval(s)
            except (ValueError, SyntaxError):
                raise ValueError("options are not a JSON list") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise ValueError("options must be a list")
    opts = []
    for o in value:
        if _missing(o):
            raise ValueError("an option is empty")
        opts.append(str(o).strip())
    if len(opts) < 2:
        raise ValueError(f"needs at least 2 options, found {len(opts)}")
    if len(opts) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options are supported, found {len(opts)}")
    return opts


def parse_choice_answer(value: Any, options: list[str], index_base: int = 0) -> str:
    """The answer letter from a letter, an index (counted from ``index_base``) or the option text."""
    letters = LETTERS[: len(options)]
    lo, hi = index_base, len(options) - 1 + index_base
    if isinstance(value, bool):
        raise ValueError(f"answer {value!r} is not a letter, index or option")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if float(value).is_integer() and lo <= int(value) <= hi:
            return letters[int(value) - index_base]
        raise ValueError(f"answer index {value!r} is outside {lo}..{hi}")
    s = str(value).strip()
    if len(s) == 1 and s.upper() in LETTERS:
        if s.upper() in letters:
            return s.upper()
        raise ValueError(f"answer '{s}' is outside the options {letters[0]}-{letters[-1]}")
    if s.isdigit():
        i = int(s)
        if lo <= i <= hi:
            return letters[i - index_base]
        raise ValueError(f"answer index {s} is outside {lo}..{hi}")
    lowered = [o.lower() for o in options]
    if s.lower() in lowered:
        return letters[lowered.index(s.lower())]
    short = s if len(s) <= 40 else s[:37] + "..."
    raise ValueError(f"answer '{short}' is not a letter, an index or one of the options")


def to_examples(
    records: list[tuple[int, dict[str, Any]]],
    source: str,
    split: str,
    kind: AnswerKind,
    cfg: TaskConfig,
    require_answer: bool,
) -> list[Example]:
    if not records:
        raise DataError(source, None, None, "no data rows (header only or empty)")
    first_row, first = records[0]
    columns = set().union(*(r.keys() for _, r in records[:50]))
    if cfg.question_col not in columns:
        raise DataError(source, first_row, cfg.question_col, f"missing column (found: {', '.join(sorted(map(str, columns)))})")
    if kind == "choice":
        if cfg.option_cols:
            for c in cfg.option_cols:
                if c not in columns:
                    raise DataError(source, first_row, c, "missing option column")
        elif cfg.options_col not in columns:
            raise DataError(source, first_row, cfg.options_col, "missing column (set task.options_col or task.option_cols)")
    if require_answer and cfg.answer_col not in columns:
        raise DataError(source, first_row, cfg.answer_col, "missing column")
    out: list[Example] = []
    seen_ids: dict[str, int] = {}
    for row, rec in records:
        q = rec.get(cfg.question_col)
        if _missing(q):
            raise DataError(source, row, cfg.question_col, "empty question")
        options = None
        if kind == "choice":
            try:
                if cfg.option_cols:
                    raw = [rec.get(c) for c in cfg.option_cols]
                    raw = [o for o in raw if not _missing(o)]
                    options = parse_options(raw)
                else:
                    options = parse_options(rec.get(cfg.options_col))
            except ValueError as e:
                col = cfg.options_col if not cfg.option_cols else ",".join(cfg.option_cols)
                raise DataError(source, row, col, str(e)) from None
        answer = None
        a = rec.get(cfg.answer_col)
        if _missing(a):
            if require_answer:
                raise DataError(source, row, cfg.answer_col, "empty answer")
        else:
            if kind == "choice":
                try:
                    answer = parse_choice_answer(a, options or [], max(cfg.index_base, 0))
                except ValueError as e:
                    raise DataError(source, row, cfg.answer_col, str(e)) from None
            else:
                if isinstance(a, list | dict):
                    raise DataError(source, row, cfg.answer_col, "a free-form answer must be a number or text")
                answer = normalize_free(str(a))
                if not answer:
                    raise DataError(source, row, cfg.answer_col, "answer is empty after normalisation")
        rid = rec.get(cfg.id_col)
        rid = f"{split}-{row}" if _missing(rid) else str(rid)
        if rid in seen_ids:
            raise DataError(source, row, cfg.id_col, f"duplicate id '{rid}' (also at row {seen_ids[rid]})")
        seen_ids[rid] = row
        rat = rec.get(cfg.rationale_col)
        subj = rec.get(cfg.subject_col)
        out.append(
            Example(
                id=rid,
                question=str(q).strip(),
                options=options,
                answer=answer,
                rationale=None if _missing(rat) else str(rat).strip(),
                subject=None if _missing(subj) else str(subj),
                row=row,
            )
        )
    return out


def _guess_kind(records: list[tuple[int, dict[str, Any]]], cfg: TaskConfig) -> AnswerKind:
    if cfg.option_cols:
        return "choice"
    cols = set().union(*(r.keys() for _, r in records[:50])) if records else set()
    return "choice" if cfg.options_col in cols else "free"


def _find(data_dir: Path, task: str, split: str, ext: str) -> str | None:
    for e in (ext, "csv", "jsonl", "json", "parquet"):
        p = data_dir / task / f"{split}.{e}"
        if p.exists():
            return str(p)
    return None


def resolve_sources(cfg: TaskConfig) -> tuple[str, AnswerKind | None, TaskConfig, dict[str, str | None]]:
    """Name, answer kind (None = guess from data), effective TaskConfig and split sources."""
    kind: AnswerKind | None = None if cfg.answer_kind == "auto" else cfg.answer_kind
    name = cfg.task or "custom"
    sources: dict[str, str | None] = {"labeled": cfg.labeled, "unlabeled": cfg.unlabeled, "test": cfg.test}
    if cfg.task and cfg.task != "demo":
        if cfg.task not in PRESETS:
            import difflib

            close = difflib.get_close_matches(cfg.task, list(PRESETS) + ["demo"], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"task.task: unknown preset '{cfg.task}'{hint}")
        preset = PRESETS[cfg.task]
        kind = kind or preset["answer_kind"]
        if preset.get("subject_col") and cfg.subject_col == "subject":
            cfg = replace(cfg, subject_col=preset["subject_col"])
        if cfg.index_base == -1:
            cfg = replace(cfg, index_base=preset.get("index_base", 0))
        if cfg.data_dir:
            d = Path(cfg.data_dir)
            if not (d / cfg.task).is_dir():
                raise ConfigError(f"task.data_dir: {d / cfg.task} is not a folder")
            for s in sources:
                if sources[s] is None:
                    sources[s] = _find(d, cfg.task, s, preset["ext"])
    for s in ("labeled", "unlabeled"):
        if not sources[s]:
            raise ConfigError(f"task.{s}: no {s} split given (set task.{s}, or task.task with task.data_dir)")
    return name, kind, cfg, sources


def _subsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    if n <= 0 or n >= len(examples):
        return examples
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    return [examples[i] for i in sorted(idx[:n])]


def load_task(cfg: TaskConfig, seed: int = 0, need_test: bool = False) -> Task:
    """Load and validate the three splits of a task."""
    if cfg.task == "demo":
        from .demo_task import make_demo_task

        return make_demo_task(seed=0)
    name, kind, cfg, sources = resolve_sources(cfg)
    recs = {s: read_records(src) for s, src in sources.items() if src}
    if kind is None:
        kind = _guess_kind(recs["labeled"], cfg)
    splits: dict[str, Split] = {}
    for s, r in recs.items():
        src = sources[s] or s
        ex = to_examples(r, src, s, kind, cfg, require_answer=(s != "unlabeled"))
        limit = {"labeled": cfg.limit_labeled, "unlabeled": cfg.limit_unlabeled, "test": cfg.limit_test}[s]
        splits[s] = Split(s, src, _subsample(ex, limit, seed))
    if need_test and "test" not in splits:
        raise ConfigError("task.test: evaluation needs a test split, and none was given")
    task = Task(name, kind, splits["labeled"], splits["unlabeled"], splits.get("test"))
    task.warnings.extend(_overlap_warnings(task))
    for w in task.warnings:
        warnings.warn(w, stacklevel=2)
    return task


def _overlap_warnings(task: Task) -> list[str]:
    out = []
    lab = {e.question for e in task.labeled.examples}
    shared = sum(1 for e in task.unlabeled.examples if e.question in lab)
    if shared:
        out.append(f"{shared} unlabeled questions also appear in the labeled split ({task.labeled.source})")
    if task.test is not None:
        shared = sum(1 for e in task.test.examples if e.question in lab)
        if shared:
            out.append(f"{shared} test questions also appear in the labeled split: test accuracy may be optimistic")
    return out


def answer_distribution(split: Split) -> Counter:
    return Counter(e.answer for e in split.examples if e.answer is not None)
