"""Loading tasks: labeled, unlabeled and test splits from CSV, JSONL, JSON, Parquet or Hugging Face datasets.

Columns are mapped by name (``TaskConfig``); unknown columns are ignored. Every problem with a file is a
``DataError`` naming the file, the row as a person counts it (for CSV and JSONL the line in the file where
the record starts, header included; for JSON, Parquet and datasets the 1-based record number) and the column.

The unlabeled split can be far larger than memory allows: CSV, JSONL and Parquet files are read as a
stream (line by line, or Parquet record batches), validated in one pass when the task is loaded, and read
again chunk by chunk by the stages that need its rows (``StreamedSplit``). JSON files and ``hf:`` datasets
are read whole.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import stat
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from .answers import LETTERS, is_number, normalize_free
from .config import ConfigError, TaskConfig

AnswerKind = Literal["choice", "free"]


def _one_line(text: str) -> str:
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class DataError(ValueError):
    """Bad input data. ``str(err)`` is one line: 'FILE, row N, column C: what is wrong'."""

    def __init__(self, path: str, row: int | None, column: str | None, msg: str):
        self.path, self.row, self.column, self.msg = path, row, column, msg
        where = _one_line(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{_one_line(column)}'"
        super().__init__(f"{where}: {_one_line(msg)}")


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

    def iter_examples(self) -> Iterator[Example]:
        return iter(self.examples)

    def chunks(self, size: int) -> Iterator[list[Example]]:
        return batched(self.iter_examples(), size)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass
class StreamedSplit:
    """A split read again from its file each time it is iterated, so its rows never sit in memory together.

    ``keep`` holds the positions chosen by a ``limit_*`` subsample (None: every row). The file was
    validated when the task was loaded; ``examples`` materialises the rows, for small splits only.
    """

    name: str
    source: str
    kind: AnswerKind
    cfg: TaskConfig
    numeric: bool
    rows: int
    keep: frozenset[int] | None = None

    def __len__(self) -> int:
        return self.rows if self.keep is None else len(self.keep)

    def iter_examples(self) -> Iterator[Example]:
        exs = iter_examples(iter_records(self.source), self.source, self.name, self.kind, self.cfg,
                            require_answer=False, numeric=self.numeric, check_ids=False)
        if self.keep is None:
            return exs
        return (e for i, e in enumerate(exs) if i in self.keep)

    def chunks(self, size: int) -> Iterator[list[Example]]:
        return batched(self.iter_examples(), size)

    @property
    def examples(self) -> list[Example]:
        return list(self.iter_examples())


@dataclass
class Task:
    name: str
    kind: AnswerKind
    labeled: Split
    unlabeled: Split | StreamedSplit
    test: Split | None = None
    warnings: list[str] = field(default_factory=list)
    numeric: bool = False
    """The free-form answers are numbers (a preset such as gsm8k): extraction looks for a number."""


# ---------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    "arc": {"answer_kind": "choice", "ext": "csv", "index_base": 1},
    "fpb": {"answer_kind": "choice", "ext": "csv"},
    "pubmedqa": {"answer_kind": "choice", "ext": "csv"},
    "mmlu": {"answer_kind": "choice", "ext": "csv", "subject_col": "Subject"},
    "mmlu_pro": {"answer_kind": "choice", "ext": "csv", "subject_col": "Subject"},
    "usmle": {"answer_kind": "choice", "ext": "csv", "subject_col": "meta_info"},
    "convfinqa": {"answer_kind": "free", "ext": "jsonl", "numeric": True},
    "gsm8k": {"answer_kind": "free", "ext": "jsonl", "numeric": True},
}


# ---------------------------------------------------------------- raw readers
# Each yields (row_number, record_dict) so errors can point at the row a person sees.


TOO_DEEP = "JSON nested too deeply to read"


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file, split on '\n' only, read one line at a time.

    str.splitlines() would also split on U+2028, U+0085, ... which JSON strings and CSV fields may hold raw.
    A leading byte-order mark is dropped. Errors name the line and the byte offset in the file.
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(str(path), None, None, f"cannot read file ({e.strerror})") from None
    with f:
        offset = 0
        for i, raw in enumerate(f, start=1):
            body = raw[3:] if i == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as e:
                at = offset + len(raw) - len(body) + e.start
                raise DataError(str(path), i, None, f"not UTF-8 (byte 0x{body[e.start]:02x} at offset {at})") from None
            offset += len(raw)
            yield i, text


def _check_text(path: Path) -> None:
    """Stream through a text file once: UTF-8 throughout and not blank (the CSV reader then reads it again)."""
    blank = True
    for _, line in _utf8_lines(path):
        blank = blank and not line.strip()
    if blank:
        raise DataError(str(path), None, None, "file is empty")


def _read_text(path: Path) -> str:
    _check_text(path)
    return path.read_text(encoding="utf-8-sig")


_CSV_HINTS = {
    "unexpected end of data": "a quoted field that starts in this record is never closed",
    "',' expected after '\"'": "a quote inside a quoted field must be doubled (\"\")",
}


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    _check_text(path)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # fields of many megabytes (the default is 128 KiB)
    with open(path, encoding="utf-8-sig", newline="") as lines:
        reader = csv.reader(lines, strict=True)
        try:
            header = next(reader)
        except csv.Error as e:
            raise DataError(str(path), 1, None, f"bad CSV header ({e})") from None
        header = [h.strip() for h in header]
        dup = [h for h, c in Counter(header).items() if c > 1 and h]
        if dup:
            raise DataError(str(path), 1, dup[0], "column name appears twice in the header")
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise DataError(str(path), start, None, f"bad CSV: {_CSV_HINTS.get(str(e), str(e))}") from None
            if cells and any(c.strip() for c in cells):
                if len(cells) != len(header):
                    raise DataError(str(path), start, None, f"{len(cells)} cells but the header has {len(header)} columns")
                yield start, dict(zip(header, cells, strict=False))
            start = reader.line_num + 1


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    blank = True
    for i, line in _utf8_lines(path):
        if not line.strip():
            continue
        blank = False
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(str(path), i, None, f"invalid JSON ({e.msg} at character {e.colno})") from None
        except RecursionError:
            raise DataError(str(path), i, None, TOO_DEEP) from None
        if not isinstance(rec, dict):
            raise DataError(str(path), i, None, "each line must be a JSON object")
        yield i, rec
    if blank:
        raise DataError(str(path), None, None, "file is empty")


def _json_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:  # no record number yet: say where in the text
        raise DataError(str(path), None, None, f"invalid JSON at line {e.lineno}, character {e.colno} ({e.msg})") from None
    except RecursionError:
        raise DataError(str(path), None, None, TOO_DEEP) from None
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


PARQUET_BATCH = 8192  # rows per Parquet record batch read


def _parquet_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    def unreadable(e: Exception) -> DataError:  # pyarrow raises several types for corrupt files
        return DataError(str(path), None, None, f"not a readable Parquet file ({str(e).splitlines()[0]})")

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH)
    except Exception as e:
        raise unreadable(e) from None
    i = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:
            raise unreadable(e) from None
        for rec in batch.to_pylist():
            i += 1
            yield i, rec


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
            kwargs: dict[str, Any] = {}
            if builder == "csv":  # read every cell as text, as the CSV reader above does: 'NA' and '007' stay
                with open(p, encoding="utf-8-sig", newline="") as f:
                    header = next(csv.reader(f), [])
                kwargs = {"keep_default_na": False,
                          "features": datasets.Features({h: datasets.Value("string") for h in header})}
            ds = datasets.load_dataset(builder, data_files=str(p), split=split, **kwargs)
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


def _regular_file(path: Path, source: str) -> None:
    """A data file must be a plain file: a FIFO can be read only once (and may never end), a device such as
    /dev/zero never ends, a folder is not a file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(source, None, None, "file not found") from None
    except OSError as e:
        raise DataError(source, None, None, f"cannot read file ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise DataError(source, None, None, f"not a regular file ({what}); give a CSV, JSONL, JSON or Parquet file")


def read_records(source: str) -> list[tuple[int, dict[str, Any]]]:
    """Every record of a source, as (row as a person counts it, record)."""
    return list(iter_records(source))


def iter_records(source: str) -> Iterator[tuple[int, dict[str, Any]]] | list[tuple[int, dict[str, Any]]]:
    """The records of a source one at a time: CSV and JSONL line by line, Parquet by record batch
    (JSON files and datasets are read whole). A DataError may come at any record."""
    if source.startswith("hf:"):
        return _hf_records(source)
    path = Path(source)
    _regular_file(path, source)
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
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and _invisible(v))


