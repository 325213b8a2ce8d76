"""A terminal table of a run's pseudo-labels: filter by disagreement, class or selection, sort by score.

Reads the last finished round's ``select/pseudo_labels.jsonl`` and prints one row per question with its
votes, the final answer, the gold answer where the unlabeled split has one (green when they match, red when
not), the confidence score (lower is more confident) and whether selection kept it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from .config import ConfigError
from .report_sections import option_names
from .rundir import load_pseudo_labels, need_run_dir

SortKey = Literal["row", "score"]


@dataclass(frozen=True)
class PseudoFilter:
    """Which pseudo-labels to show, in which order."""

    disagree: bool = False
    """Only questions whose votes were not unanimous."""
    answer: str | None = None
    """Only questions whose final answer is this class (compared as text)."""
    selected: bool | None = None
    """True: only selected; False: only rejected; None: both."""
    sort: SortKey = "row"
    """Order by row number, or by score (most confident first)."""
    reverse: bool = False
    """Reverse the order (least confident first with sort='score')."""
    limit: int = 50
    """At most this many rows (0 = all)."""


def filter_rows(rows: list[dict[str, Any]], f: PseudoFilter) -> list[dict[str, Any]]:
    out = [
        r
        for r in rows
        if (not f.disagree or not r["unanimous"])
        and (f.answer is None or str(r["answer"]) == f.answer)
        and (f.selected is None or bool(r["selected"]) == f.selected)
    ]
    out.sort(key=lambda r: r[f.sort], reverse=f.reverse)
    return out[: f.limit] if f.limit > 0 else out


def common_prefix(questions: list[str]) -> str:
    """The words every question starts with (an instruction repeated on each row), if 20 characters or more."""
    if len(questions) < 2:
        return ""
    p = os.path.commonprefix(questions)
    if p and not all(len(q) == len(p) or q[len(p)].isspace() for q in questions):
        p = p[: max(p.rfind(" "), p.rfind("\n")) + 1]  # cut back to a whole word
    return p if len(p.strip()) >= 20 else ""


def _question(text: str, prefix: str, width: int = 70) -> str:
    q = " ".join(text[len(prefix) :].split())
    q = ("… " if prefix else "") + q
    return q if len(q) <= width else q[: width - 1] + "…"


def pseudo_table(run_dir: Path, f: PseudoFilter) -> Any:
    """A rich Table of the filtered pseudo-labels, with a caption counting what was shown."""
    from rich.table import Table
    from rich.text import Text

    need_run_dir(run_dir)
    s_dir, rows, selection = load_pseudo_labels(run_dir)
    shown = filter_rows(rows, f)
    has_gold = any("gold" in r for r in rows)
    matched = len(filter_rows(rows, replace(f, limit=0)))
    prefix = common_prefix([str(r["question"]) for r in rows])
    names = option_names(rows)
    caption = (
        f"{len(shown)} shown of {matched} matching, {len(rows)} in all; "
        f"{selection.get('selected', sum(r['selected'] for r in rows))} selected by rule "
        f"'{selection.get('rule', '?')}'; score: lower is more confident"
    )
    if names:
        caption += "\noptions: " + ", ".join(names.values())
    if prefix:
        caption += "\nevery question starts with: " + " ".join(prefix.split())
    t = Table(title=f"pseudo-labels: {s_dir}", caption=caption)
    t.add_column("row", justify="right")
    t.add_column("question", overflow="fold", ratio=1)
    t.add_column("votes")
    t.add_column("answer")
    if has_gold:
        t.add_column("gold")
    t.add_column("score", justify="right")
    t.add_column("selected")
    for r in shown:
        votes = " ".join("-" if v["answer"] is None else str(v["answer"]) for v in r["votes"])
        answer = Text(str(r["answer"]))
        if "correct" in r:
            answer.stylize("green" if r["correct"] else "red")
        cells: list[Any] = [str(r["row"]), _question(str(r["question"]), prefix), votes, answer]
        if has_gold:
            cells.append(str(r.get("gold", "")))
        cells += [f"{r['score']:.4f}", "yes" if r["selected"] else "no"]
        t.add_row(*cells)
    return t


def print_pseudo(run_dir: Path, f: PseudoFilter) -> None:
    from rich.console import Console

    Console().print(pseudo_table(run_dir, f))


def pseudo_command(args: Any) -> int:
    """``semievol pseudo RUN_DIR``: the pseudo-label table, filtered and sorted as the flags say."""
    if args.limit < 0:
        raise ConfigError(f"--limit: must be 0 or more, got {args.limit}")
    print_pseudo(
        args.run_dir, PseudoFilter(args.disagree, args.answer, args.selected, args.sort, args.reverse, args.limit)
    )
    return 0
