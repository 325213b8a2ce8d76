"""The command table: every sub-command, its flags and the function (beside its logic) that runs it.

Config-taking commands accept an optional YAML file and one flag per setting, generated from the config
dataclasses (``--section.field``, and ``--field`` where the name is unique); flags override the file. Run
folder commands take the folder and their own flags. A ``UserError`` ends a command with one line and exit
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from .config import SECTIONS, RunConfig, field_docs, flag_table, load_yaml, merge
from .config.recipes import config_with_recipe
from .errors import UserError


@dataclass(frozen=True)
class Command:
    """One sub-command: its help, the function that runs it (``module:function``, imported when chosen)
    and its flags."""

    help: str
    run: str
    config: bool = False
    """Takes a config (file and flags): the function is called with (config, args), else with (args)."""
    flags: Callable[[argparse.ArgumentParser], None] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    """Settings under the user's file and flags (the demo's)."""


def _shard_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard",
        metavar="I/N",
        type=parse_shard,
        help="vote on the I-th of N contiguous parts of the unlabeled split only (I from 1), into "
        "propagate/votes.shard-I-of-N.jsonl; the next `select` merges all N",
    )


def _eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", help="PEFT adapter folder to evaluate on top of the base model")
    p.add_argument("--out", help="where to write the result as JSON (default: RUN_DIR/eval_<task>.json)")


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=["check"],
        help="check: rows, answer distribution, options per question, prompt length per split",
    )


def _run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by `semievol run`")


def _report_flags(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write the report (default: RUN_DIR/report.html; the run folder is otherwise only read)",
    )


def _pseudo_flags(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument("--disagree", action="store_true", help="only questions whose votes were not unanimous")
    p.add_argument("--class", dest="answer", metavar="X", help="only questions whose final answer is X")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--selected", dest="selected", action="store_true", default=None, help="only pseudo-labels the selection kept"
    )
    which.add_argument("--rejected", dest="selected", action="store_false", help="only pseudo-labels it dropped")
    p.add_argument(
        "--sort",
        choices=["row", "score"],
        default="row",
        help="order by row (default) or by score, most confident first",
    )
    p.add_argument("--reverse", action="store_true", help="reverse the order (least confident first with --sort score)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="show at most N rows, 0 = all (default: 50)")


def _export_flags(p: argparse.ArgumentParser) -> None:
    from .export import FORMATS

    _run_dir(p)
    p.add_argument("--format", required=True, choices=FORMATS, help="layout of the exported rows")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RUN_DIR/export/FORMAT)")


def _merge_flags(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RUN_DIR/merged_ADAPTER)")
    p.add_argument("--adapter", choices=["evolved", "warm"], default="evolved", help="which adapter (default: evolved)")
    p.add_argument(
        "--dtype",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="dtype of the saved weights; the merge itself runs in fp32 (default: fp32)",
    )


def _suggest_flags(p: argparse.ArgumentParser) -> None:
    from .suggest import STRATEGIES

    _run_dir(p)
    p.add_argument("--n", type=int, default=50, metavar="N", help="how many rows to suggest (default: 50)")
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="mix",
        help="uncertainty, diversity (k-center over embeddings), class coverage, or their mix (default)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .csv or .jsonl file (default: RUN_DIR/suggest/suggest.csv, or .jsonl after the task's format)",
    )


def _audit_flags(p: argparse.ArgumentParser) -> None:
    from .audit import PSEUDO

    _run_dir(p)
    p.add_argument(
        "--folds", type=int, default=5, metavar="K", help="out-of-fold splits of the labeled rows (default: 5)"
    )
    p.add_argument(
        "--pseudo",
        choices=PSEUDO,
        default="kept",
        help="kept (default): every fold's classifier also trains on the unlabeled rows the run's selection "
        "kept, with their pseudo-labels; none: on the labeled rows of the other folds only",
    )


# The demo: the generated task, with the few-label training that task needs at 135M parameters (the
# paper's lr 1e-4 for 2 epochs leaves the model answering one class) and the justifier kept from its lean
# to the last option (calibrated, and limited to the configurations' answers). Recipe 'paper' although its 48
# labeled rows would make 'auto' choose 'few_labels', whose six trainings of 384 steps take hours on a CPU.
DEMO_DEFAULTS: dict[str, Any] = {
    "run_dir": "runs/demo",
    "recipe": "paper",
    "task": {"task": "demo"},
    "sft": {"lr": 1e-3, "epochs": 6},
    "select": {"theta": 50, "calibrate": True, "candidates_only": True},
}

_STAGE = "semievol.pipeline:stage_command"
COMMANDS: dict[str, Command] = {
    "run": Command(
        "run every stage in the run directory (finished stages are skipped)",
        "semievol.pipeline:run_command",
        config=True,
    ),
    "sft": Command(
        "in-weight propagation: LoRA fine-tune the base model on the labeled split (the warm model)",
        _STAGE,
        config=True,
    ),
    "propagate": Command(
        "in-context propagation and collaborative pseudo-labelling: n configurations vote on every unlabeled question",
        _STAGE,
        config=True,
        flags=_shard_flag,
    ),
    "select": Command("self-justification, confidence and adaptive selection of pseudo-labels", _STAGE, config=True),
    "evolve": Command("fine-tune on labeled plus selected pseudo-labels (the evolved model)", _STAGE, config=True),
    "evaluate": Command("test accuracy of base, warm and evolved models; pseudo-label accuracy", _STAGE, config=True),
    "eval": Command(
        "accuracy of a model (optionally with an adapter) on the test split",
        "semievol.stages.evaluate:eval_command",
        config=True,
        flags=_eval_flags,
    ),
    "data": Command("inspect a task's data", "semievol.tasks.data_check:data_command", config=True, flags=_data_flags),
    "demo": Command(
        "the whole method offline on the embedded models and a generated task",
        "semievol.pipeline:run_command",
        config=True,
        defaults=DEMO_DEFAULTS,
    ),
    "report": Command(
        "write RUN_DIR/report.html: accuracy, pseudo-label quality, selection, loss curves, config, timings",
        "semievol.report:report_command",
        flags=_report_flags,
    ),
    "pseudo": Command(
        "print a table of the run's pseudo-labels (filter by disagreement, class, selection)",
        "semievol.browse:pseudo_command",
        flags=_pseudo_flags,
    ),
    "export": Command(
        "write labeled + selected training data for LLaMA-Factory, TRL or axolotl",
        "semievol.export:export_command",
        flags=_export_flags,
    ),
    "merge": Command(
        "merge the evolved LoRA adapter into the base model and save a full transformers model",
        "semievol.export:merge_command",
        flags=_merge_flags,
    ),
    "suggest": Command(
        "the unlabeled rows to label next (uncertain, spread out, covering every class), in the "
        "task's own columns with the answer left empty, from what the run stored",
        "semievol.suggest:suggest_command",
        flags=_suggest_flags,
    ),
    "audit": Command(
        "labeled rows whose given answer looks wrong: confident learning on out-of-fold predictions",
        "semievol.audit:audit_command",
        flags=_audit_flags,
    ),
}


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Literal:
        return "{" + ",".join(map(str, get_args(tp))) + "}"
    if origin is list:
        return "A,B,..."
    if origin in (typing.Union, types.UnionType):
        return "|".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp)).upper()


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (flags override it)")
    docs = {"": field_docs(RunConfig)}
    hints = typing.get_type_hints(RunConfig)
    for sec in SECTIONS:
        docs[sec] = field_docs(hints[sec])
    groups: dict[str, argparse._ArgumentGroup] = {}
    for dotted, alias, sec, fname, tp, default in flag_table():
        g = groups.get(sec)
        if g is None:
            title = f"{sec} settings" if sec else "run settings"
            desc = (hints[sec].__doc__ or "").strip().splitlines()[0] if sec else None
            g = groups[sec] = p.add_argument_group(title, desc)
        names = [f"--{dotted}"]
        if alias and alias != dotted:
            names.append(f"--{alias.replace('_', '-')}")
        elif not sec:
            names = [f"--{dotted.replace('_', '-')}"]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        g.add_argument(
            *names,
            dest=f"cfg:{dotted}",
            metavar=_type_name(tp),
            default=argparse.SUPPRESS,
            help=f"{docs[sec].get(fname, '')} (default: {shown})",
        )


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> RunConfig:
    """The config of ``args`` over the command's defaults ``base``, under recipe 'auto' still unresolved (the
    paper's settings) until the labeled rows are counted: ``config_layers`` keeps what resolving it needs."""
    return config_with_recipe(*config_layers(args, base))