# format characters (zero-width space and joiners, BOM, word joiner, bidi marks), controls and separators
_INVISIBLE_CATEGORIES = {"Cf", "Cc", "Zs", "Zl", "Zp"}


def _invisible(s: str) -> bool:
    """True for text that shows nothing: empty, whitespace, or only zero-width and other invisible characters."""
    return all(c.isspace() or unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in s)


def same_question(q: str) -> str:
    """The form in which two questions count as the same for the overlap warnings: case and spacing ignored."""
    return " ".join(q.split()).casefold()


def parse_options(value: Any) -> list[str]:
    """Options as a list of strings from a list, a JSON list in a string, or a Python-style list string."""
    if isinstance(value, str):
        s = value.strip()
        try:
            value = json.loads(s)
        except RecursionError:
            raise ValueError(TOO_DEEP) from None
        except json.JSONDecodeError:
            import ast

            try:
                value = ast.literal_eval(s)
            except (RecursionError, MemoryError):
                raise ValueError(TOO_DEEP) from None
            except (ValueError, SyntaxError):
                raise ValueError("options are not a JSON list") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise ValueError("options must be a list")
    opts = []
    for i, o in enumerate(value):
        if _missing(o):
            raise ValueError(f"option {LETTERS[i] if i < len(LETTERS) else i + 1} is empty")
        if not isinstance(o, str | int | float) or isinstance(o, bool):
            raise ValueError(f"option {LETTERS[i] if i < len(LETTERS) else i + 1} is a {type(o).__name__}, not text")
        opts.append(str(o).strip())
    if len(opts) < 2:
        raise ValueError(f"needs at least 2 options, found {len(opts)}")
    if len(opts) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options are supported, found {len(opts)}")
    return opts


