"""The types of a loaded task: ``Example`` (one question), ``Split`` (the rows of one split), ``Task`` (the three
splits with their answer kind) and ``DataError``, the error every problem with an input file raises.

A ``Split`` holds its rows either as a list (labeled and test splits, read whole) or as a function that reads
its source again at each pass (the unlabeled split, which may be far larger than memory); callers iterate it
the same way in both cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Literal

from ..answers import LETTERS
from ..errors import UserError

AnswerKind = Literal["choice", "free"]


def _one_line(text: str) -> str:
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class DataError(UserError, ValueError):
    """Bad input data. ``str(err)`` is one line: 'FILE, row N, column C: what is wrong'.

    Also a ValueError, as it always was, for callers that catch bad values broadly.
    """

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
    """The rows of one split, iterated again as often as a stage needs.

    ``rows`` is a list, or a function returning a fresh iterator over the source's rows each time it is called
    (its file was validated when the task was loaded, so its rows never sit in memory together); ``length`` is
    then the number of rows in the source. ``keep`` holds the positions among those rows the split keeps (a
    ``limit_*`` subsample, less rows moved to the labeled split); None keeps every row.
    """

    name: str
    source: str
    rows: list[Example] | Callable[[], Iterator[Example]]
    length: int = 0
    keep: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rows, list):
            self.length = len(self.rows)

    def __len__(self) -> int:
        return self.length if self.keep is None else len(self.keep)

    def positions(self) -> Iterator[tuple[int, Example]]:
        """(position among the source's rows, example) of each row the split keeps."""
        rows = self.rows if isinstance(self.rows, list) else self.rows()
        return ((i, e) for i, e in enumerate(rows) if self.keep is None or i in self.keep)

    def iter_examples(self) -> Iterator[Example]:
        if isinstance(self.rows, list) and self.keep is None:
            return iter(self.rows)
        return (e for _, e in self.positions())

    def chunks(self, size: int) -> Iterator[list[Example]]:
        return batched(self.iter_examples(), size)

    @property
    def examples(self) -> list[Example]:
        """Every row as a list: the list itself for a split read whole; a streamed split is read into memory
        (stages that go over the unlabeled split use ``iter_examples`` or ``chunks`` instead)."""
        if isinstance(self.rows, list) and self.keep is None:
            return self.rows
        return list(self.iter_examples())

    def without(self, positions: set[int]) -> Split:
        """This split less the rows at ``positions`` (positions as ``positions()`` gives them)."""
        if not positions:
            return self
        if isinstance(self.rows, list) and self.keep is None:
            return replace(self, rows=[e for i, e in enumerate(self.rows) if i not in positions])
        keep = self.keep if self.keep is not None else frozenset(range(self.length))
        return replace(self, keep=keep - positions)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass
class Task:
    name: str
    kind: AnswerKind
    labeled: Split
    unlabeled: Split
    test: Split | None = None
    warnings: list[str] = field(default_factory=list)
    numeric: bool = False
    """The free-form answers are numbers (a preset such as gsm8k): extraction looks for a number."""
