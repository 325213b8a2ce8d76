"""Loading a task: its labeled, unlabeled and test splits, read, validated and subsampled.

The labeled and test splits are read whole. The unlabeled split can be far larger than memory allows: it is
validated in one streaming pass when the task is loaded, and read again chunk by chunk by the stages that
need its rows (a ``Split`` over a function that reads its source again). Labels a person added since
(``task.add_labels``) are merged in as the task loads.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Iterator
from functools import partial

from ..config import ConfigError, TaskConfig
from .checks import _check_labeled_size, _check_unlabeled, _skipped_warning
from .columns import _guess_kind, iter_examples, to_examples
from .demo import make_demo_task
from .feedback import merge_added_labels
from .presets import PRESETS, resolve_sources
from .readers import iter_records, read_records
from .types import AnswerKind, DataError, Example, Split, Task


def subsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """n examples chosen with a seeded shuffle, kept in file order (all of them when n is 0 or too large)."""
    if n <= 0 or n >= len(examples):
        return examples
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    return [examples[i] for i in sorted(idx[:n])]


def load_task(
    cfg: TaskConfig, seed: int = 0, need_test: bool = False, min_labeled: int = 0, only_test: bool = False
) -> Task:
    """Load and validate the three splits of a task (``only_test``: the test split alone, for evaluation;
    the labeled and unlabeled splits are then empty and need not exist).

    ``min_labeled``: the fewest labeled rows the run can use (``propagate.k``, the neighbours retrieved per
    unlabeled question); fewer is a ConfigError rather than silently fewer demonstrations.
    Free-form answers: with a numeric preset (gsm8k, convfinqa) every answer must be a number; otherwise
    numbers and text may mix, with a warning when a split is mostly numbers and some answers are text.
    """
    if cfg.task == "demo":
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


def _read_unlabeled(source: str, kind: AnswerKind, cfg: TaskConfig, numeric: bool) -> Iterator[Example]:
    """The unlabeled rows of ``source``, read again from the start (ids were checked on the first pass)."""
    return iter_examples(
        iter_records(source), source, "unlabeled", kind, cfg, require_answer=False, numeric=numeric, check_ids=False
    )


def _streamed_split(
    source: str,
    kind: AnswerKind,
    cfg: TaskConfig,
    numeric: bool,
    limit: int,
    seed: int,
    skipped: list[DataError] | None = None,
) -> Split:
    """Validate every row of the unlabeled split in one streaming pass; keep only the count (and a subsample's
    positions, chosen exactly as ``subsample`` chooses them)."""
    rows = sum(
        1
        for _ in iter_examples(
            iter_records(source), source, "unlabeled", kind, cfg, require_answer=False, numeric=numeric, skipped=skipped
        )
    )
    keep = None
    if 0 < limit < rows:
        idx = list(range(rows))
        random.Random(seed).shuffle(idx)
        keep = frozenset(idx[:limit])
    return Split("unlabeled", source, partial(_read_unlabeled, source, kind, cfg, numeric), rows, keep)


def answer_distribution(split: Split) -> Counter:
    return Counter(e.answer for e in split.examples if e.answer is not None)