def _option_text_match(s: str, options: list[str]) -> int | None:
    """Position of the option whose text is ``s``: exact first, then ignoring case if that is unambiguous."""
    if s in options:  # an option listed twice: the first (the split's warning names such rows)
        return options.index(s)
    lowered = [i for i, o in enumerate(options) if o.lower() == s.lower()]
    if len(lowered) > 1:
        raise ValueError(f"answer '{_short(s)}' matches options {', '.join(LETTERS[i] for i in lowered)} "
                         "when case is ignored: give the letter")
    return lowered[0] if lowered else None


def _short(s: str) -> str:
    return s if len(s) <= 40 else s[:37] + "..."


def parse_choice_answer(value: Any, options: list[str], index_base: int = 0) -> str:
    """The answer letter from a letter, an index (counted from ``index_base``) or the option text.

    A letter is a letter even where an option reads 'C'. A numeric string that is also the text of a
    different option (options '1', '2', '3' with answer '2') is ambiguous and refused; a JSON number is always
    an index. Option text matches exactly, else ignoring case where that picks one option.
    """
    letters = LETTERS[: len(options)]
    lo, hi = index_base, len(options) - 1 + index_base
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"answer {_short(repr(value))} is not a letter, an index or one of the options")
    if isinstance(value, int | float):
        if not float(value).is_integer():
            raise ValueError(f"answer {value!r} is a number but not a whole one, so not an option index")
        if lo <= int(value) <= hi:
            return letters[int(value) - index_base]
        raise ValueError(f"answer index {value!r} is outside {lo}..{hi}")
    s = value.strip()
    if len(s) == 1 and s.upper() in letters:  # a letter wins over an option reading 'C' (real ARC rows have them)
        return s.upper()
    text_at = _option_text_match(s, options)
    if len(s) == 1 and s.upper() in LETTERS:
        if text_at is None:
            raise ValueError(f"answer '{s}' is outside the options {letters[0]}-{letters[-1]}")
    if s.isdigit():
        i = int(s)
        if lo <= i <= hi:
            if text_at is not None and text_at != i - index_base:
                raise ValueError(f"answer '{s}' is ambiguous: option {letters[text_at]} reads '{s}' and index {s} "
                                 f"is option {letters[i - index_base]}; give the letter")
            return letters[i - index_base]
        if text_at is None:
            raise ValueError(f"answer index {s} is outside {lo}..{hi}")
    if text_at is not None:
        return letters[text_at]
    raise ValueError(f"answer '{_short(s)}' is not a letter, an index or one of the options")


