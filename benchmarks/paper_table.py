"""The paper's table: base, SFT, SemiEvol and compute-matched SFT over seeds, the ablations, self-training
baselines, more rounds, and label scarcity; the embedded model unless ``--set model.model=...`` names another.

    python benchmarks/paper_table.py --data-dir ../shared/data                 # the 'session' profile
    python benchmarks/paper_table.py --parts main --tasks fpb --seeds 0,1,2    # one part
    python benchmarks/paper_table.py --collect-only                            # table from finished runs
    python benchmarks/paper_table.py --out runs/paper_qwen --results runs/paper_qwen/results \
        --set model.model=Qwen/Qwen2.5-1.5B-Instruct --set model.dtype=bf16    # another model, its own folders

The model runs on CUDA when torch sees a GPU, else on the CPU; `benchmarks/gpu/paper_table_gpu.py` wraps
this for one call on a GPU machine.

Everything is a `semievol run` in `runs/paper/...`; a finished run is skipped, so the script resumes where
it stopped. A variant starts from a copy of the same seed's SemiEvol run directory, so it reuses the
stages its settings leave unchanged (the warm adapter, the votes, cached base/warm predictions) and trains
only what differs.

Data: each task's splits are subsampled once, with a fixed seed (12345) independent of the run seed, into
`runs/paper/data/<task>/` (sizes per profile below, written into the results); the seeds then change
only the training (LoRA initialisation, batch order, vote draws). Hyper-parameters: the SFT learning rate
is chosen per task on a validation slice (20%) of the labeled split, never on the test split.

Writes `benchmarks/results/paper_table.json` and `paper_table.md`. This file is the command line; the
pieces it runs are in `benchmarks/paper/`.
"""

# ruff: noqa: E402 (the package beside this file is importable only after the sys.path line)
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests, label_next.py), the package beside it is not importable
    sys.path.insert(0, str(HERE))

from paper import collect as _collect
from paper import subsets as _subsets
from paper.diagnostics import alternatives, auroc, diagnose, last_evolve_steps
from paper.diagnostics import selected_counts as _selected_counts  # noqa: F401 (the tests use it)
from paper.render import diagnose_text, markdown
from paper.runs import pick_tuned, run_extras, run_main
from paper.settings import PROFILES, VARIANTS, Settings, base_config, gpus, parse_set, scarcity_counts
from paper.stats import fmt_delta, paired, row_paired, stats, target_check
from paper.subsets import read_rows as _read_rows  # noqa: F401 (the tests use it)
from paper.subsets import subsample_positions

from semievol.config import ConfigError

# what the tests, label_next.py and gpu/paper_table_gpu.py reach through this module
__all__ = [
    "alternatives",
    "auroc",
    "base_config",
    "collect",
    "diagnose",
    "fmt_delta",
    "last_evolve_steps",
    "markdown",
    "paired",
    "parse_set",
    "pick_tuned",
    "row_paired",
    "scarcity_counts",
    "stats",
    "subsample_positions",
    "subset",
    "target_check",
]

OUT = HERE.parent / "runs" / "paper"  # the default runs folder (--out)


def collect(profile: str, tasks: list[str], seeds: list[int], out: Path) -> dict[str, Any]:
    """``paper.collect.collect`` over the runs folder ``out``."""
    return _collect.collect(out, profile, tasks, seeds)


def subset(task: str, data_dir: Path, sizes: dict[str, int], out: Path) -> Path:
    """``paper.subsets.subset`` into the runs folder ``out``."""
    return _subsets.subset(task, data_dir, sizes, out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--profile", default="session", choices=sorted(PROFILES))
    ap.add_argument("--tasks", default="fpb,pubmedqa,arc")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--parts", default="main,variants,scarcity", help="comma list of main, variants, scarcity")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--variant-seeds", default=None, help="seeds for variants and scarcity (default: --seeds)")
    ap.add_argument("--scarcity-tasks", default="fpb,arc")
    ap.add_argument("--lr-grid", default="3e-4,1e-3,3e-3")
    ap.add_argument("--epochs-grid", default="2,4")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--out", default=str(OUT), help="runs folder (tuning, subsets, runs); one per model")
    ap.add_argument("--results", default=str(HERE / "results"), help="where paper_table.json and .md go")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the base config, e.g. model.model=... model.dtype=bf16 sft.batch_size=16",
    )
    ap.add_argument(
        "--diagnose",
        nargs="+",
        metavar="RUN_DIR",
        help="print the pseudo-label diagnostics of finished run folders (any semievol run) and exit",
    )
    return ap.parse_args(argv)


def settings_from(args: argparse.Namespace, base: dict[str, Any]) -> Settings:
    seeds = tuple(int(s) for s in args.seeds.split(","))
    return Settings(
        out=Path(args.out).resolve(),
        base=base,
        profile=args.profile,
        seeds=seeds,
        variant_seeds=tuple(int(s) for s in args.variant_seeds.split(",")) if args.variant_seeds else seeds,
        parts=frozenset(args.parts.split(",")),
        variants=tuple(args.variants.split(",")),
        scarcity_tasks=tuple(args.scarcity_tasks.split(",")),
        lr_grid=tuple(float(x) for x in args.lr_grid.split(",")),
        epochs_grid=tuple(int(x) for x in args.epochs_grid.split(",")),
    )


def main() -> None:
    args = parse_args()
    if args.diagnose:
        for d in args.diagnose:
            x = diagnose(Path(d))
            print(f"{d}: no select/pseudo_labels.jsonl with gold answers" if x is None else diagnose_text(d, x))
        return
    try:  # a misspelt --set key fails here, not in the first run's log after the data is written
        base = base_config(args.set)
    except ConfigError as e:
        print(f"paper_table: --set: {e}", file=sys.stderr)
        sys.exit(2)
    settings = settings_from(args, base)
    tasks = args.tasks.split(",")
    t0 = time.time()
    if not args.collect_only:
        for task in tasks:
            run_main(settings, task, Path(args.data_dir).resolve())
        for task in tasks:
            run_extras(settings, task)
    res = _collect.collect(
        settings.out, settings.profile, tasks, sorted(set(settings.seeds) | set(settings.variant_seeds))
    )
    machine = f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.processor() or 'cpu'}), {gpus()}"
    res["machine"] = machine
    res["model"] = settings.model_name()
    res["overrides"] = args.set
    res["session_wall_minutes"] = round((time.time() - t0) / 60, 1)
    command = "python benchmarks/paper_table.py " + " ".join(sys.argv[1:])
    res["command"] = command
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "paper_table.json").write_text(json.dumps(res, indent=2))
    md = markdown(res, machine, command)
    (results / "paper_table.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
