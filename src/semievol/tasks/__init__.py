"""Tasks: loading, validating and mapping the labeled, unlabeled and test splits of a task.

``load_task`` reads a task from CSV, JSONL, JSON or Parquet files or ``hf:`` datasets (``readers``), maps the
configured columns onto ``Example``s (``columns``), checks the splits against each other (``checks``) and
merges labels a person added since (``feedback``); ``presets`` knows the benchmark tasks and ``demo``
generates the demo task. Every problem with a file is a ``DataError`` naming the file, the row as a person
counts it and the column.
"""

from .columns import iter_examples, parse_choice_answer, parse_options, same_question, to_examples
from .demo import make_demo_task
from .feedback import merge_added_labels
from .load import answer_distribution, load_task, subsample
from .presets import PRESETS, resolve_sources
from .readers import PARQUET_BATCH, iter_records, read_records
from .types import AnswerKind, DataError, Example, Split, Task, batched

__all__ = [
    "PARQUET_BATCH",
    "PRESETS",
    "AnswerKind",
    "DataError",
    "Example",
    "Split",
    "Task",
    "answer_distribution",
    "batched",
    "iter_examples",
    "iter_records",
    "load_task",
    "make_demo_task",
    "merge_added_labels",
    "parse_choice_answer",
    "parse_options",
    "read_records",
    "resolve_sources",
    "same_question",
    "subsample",
    "to_examples",
]