def to_examples(
    records: list[tuple[int, dict[str, Any]]],
    source: str,
    split: str,
    kind: AnswerKind,
    cfg: TaskConfig,
    require_answer: bool,
    numeric: bool = False,
    skipped: list[DataError] | None = None,
) -> list[Example]:
    """Validate records and map them onto Examples. ``numeric``: free-form answers must be numbers."""
    return list(iter_examples(records, source, split, kind, cfg, require_answer, numeric, skipped=skipped))


def iter_examples(
    records: Iterable[tuple[int, dict[str, Any]]],
    source: str,
    split: str,
    kind: AnswerKind,
    cfg: TaskConfig,
    require_answer: bool,
    numeric: bool = False,
    check_ids: bool = True,
    skipped: list[DataError] | None = None,
) -> Iterator[Example]:
    """``to_examples`` one record at a time; columns are checked on the first 50 records.

    ``check_ids``: refuse a repeated id (this keeps every id seen, the one thing that grows with the rows).
    With ``task.bad_rows: skip`` a row that fails validation is dropped (and its error added to ``skipped``).
    """
    it = iter(records)
    head = list(islice(it, 50))
    if not head:
        raise DataError(source, None, None, "no data rows (header only or empty)")
    first_row, _ = head[0]
    columns = set().union(*(r.keys() for _, r in head))
    if cfg.question_col not in columns:
        found = ", ".join(sorted(map(str, columns))) or "no columns"
        raise DataError(source, first_row, cfg.question_col, f"missing column (found: {found})")
    if kind == "choice":
        if cfg.option_cols:
            for c in cfg.option_cols:
                if c not in columns:
                    raise DataError(source, first_row, c, "missing option column")
        elif cfg.options_col not in columns:
            raise DataError(source, first_row, cfg.options_col, "missing column (set task.options_col or task.option_cols)")
    if require_answer and cfg.answer_col not in columns:
        raise DataError(source, first_row, cfg.answer_col, "missing column")
    seen_ids: dict[str, int] = {}
    for row, rec in _chain(head, it):
        try:
            ex = _to_example(row, rec, source, split, kind, cfg, require_answer, numeric)
        except DataError as e:
            if cfg.bad_rows != "skip":
                raise
            if skipped is not None:
                skipped.append(e)
            continue
        if check_ids:
            if ex.id in seen_ids:
                raise DataError(source, row, cfg.id_col, f"duplicate id '{ex.id}' (also at row {seen_ids[ex.id]})")
            seen_ids[ex.id] = row
        yield ex


