"""Mapping records onto ``Example``s: the columns named in ``TaskConfig`` are read, checked and normalised
(options, choice answers as letters, free-form answers); unknown columns are ignored.

A choice answer may be a letter, an index or the option's text; options come from one list column or from
one column per letter. Every problem with a row is a ``DataError`` naming the file, row and column; with
``task.bad_rows: skip`` such a row is dropped instead and its error kept for the split's warning.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from ..answers import LETTERS, is_number, normalize_free
from ..config import TaskConfig
from .readers import TOO_DEEP
from .types import AnswerKind, DataError, Example


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
        raise ValueError(
            f"answer '{_short(s)}' matches options {', '.join(LETTERS[i] for i in lowered)} "
            "when case is ignored: give the letter"
        )
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
                raise ValueError(
                    f"answer '{s}' is ambiguous: option {letters[text_at]} reads '{s}' and index {s} "
                    f"is option {letters[i - index_base]}; give the letter"
                )
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
            raise DataError(
                source, first_row, cfg.options_col, "missing column (set task.options_col or task.option_cols)"
            )
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


def _to_example(
    row: int,
    rec: dict[str, Any],
    source: str,
    split: str,
    kind: AnswerKind,
    cfg: TaskConfig,
    require_answer: bool,
    numeric: bool,
) -> Example:
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
                raise DataError(
                    source,
                    row,
                    cfg.answer_col,
                    f"answer '{_short(str(a))}' is not a number, and this task's answers are numbers",
                )
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


def _guess_kind(records: list[tuple[int, dict[str, Any]]], cfg: TaskConfig) -> AnswerKind:
    if cfg.option_cols:
        return "choice"
    cols = set().union(*(r.keys() for _, r in records[:50])) if records else set()
    return "choice" if cfg.options_col in cols else "free"
