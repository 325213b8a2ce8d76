"""Runs the stages of the method over a run folder, resumably.

``STAGES`` declares each stage: the config sections it reads and the stages it needs. ``steps`` unrolls
them into the run's steps (propagate, select and evolve once per round, then the compute-matched control
and evaluation), each with its folder, its fingerprint and the call that makes it; ``run`` walks the steps
in order, skips those finished for their fingerprint and runs the asked-for ones. A stage's fingerprint
hashes its settings (those ``config.fingerprint_settings`` counts), its prompt templates and the
fingerprints of the stages it needs, so a changed setting re-runs that stage and those downstream. The
run folder's layout and what "finished" means are in ``rundir``.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import yaml

from .config import RunConfig, fingerprint_settings, to_dict
from .config.recipes import resolve_recipe
from .distributed import is_main, relaunch, should_relaunch, world_size
from .jsonio import atomic_write_json, atomic_write_text
from .progress import log
from .prompts import TEMPLATE_IDS
from .runctx import Adapter, RunContext
from .rundir import (
    PENDING,
    StageMissing,
    clear_unfinished,
    fingerprint,
    fingerprint_items,
    finish_stage,
    finished,
    input_records,
    manifest_problem,
    need,
    read_manifest,
    stage_dir,
)
from .rundir_guard import check_model_source, disk_errors, run_dir_lock
from .stages.evaluate import run_evaluate
from .stages.evolve import run_evolve, with_pseudo
from .stages.propagate import run_propagate
from .stages.select import run_select, selected_examples
from .stages.sft import member_dirs, run_sft, run_sft_matched, trained_steps
from .stages.shards import merge_shards, propagate_shard
from .tasks import Task, load_task
from .training import TrainingError


@dataclass(frozen=True)
class Stage:
    """A stage as the pipeline declares it."""

    name: str
    reads: tuple[str, ...]
    """Config sections whose settings enter its fingerprint."""
    needs: tuple[str, ...]
    """Stages whose outputs it reads (propagate after round 1 reads the round before's evolve instead of sft)."""
    templates: tuple[str, ...] = ()
    """Prompt template ids it renders (``{kind}``: the task's answer kind)."""
    per_round: bool = False
    command: str = ""
    """The command that runs it, where that is not its own name."""
    trains: bool = False
    """A training stage: it may run under ``accelerate launch``."""


STAGES = (
    Stage("sft", reads=("sft",), needs=(), templates=("{kind}",), trains=True),
    Stage("propagate", reads=("propagate",), needs=("sft",), templates=("demos",), per_round=True),
    Stage("select", reads=("select",), needs=("propagate",), templates=("justify_{kind}",), per_round=True),
    Stage("evolve", reads=("sft", "evolve"), needs=("select",), per_round=True, trains=True),
    Stage("sft_matched", reads=("sft",), needs=("sft", "evolve"), command="evaluate"),
    Stage("evaluate", reads=("evaluate",), needs=("sft", "evolve", "sft_matched")),
)
BY_NAME = {s.name: s for s in STAGES}
COMMANDS = tuple(s.name for s in STAGES if not s.command)  # sft, propagate, select, evolve, evaluate


@dataclass
class Step:
    """One stage in one round: its folder, how its fingerprint is made and the call that runs it."""

    stage: Stage
    out: Path
    make_fp: Callable[[], str] = field(repr=False)
    body: Callable[[Path], Any] = field(repr=False)
    needs: tuple[Step, ...] = ()
    """The steps whose outputs it reads: each must be finished first."""
    shard: Callable[..., None] | None = field(default=None, repr=False)
    """Propagate: the call that votes on one shard (``--shard I/N``) into the step's folder."""

    @cached_property
    def fp(self) -> str:
        return self.make_fp()

    @property
    def command(self) -> str:
        return self.stage.command or self.stage.name


def stage_fingerprint(ctx: RunContext, name: str, upstream: list[str | None], *extra: Any) -> str:
    """The fingerprint of stage ``name``: its settings, templates and the fingerprints it builds on."""
    stage = BY_NAME[name]
    settings = {sec: fingerprint_settings(getattr(ctx.cfg, sec)) for sec in stage.reads}
    templates = [TEMPLATE_IDS[t.format(kind=ctx.task.kind)] for t in stage.templates]
    return fingerprint(name, upstream, settings, templates, *extra)


def base_fingerprint(cfg: RunConfig, task: Task) -> str:
    """What every stage builds on: the model settings, the task's rows and the seed. The unlabeled split's
    gold answers are left out: they are read only to score the pseudo-labels."""

    def digest(split: Any) -> str | None:
        return (
            None
            if split is None
            else fingerprint_items((e.id, e.question, e.options, e.answer, e.rationale) for e in split.iter_examples())
        )

    rows = {
        "kind": task.kind,
        "labeled": digest(task.labeled),
        "test": digest(task.test),
        "unlabeled": fingerprint_items((e.id, e.question, e.options) for e in task.unlabeled.iter_examples()),
    }
    return fingerprint(fingerprint_settings(cfg.model), rows, cfg.seed)


def steps(ctx: RunContext) -> Iterator[Step]:
    """The run's steps in order. Made one at a time, so each may read what the steps before it wrote (the
    pool of a later round holds the rows selected in earlier ones)."""
    cfg, run_dir = ctx.cfg, ctx.run_dir
    fp = partial(stage_fingerprint, ctx)
    base = base_fingerprint(cfg, ctx.task)
    # under evolve.mode 'resume' the warm model's schedule is planned over evolve's steps too
    planned = ("resume", cfg.evolve.steps) if cfg.evolve.mode == "resume" else ()
    sft = Step(BY_NAME["sft"], stage_dir(run_dir, "sft"), partial(fp, "sft", [base], *planned), partial(run_sft, ctx))
    yield sft
    n_gold = len(ctx.task.labeled.examples)
    pool = list(ctx.task.labeled.examples)
    before, warm = sft, Adapter("warm", sft.out, sft.fp)
    # the warm members besides the warm model ('members' configurations average them with each round's warm)
    members = tuple(Adapter(f"member{j}", d, sft.fp) for j, d in enumerate(member_dirs(sft.out, cfg.sft.members)) if j)
    evolves: list[Step] = []
    select = None
    for r in range(1, cfg.evolve.rounds + 1):
        prop = Step(
            BY_NAME["propagate"],
            stage_dir(run_dir, "propagate", r),
            partial(fp, "propagate", [before.fp]),
            partial(run_propagate, ctx, pool=pool, warm_adapter=warm, members=members),
            (before,),
            partial(propagate_shard, ctx, pool=pool, warm=warm, members=members),
        )
        yield prop
        select = Step(
            BY_NAME["select"],
            stage_dir(run_dir, "select", r),
            partial(fp, "select", [prop.fp]),
            partial(run_select, ctx, prop.out / "votes.jsonl", warm=warm),
            (prop,),
        )
        yield select
        evolve = Step(
            BY_NAME["evolve"],
            stage_dir(run_dir, "evolve", r),
            partial(fp, "evolve", [select.fp]),
            partial(run_evolve, ctx, pool=pool, pseudo_labels=select.out / "pseudo_labels.jsonl", warm=warm),
            (select,),
        )
        yield evolve
        if finished(select.out, select.fp):
            pool = with_pseudo(pool, selected_examples(select.out / "pseudo_labels.jsonl", ctx.task.unlabeled), n_gold)
        before, warm = evolve, Adapter("warm", evolve.out, evolve.fp)
        evolves.append(evolve)
    last = evolves[-1]
    # an evolve that goes on from the warm adapter (and from earlier rounds) trained all their steps too
    chain = [last.out] if cfg.evolve.mode == "fresh" else [sft.out] + [e.out for e in evolves]
    matched = None
    if "sft_matched" in cfg.evaluate.models:
        matched = Step(
            BY_NAME["sft_matched"],
            stage_dir(run_dir, "sft_matched"),
            lambda: fp("sft_matched", [sft.fp], trained_steps(chain)),
            lambda out: run_sft_matched(ctx, out, trained_steps(chain), sft.out),
            (last,),
        )
        yield matched
    # each model evaluated, with the step that trained it; the adapters are named only when evaluate runs, as
    # the compute-matched one's fingerprint reads the trained steps, which a run of earlier stages has not made
    trained: dict[str, Step | None] = {
        "base": None,
        "warm": sft,
        "evolved": last,
        "sft_matched": matched,
        "members": sft,  # they live in sft's folder
    }
    roles = {"warm": "warm", "evolved": "evolved", "sft_matched": "matched"}

    def models() -> dict[str, Adapter | None]:
        out: dict[str, Adapter | None] = {}
        for m in cfg.evaluate.models:
            if m == "members":  # each of sft's other warm models under its own name
                out |= {a.role: a for a in members}
            else:
                out[m] = None if (s := trained[m]) is None else Adapter(roles[m], s.out, s.fp)
        return out

    summaries = [d.out for d in (last, sft, matched) if d is not None]
    yield Step(
        BY_NAME["evaluate"],
        stage_dir(run_dir, "evaluate"),
        lambda: fp("evaluate", [last.fp, sft.fp, matched.fp if matched else None]),
        lambda out: run_evaluate(ctx, out, models(), summaries, select.out if select else None),
        tuple(s for m in cfg.evaluate.models if (s := trained[m]) is not None),
    )


def run(ctx: RunContext, stages: tuple[str, ...] = COMMANDS, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run the asked-for stages in order (each skipped if finished); later ones require earlier ones done.

    ``shard`` (I, N): propagate only shard I of N of the first round not yet propagated, then stop.
    Everything that can be checked is checked before the run folder is touched; the folder's write lock is
    held throughout (shared between shard workers).
    """
    if world_size() > 1 and set(stages) - {"sft", "evolve"}:
        raise StageMissing(
            f"{', '.join(s for s in stages if s not in ('sft', 'evolve'))}: only sft and evolve run "
            "under accelerate launch; run the other stages in one process (propagate scales out "
            "with --shard)"
        )
    check_model_source(ctx.cfg, stages)
    with run_dir_lock(ctx.run_dir, shared=shard is not None), disk_errors("run_dir"):
        return _run(ctx, stages, shard)


def _run(ctx: RunContext, stages: tuple[str, ...], shard: tuple[int, int] | None) -> dict[str, Any]:
    write_run_header(ctx)
    result: dict[str, Any] = {}
    for step in steps(ctx):
        name = step.stage.name
        if step.command not in stages:
            continue
        if name == "select":  # propagate may have run as shards: merged once all are finished
            merge_shards(ctx, step.needs[0].out, step.needs[0].fp)
        for up in step.needs:
            need(up.out, up.fp, up.command)
        if name == "propagate" and shard is not None:
            if finished(step.out, step.fp):
                continue
            assert step.shard is not None
            step.shard(step.out, step.fp, shard=shard)
            return result
        if name == "propagate":
            merge_shards(ctx, step.out, step.fp)
        if step.stage.trains:
            _train_stage(ctx, step)
        else:
            _stage(ctx, step)
        if name == "evaluate":
            result["metrics"] = json.loads((step.out / "metrics.json").read_text())
    if ctx.timings and is_main():
        tf = ctx.run_dir / "timings.json"
        old = json.loads(tf.read_text()) if tf.exists() else {}
        atomic_write_json(tf, old | ctx.timings)
    if "evaluate" in stages:
        from .report import write_report

        result["report"] = write_report(ctx.run_dir)
        log(f"report: {result['report']}")
    return result


def _stage(ctx: RunContext, step: Step) -> bool:
    """Run ``step`` unless its folder is finished for its fingerprint. Returns True if it ran.

    ``.pending`` (holding the fingerprint) marks a stage in progress; the manifest, written last, marks it
    finished."""
    out, fp = step.out, step.fp
    if finished(out, fp):
        log(f"{out.name}: finished earlier, skipped")
        return False
    man = read_manifest(out)
    if man is not None and man.get("fingerprint") == fp and (problem := manifest_problem(out, man)):
        log(f"warning: {out.name}: {problem} (damaged or edited); the stage is done again")
    if not is_main():  # another process of a distributed training stage: rank 0 keeps the folder
        step.body(out)
        return True
    clear_unfinished(out, fp)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PENDING, fp)
    t = time.time()
    log(f"{out.name}: starting")
    with disk_errors(out.name):
        step.body(out)
        ctx.timings[out.name] = round(time.time() - t, 2)
        finish_stage(out, step.stage.name, fp, input_records(ctx.task))
    log(f"{out.name}: done in {ctx.timings[out.name]:.0f}s")
    return True


def _train_stage(ctx: RunContext, step: Step) -> None:
    """A training stage: in this process, or with ``sft.launcher: accelerate`` under ``accelerate launch``."""
    name, out = step.stage.name, step.out
    if not should_relaunch(ctx.cfg.sft) or finished(out, step.fp):
        _stage(ctx, step)
        return
    if ctx.cfg.evolve.rounds > 1:
        raise TrainingError(
            "sft.launcher: accelerate runs one evolve round (evolve.rounds 1); for more rounds start "
            "each stage under accelerate launch yourself"
        )
    log(f"{name}: starting under accelerate launch")
    t = time.time()
    code = relaunch(ctx.cfg.sft, name, ctx.run_dir / "config.yaml", ctx.quiet)
    if code != 0 or not finished(out, step.fp):
        raise TrainingError(f"{name}: accelerate launch ended with exit code {code} and the stage unfinished")
    ctx.timings[out.name] = round(time.time() - t, 2)


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("semievol", "torch", "transformers", "peft", "sentence-transformers", "numpy", "datasets", "gguf"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_run_header(ctx: RunContext) -> None:
    if not is_main():
        return
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ctx.run_dir / "config.yaml", yaml.safe_dump(to_dict(ctx.cfg), sort_keys=False))
    atomic_write_json(ctx.run_dir / "versions.json", versions())
    atomic_write_json(ctx.run_dir / "templates.json", TEMPLATE_IDS)
    atomic_write_json(ctx.run_dir / "data_warnings.json", ctx.task.warnings)  # skipped rows, overlaps, ...


def make_context(
    cfg: RunConfig, quiet: bool = False, need_test: bool = False, engine: Any = None, layers: Any = None
) -> RunContext:
    """The task loaded for ``cfg`` (its warnings logged) and the context the stages share, with recipe 'auto'
    resolved by the labeled rows' count. ``layers``: the command's defaults and the user's settings the config
    was built from (``cli.config_layers``); without them 'auto' keeps the settings the config holds ('paper')."""
    task = load_task(cfg.task, seed=cfg.seed, need_test=need_test, min_labeled=cfg.propagate.k)
    for w in task.warnings:
        log(f"warning: {w}")
    cfg = resolve_recipe(cfg, len(task.labeled), layers)
    return RunContext(cfg=cfg, task=task, run_dir=Path(cfg.run_dir), engine=engine, quiet=quiet)


def run_command(cfg: RunConfig, args: Any) -> int:
    """``semievol run`` and ``semievol demo``: every stage, then the summary table and the verdict."""
    from .stages.evaluate import summary_table

    layers = getattr(args, "config_layers", None)
    res = run(make_context(cfg, quiet=args.quiet, need_test=True, layers=layers), COMMANDS)
    if "metrics" in res:
        print(summary_table(res["metrics"]))
    return 0


def stage_command(cfg: RunConfig, args: Any) -> int:
    """``semievol sft|propagate|select|evolve|evaluate``: that stage alone (``--shard I/N`` for propagate)."""
    run(
        make_context(
            cfg,
            quiet=args.quiet,
            need_test=args.command == "evaluate",
            layers=getattr(args, "config_layers", None),
        ),
        (args.command,),
        shard=getattr(args, "shard", None),
    )
    return 0