def _chain(head: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from head
    head.clear()  # the first rows are not held for the whole stream
    yield from rest


def _to_example(row: int, rec: dict[str, Any], source: str, split: str, kind: AnswerKind, cfg: TaskConfig,
                require_answer: bool, numeric: bool) -> Example:
    q = rec.get(cfg.question_col)
    if _missing(q):
        raise DataError(source, row, cfg.question_col, "empty question")
    if not isinstance(q, str | int | float) or isinstance(q, bool):
        raise DataError(source, row, cfg.question_col, f"the question is a {type(q).__name__}, not text")
    options = None
    if kind == "choice":
        if cfg.option_cols:
            options = _options_from_columns(rec, cfg.option_cols, source, row)
        else:
            try:
                options = parse_options(rec.get(cfg.options_col))
            except ValueError as e:
                raise DataError(source, row, cfg.options_col, str(e)) from None
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
            if numeric and not is_number(answer):
                raise DataError(source, row, cfg.answer_col,
                                f"answer '{_short(str(a))}' is not a number, and this task's answers are numbers")
    rid = rec.get(cfg.id_col)
    rid = f"{split}-{row}" if _missing(rid) else str(rid)
    rat = rec.get(cfg.rationale_col)
    subj = rec.get(cfg.subject_col)
    return Example(
        id=rid,
        question=str(q).strip(),
        options=options,
        answer=answer,
        rationale=None if _missing(rat) else str(rat).strip(),
        subject=None if _missing(subj) else str(subj),
        row=row,
    )


def _options_from_columns(rec: dict[str, Any], cols: list[str], source: str, row: int) -> list[str]:
    """Options from one column per letter. Empty trailing columns drop out (fewer options); a gap is an error,
    since closing it would shift every later option onto the wrong letter."""
    values = [rec.get(c) for c in cols]
    n = len(values)
    while n and _missing(values[n - 1]):
        n -= 1
    for c, v in zip(cols[:n], values[:n], strict=True):
        if _missing(v):
            raise DataError(source, row, c, "empty option, but a later option column is filled")
    try:
        return parse_options(values[:n])
    except ValueError as e:
        raise DataError(source, row, ",".join(cols), str(e)) from None


@dataclass
class _AnswerCounts:
    """Free-form answers seen so far: how many are numbers, how many text, and the first text one."""

    numbers: int = 0
    text: int = 0
    first_text: Example | None = None

    def add(self, e: Example) -> None:
        if e.answer is None:
            return
        if is_number(e.answer):
            self.numbers += 1
        else:
            self.text += 1
            self.first_text = self.first_text or e

    def warning(self, source: str) -> str | None:
        """Mostly numbers with some text usually means a bad answer column."""
        first = self.first_text
        if first is None or self.numbers <= self.text:
            return None
        return (f"{source}: {self.text} of {self.text + self.numbers} answers are text while the rest are numbers "
                f"(first at row {first.row}: '{_short(first.answer or '')}'); check the answer column")


def _mixed_free_warning(source: str, examples: Iterable[Example]) -> str | None:
    counts = _AnswerCounts()
    for e in examples:
        counts.add(e)
    return counts.warning(source)


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


def resolve_sources(cfg: TaskConfig, required: tuple[str, ...] = ("labeled", "unlabeled")
                    ) -> tuple[str, AnswerKind | None, TaskConfig, dict[str, str | None]]:
    """Name, answer kind (None = guess from data), effective TaskConfig and split sources; the ``required``
    splits must be found."""
    kind: AnswerKind | None = None if cfg.answer_kind == "auto" else cfg.answer_kind
    name = cfg.task or "custom"
    # an empty string (``--test ''``) means not given, as None does
    sources: dict[str, str | None] = {"labeled": cfg.labeled or None, "unlabeled": cfg.unlabeled or None,
                                      "test": cfg.test or None}
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
            for folder in (d, d / cfg.task):
                if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
                    raise ConfigError(f"task.data_dir: cannot read the folder {folder} (permission denied)")
            if not (d / cfg.task).is_dir():
                raise ConfigError(f"task.data_dir: {d / cfg.task} is not a folder")
            for s in sources:
                if sources[s] is None:
                    sources[s] = _find(d, cfg.task, s, preset["ext"])
            for s in required:
                if not sources[s]:
                    raise ConfigError(f"task.data_dir: no {s}.{{csv,jsonl,json,parquet}} in {d / cfg.task}")
    for s in required:
        if not sources[s]:
            raise ConfigError(f"task.{s}: no {s} split given (set task.{s}, or task.task with task.data_dir)")
    return name, kind, cfg, sources


def subsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """n examples chosen with a seeded shuffle, kept in file order (all of them when n is 0 or too large)."""
    if n <= 0 or n >= len(examples):
        return examples
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    return [examples[i] for i in sorted(idx[:n])]


def load_task(cfg: TaskConfig, seed: int = 0, need_test: bool = False, min_labeled: int = 0,
              only_test: bool = False) -> Task:
    """Load and validate the three splits of a task (``only_test``: the test split alone, for evaluation;
    the labeled and unlabeled splits are then empty and need not exist).

    ``min_labeled``: the fewest labeled rows the run can use (``propagate.k``, the neighbours retrieved per
    unlabeled question); fewer is a ConfigError rather than silently fewer demonstrations.
    Free-form answers: with a numeric preset (gsm8k, convfinqa) every answer must be a number; otherwise
    numbers and text may mix, with a warning when a split is mostly numbers and some answers are text.
    """
    from .feedback import merge_added_labels

    if cfg.task == "demo":
        from .demo_task import make_demo_task

        task = merge_added_labels(make_demo_task(seed=0), cfg)
        _check_labeled_size(task, min_labeled, cfg)
        return task
    name, kind, cfg, sources = resolve_sources(cfg, () if only_test else ("labeled", "unlabeled"))
    if (need_test or only_test) and not sources["test"]:
        raise ConfigError("task.test: evaluation needs a test split, and none was given")
    if only_test:
        sources = {"test": sources["test"]}
    numeric = bool(PRESETS.get(name, {}).get("numeric"))
    # labeled and test are read whole; the unlabeled split is validated as a stream and read again by the
    # stages that need it (it may be far larger than memory)
    recs = {s: read_records(src) for s, src in sources.items() if src and s != "unlabeled"}
    if kind is None:
        kind = _guess_kind(recs["test" if only_test else "labeled"], cfg)
    limits = {"labeled": cfg.limit_labeled, "unlabeled": cfg.limit_unlabeled, "test": cfg.limit_test}
    found: list[str] = []

    def whole(s: str) -> Split:
        bad: list[DataError] = []
        ex = to_examples(recs[s], sources[s] or s, s, kind, cfg, require_answer=True, numeric=numeric, skipped=bad)
        found.extend(_skipped_warning(sources[s] or s, s, bad))
        return Split(s, sources[s] or s, subsample(ex, limits[s], seed))

    if only_test:
        return Task(name, kind, Split("labeled", "", []), Split("unlabeled", "", []), whole("test"), found, numeric)
    labeled = whole("labeled")
    bad: list[DataError] = []
    unlabeled = _streamed_split(sources["unlabeled"] or "unlabeled", kind, cfg, numeric, limits["unlabeled"], seed, bad)
    found.extend(_skipped_warning(unlabeled.source, "unlabeled", bad))
    test = whole("test") if "test" in recs else None
    task = Task(name, kind, labeled, unlabeled, test, found, numeric=numeric)
    _check_unlabeled(task, cfg.id_col)
    task = merge_added_labels(task, cfg)  # rows a person labeled since (task.add_labels)
    _check_labeled_size(task, min_labeled, cfg)
    for w in task.warnings:
        warnings.warn(w, stacklevel=2)
    return task


def _skipped_warning(source: str, split: str, bad: list[DataError]) -> list[str]:
    """The one warning line of a split's rows dropped by ``task.bad_rows: skip`` (none if none were)."""
    if not bad:
        return []
    first = "; ".join(f"row {e.row}" + (f", column '{e.column}'" if e.column else "") + f": {e.msg}" for e in bad[:3])
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    return [f"{split} split: skipped {len(bad)} bad rows of {source} (task.bad_rows: skip): {_one_line(first)}{more}"]


def _streamed_split(source: str, kind: AnswerKind, cfg: TaskConfig, numeric: bool, limit: int, seed: int,
                    skipped: list[DataError] | None = None) -> StreamedSplit:
    """Validate every row of the unlabeled split in one streaming pass; keep only the count (and a subsample's
    positions, chosen exactly as ``subsample`` chooses them)."""
    rows = sum(1 for _ in iter_examples(iter_records(source), source, "unlabeled", kind, cfg,
                                        require_answer=False, numeric=numeric, skipped=skipped))
    keep = None
    if 0 < limit < rows:
        idx = list(range(rows))
        random.Random(seed).shuffle(idx)
        keep = frozenset(idx[:limit])
    return StreamedSplit("unlabeled", source, kind, cfg, numeric, rows, keep)


def _check_unlabeled(task: Task, id_col: str) -> None:
    """One pass over the unlabeled rows: no id shared with the labeled split (labeled and unlabeled rows are
    told apart by id downstream, in the evolve pool), and the warnings: questions shared between splits
    (ignoring case and spacing), rows listing one option twice, mixed free-form answers."""
    lab_rows = {e.id: e.row for e in task.labeled.examples}
    lab_questions = {same_question(e.question) for e in task.labeled.examples}
    test_questions = {same_question(e.question) for e in task.test.examples} if task.test is not None else set()
    shared = shared_test = 0
    counts = _AnswerCounts()
    dups = {s.name: _RepeatedOptions() for s in (task.labeled, task.unlabeled, task.test) if s is not None}
    for e in task.unlabeled.iter_examples():
        if e.id in lab_rows:
            raise DataError(task.unlabeled.source, e.row, id_col,
                            f"id '{e.id}' is also used in the labeled split (row {lab_rows[e.id]} of {task.labeled.source})")
        q = same_question(e.question)
        shared += q in lab_questions
        shared_test += q in test_questions
        counts.add(e)
        dups["unlabeled"].add(e)
    if shared:
        task.warnings.append(f"{shared} unlabeled questions also appear in the labeled split ({task.labeled.source})")
    if shared_test:
        task.warnings.append(f"{shared_test} unlabeled questions also appear in the test split ({task.test.source}): "
                             "pseudo-labels trained on them make test accuracy optimistic")
    if task.test is not None:
        shared = sum(1 for e in task.test.examples if same_question(e.question) in lab_questions)
        if shared:
            task.warnings.append(f"{shared} test questions also appear in the labeled split: test accuracy may be optimistic")
    for split in (task.labeled, task.test):
        if split is not None:
            for e in split.examples:
                dups[split.name].add(e)
    for split in (task.labeled, task.unlabeled, task.test):
        if split is not None and (w := dups[split.name].warning(split.source)):
            task.warnings.append(w)
    if task.kind == "free":
        found = [_mixed_free_warning(task.labeled.source, task.labeled.examples), counts.warning(task.unlabeled.source),
                 _mixed_free_warning(task.test.source, task.test.examples) if task.test is not None else None]
        task.warnings.extend(w for w in found if w)


@dataclass
class _RepeatedOptions:
    """Rows of a split that list the same option text twice (the model then sees two letters for one answer)."""

    rows: int = 0
    on_answer: int = 0  # of them, rows whose answer is a repeated option (given as its text, the first copy)
    first: tuple[int, str] | None = None

    def add(self, e: Example) -> None:
        opts = e.options or []
        if len(set(opts)) < len(opts):
            self.rows += 1
            if e.answer is not None and opts.count(opts[LETTERS.index(e.answer)]) > 1:
                self.on_answer += 1
            if self.first is None:
                self.first = (e.row, next(o for o in opts if opts.count(o) > 1))

    def warning(self, source: str) -> str | None:
        if self.first is None:
            return None
        answers = (f", {self.on_answer} with the answer on a repeated option (the other copy's letter counts as "
                   "wrong)") if self.on_answer else ""
        return (f"{source}: {self.rows} rows list the same option twice (first at row {self.first[0]}: "
                f"'{_short(self.first[1])}'){answers}; each copy has its own letter")


def _check_labeled_size(task: Task, min_labeled: int, cfg: TaskConfig) -> None:
    n = len(task.labeled)
    if n < min_labeled:
        after = " after task.limit_labeled" if cfg.limit_labeled else ""
        raise ConfigError(f"propagate.k: {min_labeled} neighbours are retrieved per question, but the labeled split "
                          f"({task.labeled.source}) has only {n} rows{after}")


def answer_distribution(split: Split) -> Counter:
    return Counter(e.answer for e in split.examples if e.answer is not None)
