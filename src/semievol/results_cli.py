"""Sub-commands that work on a finished run directory (report, pseudo-label browser, export, merge, the
rows to label next, the label audit).

Each maps its flags onto one function: ``report.write_report``, ``browse.print_pseudo``,
``export.export_data``, ``export.merge_adapter``, ``suggest.suggest`` and ``audit.audit`` (which also
rewrites an existing report, whose audit section it changes). Errors are the package's user-error types
(``StageMissing`` for a stage that has not finished, ``ConfigError`` for a bad flag or output folder), which
the main CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

COMMANDS: dict[str, str] = {
    "report": "write RUN_DIR/report.html: accuracy, pseudo-label quality, selection, loss curves, config, timings",
    "pseudo": "print a table of the run's pseudo-labels (filter by disagreement, class, selection)",
    "export": "write labeled + selected training data for LLaMA-Factory, TRL or axolotl",
    "merge": "merge the evolved LoRA adapter into the base model and save a full transformers model",
    "suggest": "the unlabeled rows to label next (uncertain, spread out, covering every class), in the task's own "
               "columns with the answer left empty, from what the run stored",
    "audit": "labeled rows whose given answer looks wrong: confident learning on out-of-fold predictions",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the main parser."""
    from .export import FORMATS

    def add(name: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
        p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by `semievol run`")
        return p

    p = add("report")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="where to write the report (default: RUN_DIR/report.html; the run folder is otherwise only read)")
    p = add("pseudo")
    p.add_argument("--disagree", action="store_true", help="only questions whose votes were not unanimous")
    p.add_argument("--class", dest="answer", metavar="X", help="only questions whose final answer is X")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--selected", dest="selected", action="store_true", default=None,
                       help="only pseudo-labels the selection kept")
    which.add_argument("--rejected", dest="selected", action="store_false", help="only pseudo-labels it dropped")
    p.add_argument("--sort", choices=["row", "score"], default="row",
                   help="order by row (default) or by score, most confident first")
    p.add_argument("--reverse", action="store_true", help="reverse the order (least confident first with --sort score)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="show at most N rows, 0 = all (default: 50)")
    p = add("export")
    p.add_argument("--format", required=True, choices=FORMATS, help="layout of the exported rows")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RUN_DIR/export/FORMAT)")
    p = add("merge")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RUN_DIR/merged_ADAPTER)")
    p.add_argument("--adapter", choices=["evolved", "warm"], default="evolved", help="which adapter (default: evolved)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="dtype of the saved weights; the merge itself runs in fp32 (default: fp32)")
    from .suggest import STRATEGIES

    p = add("suggest")
    p.add_argument("--n", type=int, default=50, metavar="N", help="how many rows to suggest (default: 50)")
    p.add_argument("--strategy", choices=STRATEGIES, default="mix",
                   help="uncertainty, diversity (k-center over embeddings), class coverage, or their mix (default)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="a .csv or .jsonl file (default: RUN_DIR/suggest/suggest.csv, or .jsonl after the task's format)")
    p = add("audit")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="out-of-fold splits of the labeled rows (default: 5)")


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "report":
        from .report import write_report

        print(write_report(args.run_dir, args.out))
        return 0
    if args.command == "pseudo":
        from .browse import PseudoFilter, print_pseudo

        if args.limit < 0:
            from .config import ConfigError

            raise ConfigError(f"--limit: must be 0 or more, got {args.limit}")
        print_pseudo(args.run_dir, PseudoFilter(args.disagree, args.answer, args.selected, args.sort, args.reverse,
                                                 args.limit))
        return 0
    if args.command == "export":
        from .export import export_data

        print(export_data(args.run_dir, args.format, args.out))
        return 0
    if args.command == "merge":
        from .export import merge_adapter

        print(merge_adapter(args.run_dir, args.out, args.adapter, args.dtype))
        return 0
    if args.command == "suggest":
        from .suggest import suggest

        print(suggest(args.run_dir, args.n, args.strategy, args.out))
        return 0
    if args.command == "audit":
        from .audit import audit

        print(audit(args.run_dir, args.folds))
        if (args.run_dir / "report.html").exists():  # its audit section is out of date now
            from .report import write_report

            write_report(args.run_dir)
        return 0
    raise AssertionError(args.command)