def config_layers(
    args: argparse.Namespace, base: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the command's defaults, the user's file and flags): a recipe's settings go between the two."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values = load_yaml(args.config)
    over: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith("cfg:"):
            continue
        dotted = key[4:]
        if "." in dotted:
            sec, f = dotted.split(".", 1)
            over.setdefault(sec, {})[f] = value
        else:
            over[dotted] = value
    return dict(base or {}), merge(values, over)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semievol", description="Semi-supervised fine-tuning of LLMs (SemiEvol).")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        s = sub.add_parser(name, help=command.help, description=command.help)
        if command.flags is not None:
            command.flags(s)
        if command.config:
            add_config_flags(s)
    return p


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N."""
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
        raise argparse.ArgumentTypeError(f"'{text}' is not I/N with 1 <= I <= N (for example 2/8)")
    return int(i), int(n)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .progress import set_quiet

    set_quiet(args.quiet)
    if not args.debug:
        warnings.simplefilter("ignore")
        import logging
        import os

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        logging.getLogger("transformers").setLevel(logging.ERROR)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return dispatch(args)
    except KeyboardInterrupt:
        print("semievol: interrupted", file=sys.stderr)
        return 130
    except UserError as e:
        if args.debug:
            raise
        print(f"semievol: error: {e}", file=sys.stderr)
        return 2


def apply_threads(cfg: RunConfig) -> None:
    """torch's CPU threads: model.threads, or (0) every CPU this process may use, shared out among the
    processes of a distributed run on this machine. torch's own default counts physical cores, one thread
    on a 2-vCPU machine whose two CPUs are one core's hyper-threads."""
    import torch

    torch.set_num_threads(default_threads(cfg.model.threads))


def default_threads(setting: int) -> int:
    if setting:
        return setting
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command's function."""
    command = COMMANDS[args.command]
    module, _, name = command.run.partition(":")
    run = getattr(importlib.import_module(module), name)
    if not command.config:
        return int(run(args))
    args.config_layers = config_layers(args, base=command.defaults)
    cfg = config_with_recipe(*args.config_layers)
    apply_threads(cfg)
    return int(run(cfg, args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
