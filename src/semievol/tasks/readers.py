"""Reading the records of a data source: CSV, JSONL, JSON and Parquet files and ``hf:`` datasets.

Every reader yields (row as a person counts it, record dict), so that errors can point at the row a person
sees: for CSV and JSONL the line in the file where the record starts, header included; for JSON, Parquet and
datasets the 1-based record number. CSV, JSONL and Parquet files are read as a stream (line by line, or
Parquet record batches); JSON files and datasets are read whole. Text must be UTF-8, and every problem is a
``DataError`` naming the file.
"""

from __future__ import annotations

import csv
import json
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .types import DataError

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
    "',' expected after '\"'": 'a quote inside a quoted field must be doubled ("")',
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
                    raise DataError(
                        str(path), start, None, f"{len(cells)} cells but the header has {len(header)} columns"
                    )
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
        raise DataError(
            str(path), None, None, f"invalid JSON at line {e.lineno}, character {e.colno} ({e.msg})"
        ) from None
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
                kwargs = {
                    "keep_default_na": False,
                    "features": datasets.Features({h: datasets.Value("string") for h in header}),
                }
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
        what = (
            "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        )
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
    raise DataError(
        source, None, None, f"unsupported file type '{suffix}' (use .csv, .jsonl, .json, .parquet or hf:NAME)"
    )
