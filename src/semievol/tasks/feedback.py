"""Feeding new labels back: rows a person labeled join the labeled split and leave the unlabeled one.

``task.add_labels`` names files in the task's own columns (a filled-in ``semievol suggest`` file is one).
Each row must match one unlabeled row of the task: by id where the row has one, else by its question text,
which must then be that of exactly one unlabeled row; its question and options must be that row's. A row
that matches nothing, matches a row another line already labeled, or disagrees with its row is a
``DataError`` naming the file, the row and the column. Rows whose answer is empty are skipped with a
warning (a labeling tool may hand back rows nobody labeled). No data file is ever rewritten: the merge
happens as the task loads, so the task's digest, and with it the fingerprint of every stage that reads the
labeled split, changes exactly when the merged labels change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from ..config import TaskConfig
from .columns import _missing, to_examples
from .readers import read_records
from .types import DataError, Example, Task


def merge_added_labels(task: Task, cfg: TaskConfig) -> Task:
    """``task`` with the rows of ``cfg.add_labels`` moved from its unlabeled split to its labeled split."""
    if not cfg.add_labels:
        return task
    rows = list(_added_rows(task, cfg))
    want_ids = {ex.id for _, _, ex, has_id in rows if has_id}
    want_questions = {ex.question for _, _, ex, has_id in rows if not has_id}
    by_id: dict[str, tuple[int, Example]] = {}
    by_question: dict[str, list[tuple[int, Example]]] = {}
    for pos, e in task.unlabeled.positions():
        if e.id in want_ids:
            by_id[e.id] = (pos, e)
        if e.question in want_questions:
            by_question.setdefault(e.question, []).append((pos, e))
    labeled_ids = {e.id: e.row for e in task.labeled.examples}
    labeled_questions = {e.question for e in task.labeled.examples}
    subsampled = " (after task.limit_unlabeled)" if cfg.limit_unlabeled else ""
    options_col = ",".join(cfg.option_cols) or cfg.options_col
    taken: dict[int, tuple[str, int]] = {}
    added: list[Example] = []
    for src, row, ex, has_id in rows:
        if has_id:
            hit = by_id.get(ex.id)
            if hit is None:
                why = f"; it is row {labeled_ids[ex.id]} of the labeled split" if ex.id in labeled_ids else ""
                raise DataError(src, row, cfg.id_col, f"no unlabeled row{subsampled} has id '{ex.id}'{why}")
            pos, u = hit
            if u.question != ex.question:
                raise DataError(
                    src,
                    row,
                    cfg.question_col,
                    f"the question differs from that of unlabeled row "
                    f"'{u.id}' (row {u.row} of {task.unlabeled.source})",
                )
        else:
            hits = by_question.get(ex.question, [])
            if not hits:
                why = "; it is a question of the labeled split" if ex.question in labeled_questions else ""
                raise DataError(src, row, cfg.question_col, f"matches no unlabeled question{subsampled}{why}")
            if len(hits) > 1:
                ids = ", ".join(f"'{e.id}'" for _, e in hits[:3])
                raise DataError(
                    src,
                    row,
                    cfg.question_col,
                    f"matches {len(hits)} unlabeled rows ({ids}); give the row's id in column '{cfg.id_col}'",
                )
            pos, u = hits[0]
        if ex.options != u.options:
            raise DataError(
                src,
                row,
                options_col,
                f"the options differ from those of unlabeled row '{u.id}' (row {u.row} of {task.unlabeled.source})",
            )
        if pos in taken:
            first = taken[pos]
            raise DataError(
                src,
                row,
                cfg.id_col if has_id else cfg.question_col,
                f"unlabeled row '{u.id}' is labeled twice (also {first[0]}, row {first[1]})",
            )
        taken[pos] = (src, row)
        added.append(replace(u, answer=ex.answer, rationale=ex.rationale or u.rationale))
    labeled = replace(task.labeled, rows=task.labeled.examples + added)
    return replace(task, labeled=labeled, unlabeled=task.unlabeled.without(set(taken)))


def _added_rows(task: Task, cfg: TaskConfig) -> Iterator[tuple[str, int, Example, bool]]:
    """(file, row, example, whether the row gave an id) for every answered row of the files."""
    for src in cfg.add_labels:
        records = read_records(src)
        answered = [(row, rec) for row, rec in records if not _missing(rec.get(cfg.answer_col))]
        if len(answered) < len(records):
            task.warnings.append(
                f"{src}: {len(records) - len(answered)} of {len(records)} rows have no answer and stay unlabeled"
            )
        if not answered:
            continue
        examples = to_examples(answered, src, "added", task.kind, cfg, require_answer=True, numeric=task.numeric)
        for (row, rec), ex in zip(answered, examples, strict=True):
            yield src, row, ex, not _missing(rec.get(cfg.id_col))
