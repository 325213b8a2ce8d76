"""The checks over a task's loaded splits, and the warnings they give.

Refused: an id shared by the labeled and unlabeled splits (the two are told apart by id downstream) and a
labeled split smaller than the neighbours retrieved per question. Warned about: questions shared between
splits (ignoring case and spacing), rows listing one option twice, free-form answers that are mostly
numbers with some text, and rows dropped by ``task.bad_rows: skip``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..answers import LETTERS, is_number
from ..config import ConfigError, TaskConfig
from .columns import _short, same_question
from .types import DataError, Example, Task, _one_line


def _skipped_warning(source: str, split: str, bad: list[DataError]) -> list[str]:
    """The one warning line of a split's rows dropped by ``task.bad_rows: skip`` (none if none were)."""
    if not bad:
        return []
    first = "; ".join(f"row {e.row}" + (f", column '{e.column}'" if e.column else "") + f": {e.msg}" for e in bad[:3])
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    return [f"{split} split: skipped {len(bad)} bad rows of {source} (task.bad_rows: skip): {_one_line(first)}{more}"]


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
        return (
            f"{source}: {self.text} of {self.text + self.numbers} answers are text while the rest are numbers "
            f"(first at row {first.row}: '{_short(first.answer or '')}'); check the answer column"
        )


def _mixed_free_warning(source: str, examples: Iterable[Example]) -> str | None:
    counts = _AnswerCounts()
    for e in examples:
        counts.add(e)
    return counts.warning(source)


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
            raise DataError(
                task.unlabeled.source,
                e.row,
                id_col,
                f"id '{e.id}' is also used in the labeled split (row {lab_rows[e.id]} of {task.labeled.source})",
            )
        q = same_question(e.question)
        shared += q in lab_questions
        shared_test += q in test_questions
        counts.add(e)
        dups["unlabeled"].add(e)
    if shared:
        task.warnings.append(f"{shared} unlabeled questions also appear in the labeled split ({task.labeled.source})")
    if shared_test and task.test is not None:
        task.warnings.append(
            f"{shared_test} unlabeled questions also appear in the test split ({task.test.source}): "
            "pseudo-labels trained on them make test accuracy optimistic"
        )
    if task.test is not None:
        shared = sum(1 for e in task.test.examples if same_question(e.question) in lab_questions)
        if shared:
            task.warnings.append(
                f"{shared} test questions also appear in the labeled split: test accuracy may be optimistic"
            )
    for split in (task.labeled, task.test):
        if split is not None:
            for e in split.examples:
                dups[split.name].add(e)
    for split in (task.labeled, task.unlabeled, task.test):
        if split is not None and (w := dups[split.name].warning(split.source)):
            task.warnings.append(w)
    if task.kind == "free":
        found = [
            _mixed_free_warning(task.labeled.source, task.labeled.examples),
            counts.warning(task.unlabeled.source),
            _mixed_free_warning(task.test.source, task.test.examples) if task.test is not None else None,
        ]
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
        answers = (
            (f", {self.on_answer} with the answer on a repeated option (the other copy's letter counts as wrong)")
            if self.on_answer
            else ""
        )
        return (
            f"{source}: {self.rows} rows list the same option twice (first at row {self.first[0]}: "
            f"'{_short(self.first[1])}'){answers}; each copy has its own letter"
        )


def _check_labeled_size(task: Task, min_labeled: int, cfg: TaskConfig) -> None:
    n = len(task.labeled)
    if n < min_labeled:
        after = " after task.limit_labeled" if cfg.limit_labeled else ""
        raise ConfigError(
            f"propagate.k: {min_labeled} neighbours are retrieved per question, but the labeled split "
            f"({task.labeled.source}) has only {n} rows{after}"
        )
