"""Runs the stages of the method over a run directory, resumably.

Layout (round 1; later rounds add ``propagate_r2``, ``select_r2``, ``evolve_r2``, ...)::

    RUN_DIR/config.yaml  versions.json  templates.json
    RUN_DIR/sft/         warm adapter (PEFT folder), train_log.jsonl, manifest.json
    RUN_DIR/propagate/   votes.jsonl, configs.json, embedding caches, manifest.json
    RUN_DIR/select/      pseudo_labels.jsonl, selection.json, manifest.json
    RUN_DIR/evolve/      evolved adapter, train_data.jsonl, train_log.jsonl, manifest.json
    RUN_DIR/evaluate/    metrics.json, predictions_<model>.jsonl, manifest.json
    RUN_DIR/cache/       model_calls.jsonl (select's and evaluate's model calls, keyed by model, adapter, prompt)

Each stage's fingerprint hashes the settings it reads and its upstream fingerprints; a stage whose manifest
carries the current fingerprint is skipped, so a changed setting re-runs that stage and those downstream.
Every file is written under a temporary name and renamed; a stage in progress holds ``.pending`` and a
finished one its manifest, written last. A killed stage is redone on the next run, except that propagate
resumes from the rows already in ``votes.jsonl`` and model calls already in the cache are not repeated.

Propagate can also be split between independent workers: ``semievol propagate --shard I/N`` votes on the
I-th of N contiguous ranges of unlabeled rows into ``propagate/votes.shard-I-of-N.jsonl`` and marks it
finished with ``votes.shard-I-of-N.jsonl.done``; the next ``select`` (or ``run``) checks that all N are
finished for the current settings, concatenates them into ``votes.jsonl`` (byte-identical to a single
worker's, since votes are seeded per row) and marks propagate finished.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from .config import EvolveConfig, RunConfig, to_dict
from .distributed import is_main, relaunch, should_relaunch, world_size
from .progress import log
from .prompts import TEMPLATE_IDS
from .runctx import (
    RunContext,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    fingerprint,
    fingerprint_items,
    finish_stage,
    input_records,
    is_done,
    iter_jsonl,
    manifest_problem,
    model_settings_key,
    read_jsonl,
    read_manifest,
    tmp_name,
)
from .rundir_guard import check_model_source, disk_errors, file_lock, not_owned, owned_stage_dir, run_dir_lock
from .stages.evaluate import accuracy_record, counts, gold_nll, predict, pseudo_label_metrics, verdict
from .stages.propagate import run_propagate, shard_file, shard_rows
from .stages.select import run_select, selected_examples
from .stages.sft import run_sft
from .tasks import Example, load_task
from .training import TrainingError

STAGES = ("sft", "propagate", "select", "evolve", "evaluate")


class StageMissing(RuntimeError):
    """A stage was asked for before the stage it needs has finished."""


# training settings that say where or in how much memory training runs, not what it computes: not part of
# any fingerprint, so a run that ran out of memory resumes with a smaller micro_batch_tokens
LAUNCH_ONLY = {"launcher", "accelerate_config", "num_processes", "report_to", "micro_batch_tokens",
               "gradient_checkpointing"}


def _train_key(cfg: RunConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg.sft).items() if k not in LAUNCH_ONLY}


# options added after runs existed: left out of the fingerprint at their defaults, so such runs stay finished
SELECT_OPTIONAL = ("candidates_only", "calibrate", "fair_order", "vote", "align")
EVOLVE_OPTIONAL = ("train_epochs", "labeled_repeat", "targets", "sharpen", "weighting")


def _without_defaults(section: Any, optional: tuple[str, ...]) -> dict[str, Any]:
    """The section's settings, less the ``optional`` ones that sit at their defaults."""
    default = asdict(type(section)())
    return {k: v for k, v in asdict(section).items() if not (k in optional and v == default[k])}


def _select_key(cfg: RunConfig) -> dict[str, Any]:
    return _without_defaults(cfg.select, SELECT_OPTIONAL)


def _evolve_key(cfg: RunConfig) -> dict[str, Any]:
    return _without_defaults(cfg.evolve, EVOLVE_OPTIONAL) | {"rounds": None}


def _model_key(cfg: RunConfig) -> dict[str, Any]:
    return model_settings_key(asdict(cfg.model))


def _task_key(ctx: RunContext) -> dict[str, Any]:
    t = ctx.task
    def digest(split):
        return None if split is None else fingerprint([(e.id, e.question, e.options, e.answer, e.rationale) for e in split.examples])
    def digest_unlabeled(split):  # gold answers of the unlabeled split must not change any fingerprint
        return fingerprint_items((e.id, e.question, e.options) for e in split.iter_examples())
    return {"kind": t.kind, "labeled": digest(t.labeled), "unlabeled": digest_unlabeled(t.unlabeled),
            "test": digest(t.test)}


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


# Files a stage appends to or reuses when it is restarted for the same fingerprint; everything else in an
# unfinished stage folder is removed and redone.
_RESUMABLE = ("votes.jsonl",)


def _keeps_on_restart(name: str) -> bool:
    return name == ".pending" or name in _RESUMABLE or (name.startswith("emb_") and name.endswith(".npy"))


def _clear_unfinished(out: Path, fp: str) -> None:
    """Prepare ``out`` for a stage that has not finished for ``fp``.

    A folder finished or started for other settings is removed; one started for the same settings (a
    killed run) keeps only what resumes (``votes.jsonl`` and the embedding caches), so the rest is redone.
    """
    if not out.exists():
        return
    if not owned_stage_dir(out):
        raise not_owned(out)
    pending = out / ".pending"
    if (out / "manifest.json").exists() or not pending.exists() or pending.read_text() != fp:
        shutil.rmtree(out)
        return
    for p in out.iterdir():
        if _keeps_on_restart(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _stage(ctx: RunContext, name: str, out: Path, fp: str, body, force: bool = False) -> bool:
    """Run ``body(out)`` unless ``out`` is finished for ``fp``. Returns True if it ran.

    ``.pending`` (holding ``fp``) marks a stage in progress; the manifest, written last, marks it finished.
    """
    if not force and is_done(out, fp):
        log(f"{out.name}: finished earlier, skipped")
        return False
    man = read_manifest(out)
    if man is not None and man.get("fingerprint") == fp and (problem := manifest_problem(out, man)):
        log(f"warning: {out.name}: {problem} (damaged or edited); the stage is done again")
    if not is_main():  # another process of a distributed training stage: rank 0 keeps the folder
        body(out)
        return True
    _clear_unfinished(out, fp)
    out.mkdir(parents=True, exist_ok=True)
    pending = out / ".pending"
    atomic_write_text(pending, fp)
    t = time.time()
    log(f"{out.name}: starting")
    with disk_errors(out.name):
        body(out)
        ctx.timings[out.name] = round(time.time() - t, 2)
        finish_stage(out, name, fp, input_records(ctx.task))
    log(f"{out.name}: done in {ctx.timings[out.name]:.0f}s")
    return True


def _train_stage(ctx: RunContext, name: str, out: Path, fp: str, body) -> None:
    """A training stage: in this process, or with ``sft.launcher: accelerate`` under ``accelerate launch``."""
    if not should_relaunch(ctx.cfg.sft) or is_done(out, fp):
        _stage(ctx, name, out, fp, body)
        return
    if ctx.cfg.evolve.rounds > 1:
        raise TrainingError("sft.launcher: accelerate runs one evolve round (evolve.rounds 1); for more rounds start "
                            "each stage under accelerate launch yourself")
    log(f"{name}: starting under accelerate launch")
    t = time.time()
    code = relaunch(ctx.cfg.sft, name, ctx.run_dir / "config.yaml", ctx.quiet)
    if code != 0 or not is_done(out, fp):
        raise TrainingError(f"{name}: accelerate launch ended with exit code {code} and the stage unfinished")
    ctx.timings[out.name] = round(time.time() - t, 2)


def _need(out: Path, fp: str, what: str) -> None:
    man = read_manifest(out)
    if man is not None and man.get("fingerprint") == fp and (problem := manifest_problem(out, man)):
        raise StageMissing(f"{out}: {problem}: damaged or edited since the {what} stage finished; run "
                           f"`semievol {what}` (or `semievol run`) to redo it")
    if not is_done(out, fp):
        raise StageMissing(f"{out}: the {what} stage has not finished for this config; run `semievol {what}` (or `semievol run`) first")


def make_context(cfg: RunConfig, quiet: bool = False, need_test: bool = False, engine=None) -> RunContext:
    task = load_task(cfg.task, seed=cfg.seed, need_test=need_test, min_labeled=cfg.propagate.k)
    for w in task.warnings:
        log(f"warning: {w}")
    return RunContext(cfg=cfg, task=task, run_dir=Path(cfg.run_dir), engine=engine, quiet=quiet)


def run(ctx: RunContext, stages: tuple[str, ...] = STAGES, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run the asked-for stages in order (each skipped if finished); later ones require earlier ones done.

    ``shard`` (I, N): propagate only shard I of N of the first round not yet propagated, then stop.
    Everything that can be checked is checked before the run folder is touched; the folder's write lock is
    held throughout (shared between shard workers).
    """
    if world_size() > 1 and set(stages) - {"sft", "evolve"}:
        raise StageMissing(f"{', '.join(s for s in stages if s not in ('sft', 'evolve'))}: only sft and evolve run under "
                           "accelerate launch; run the other stages in one process (propagate scales out with --shard)")
    check_model_source(ctx.cfg, stages)
    with run_dir_lock(ctx.run_dir, shared=shard is not None), disk_errors("run_dir"):
        return _run(ctx, stages, shard)


def _run(ctx: RunContext, stages: tuple[str, ...], shard: tuple[int, int] | None) -> dict[str, Any]:
    cfg = ctx.cfg
    write_run_header(ctx)
    result: dict[str, Any] = {}
    base_fp = fingerprint(_model_key(cfg), _task_key(ctx), cfg.seed)
    tpl = TEMPLATE_IDS

    # ---- sft (in-weight propagation)
    sft_dir = ctx.stage_dir("sft")
    sft_fp = fingerprint("sft", base_fp, _train_key(cfg), tpl[ctx.task.kind])
    ctx.fingerprints["warm"] = sft_fp
    if "sft" in stages:
        _train_stage(ctx, "sft", sft_dir, sft_fp, lambda out: run_sft(ctx, out))
    pool: list[Example] = list(ctx.task.labeled.examples)
    warm_dir, warm_fp = sft_dir, sft_fp
    upstream = sft_fp
    evolve_dir = None
    for r in range(1, cfg.evolve.rounds + 1):
        # ---- propagate
        p_dir = ctx.stage_dir("propagate", r)
        p_fp = fingerprint("propagate", upstream, warm_fp, asdict(cfg.propagate), cfg.model.embedder, len(pool),
                           tpl["demos"])
        ctx.fingerprints["warm"] = warm_fp
        if "propagate" in stages:
            _need(warm_dir, warm_fp, "sft" if r == 1 else "evolve")
            if shard is not None:
                if not is_done(p_dir, p_fp):
                    propagate_shard(ctx, p_dir, p_fp, pool, warm_dir, shard)
                    return result
            else:
                merge_shards(ctx, p_dir, p_fp)
                _stage(ctx, "propagate", p_dir, p_fp, lambda out: run_propagate(ctx, out, pool, warm_dir))
        # ---- select
        s_dir = ctx.stage_dir("select", r)
        s_fp = fingerprint("select", p_fp, _select_key(cfg), tpl["justify_" + ctx.task.kind])
        if "select" in stages:
            merge_shards(ctx, p_dir, p_fp)
            _need(p_dir, p_fp, "propagate")
            _stage(ctx, "select", s_dir, s_fp, lambda out: run_select(ctx, p_dir / "votes.jsonl", out, warm_dir))
        # ---- evolve
        e_dir = ctx.stage_dir("evolve", r)
        # rounds after the first changed their training data when rows selected twice stopped being doubled
        # (with_pseudo), so their fingerprint changed too; round 1's is as it was
        e_fp = fingerprint("evolve", s_fp, _train_key(cfg), _evolve_key(cfg),
                           *(["pool: each unlabeled row once"] if r > 1 else []))
        if "evolve" in stages:
            _need(s_dir, s_fp, "select")
            _train_stage(ctx, "evolve", e_dir, e_fp, lambda out: run_evolve(ctx, out, pool, s_dir, warm_dir))
        if is_done(s_dir, s_fp):
            chosen = selected_examples(s_dir / "pseudo_labels.jsonl", ctx.task.unlabeled)
            pool = with_pseudo(pool, chosen, len(ctx.task.labeled.examples))
        warm_dir, warm_fp, upstream = e_dir, e_fp, e_fp
        evolve_dir = e_dir
    # ---- compute-matched SFT: the labeled split alone for as many optimizer steps as the final evolve took,
    # so that a gain of the evolved model over SFT cannot be more training steps in disguise
    matched = None
    if "evaluate" in stages and "sft_matched" in cfg.evaluate.models:
        _need(evolve_dir, upstream, "evolve")
        # an evolve that goes on from the warm adapter (and from earlier rounds) trained all their steps too
        chain = ([evolve_dir] if cfg.evolve.mode == "fresh" else
                 [sft_dir] + [ctx.stage_dir("evolve", r) for r in range(1, cfg.evolve.rounds + 1)])
        steps = sum(json.loads((d / "train_summary.json").read_text())["steps"] for d in chain)
        m_dir = ctx.stage_dir("sft_matched")
        m_fp = fingerprint("sft_matched", sft_fp, steps)
        _stage(ctx, "sft_matched", m_dir, m_fp,
               lambda out: run_sft(ctx, out, max_steps=steps, desc="sft_matched"))
        matched = (m_dir, m_fp)
    # ---- evaluate
    if "evaluate" in stages:
        v_dir = ctx.stage_dir("evaluate")
        v_fp = fingerprint("evaluate", upstream, sft_fp, asdict(cfg.evaluate), matched and matched[1])
        if "evolved" in cfg.evaluate.models:
            _need(evolve_dir, upstream, "evolve")
        _stage(ctx, "evaluate", v_dir, v_fp, lambda out: run_evaluate(ctx, out, sft_dir, sft_fp, evolve_dir, upstream,
                                                                           s_dir, matched))
        result["metrics"] = json.loads((v_dir / "metrics.json").read_text())
    if ctx.timings and is_main():
        old = {}
        tf = ctx.run_dir / "timings.json"
        if tf.exists():
            old = json.loads(tf.read_text())
        atomic_write_json(tf, old | ctx.timings)
    if "evaluate" in stages:
        from .report import write_report

        result["report"] = write_report(ctx.run_dir)
        log(f"report: {result['report']}")
    return result


_SHARD = re.compile(r"votes\.shard-(\d+)-of-(\d+)\.jsonl(\.done|\.pending)?")


def propagate_shard(ctx: RunContext, out: Path, fp: str, pool: list[Example], warm_dir: Path,
                    shard: tuple[int, int]) -> None:
    """One worker's share of propagate: shard I of N, resumable, marked finished by its ``.done`` file."""
    name = shard_file(shard)
    votes, done, pending = out / name, out / f"{name}.done", out / f"{name}.pending"
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / f"{name}.lock", f"propagate --shard {shard[0]}/{shard[1]}"), disk_errors("propagate"):
        made_for = (json.loads(done.read_text())["fingerprint"] if done.exists()
                    else pending.read_text() if pending.exists() else fp)
        if made_for != fp:  # left by other settings: this shard starts again
            for p in (votes, done, pending):
                p.unlink(missing_ok=True)
        if done.exists():
            log(f"propagate: shard {shard[0]} of {shard[1]} finished earlier, skipped")
            return
        atomic_write_text(pending, fp)
        t = time.time()
        run_propagate(ctx, out, pool, warm_dir, shard=shard)
        with open(votes, "rb") as f:
            rows = sum(1 for _ in f)
        atomic_write_json(done, {"fingerprint": fp, "shard": list(shard), "rows": rows})
        pending.unlink()
    log(f"propagate: shard {shard[0]} of {shard[1]} done ({rows} rows) in {time.time() - t:.0f}s")


def merge_shards(ctx: RunContext, out: Path, fp: str) -> None:
    """Concatenate finished shards into ``votes.jsonl`` and mark propagate finished; nothing without shards.

    A shard that is missing, unfinished, incomplete or made for other settings stops the run (StageMissing)."""
    if is_done(out, fp) or not out.is_dir():
        return
    counts = sorted({int(m.group(2)) for p in out.iterdir() if (m := _SHARD.fullmatch(p.name))})
    if not counts:
        return
    if len(counts) > 1:
        raise StageMissing(f"{out}: shards of {' and of '.join(map(str, counts))} are mixed; remove the stale ones")
    n, total = counts[0], len(ctx.task.unlabeled)
    for i in range(1, n + 1):
        name = shard_file((i, n))
        done = out / f"{name}.done"
        expected = len(shard_rows(total, (i, n)))
        if not done.exists():
            how = "unfinished" if (out / name).exists() else "missing"
        else:
            made = json.loads(done.read_text())
            how = ("made for other settings" if made["fingerprint"] != fp else
                   f"incomplete ({made['rows']} of {expected} rows)" if made["rows"] != expected else "")
        if how:
            raise StageMissing(f"propagate: shard {i} of {n} is {how} ({out / name}); "
                               f"run `semievol propagate --shard {i}/{n}` with the same config first")
    merged = out / "votes.jsonl"
    tmp = tmp_name(merged)
    with open(tmp, "wb") as f:
        for i in range(1, n + 1):
            with open(out / shard_file((i, n)), "rb") as part:
                shutil.copyfileobj(part, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, merged)
    for i in range(1, n + 1):  # no shard worker runs now: this process holds the run folder's lock alone
        (out / shard_file((i, n))).unlink()
        (out / f"{shard_file((i, n))}.done").unlink()
        (out / f"{shard_file((i, n))}.lock").unlink(missing_ok=True)
    finish_stage(out, "propagate", fp, input_records(ctx.task))
    log(f"propagate: merged {n} shards ({total} rows)")


def with_pseudo(pool: list[Example], chosen: list[Example], n_gold: int) -> list[Example]:
    """The pool (its first ``n_gold`` rows labeled by hand, the rest pseudo-labelled in earlier rounds) with
    this round's selected rows, each unlabeled row once: a row selected again keeps its place and takes the
    newer label, which the later round's model gave. (Appending them twice trained round 2 on 85 rows of
    FPB twice over, some with two different answers.)"""
    pseudo = {e.id: e for e in pool[n_gold:]}
    for e in chosen:
        pseudo[e.id] = e
    return pool[:n_gold] + list(pseudo.values())


def run_evolve(ctx: RunContext, out: Path, pool: list[Example], select_dir: Path, warm_dir: Path) -> None:
    """Train the evolved adapter: fresh from the base model on pool + selected, or continue the warm one."""
    from dataclasses import replace

    from .models import resolve_model
    from .stages.sft import labeled_pairs, tensorboard_dir
    from .training import train_lora

    cfg, ecfg = ctx.cfg, ctx.cfg.evolve
    pseudo_path = select_dir / "pseudo_labels.jsonl"
    chosen = selected_examples(pseudo_path, ctx.task.unlabeled)
    n_gold = len(ctx.task.labeled.examples)
    tcfg = replace(cfg.sft, epochs=ecfg.train_epochs) if ecfg.train_epochs > 0 else cfg.sft
    if ecfg.mode == "continue":
        data, gold, init, lr = chosen, 0, warm_dir, ecfg.continue_lr
    else:
        data, gold = with_pseudo(pool, chosen, n_gold), n_gold
        init, lr = (warm_dir, None) if ecfg.mode == "warm_start" else (None, None)
    if ecfg.labeled_repeat > 1:  # the labeled rows first, repeated; the batches are shuffled in training
        data, gold = data[:gold] * ecfg.labeled_repeat + data[gold:], gold * ecfg.labeled_repeat
    weights, soft = pseudo_targets(pseudo_path, data, gold, ecfg, ctx.task.kind)
    res = train_lora(resolve_model(cfg.model.model), labeled_pairs(data, ctx.task.kind, cfg.sft.use_rationale),
                     tcfg, out, seed=cfg.seed, init_adapter=init, lr=lr, desc="evolve",
                     log_dir=tensorboard_dir(ctx, out), weights=weights, soft=soft)
    if not is_main():
        return
    rows = [{"id": e.id, "question": e.question, "options": e.options, "answer": e.answer, "rationale": e.rationale,
             "source": "labeled" if i < gold else "pseudo"} for i, e in enumerate(data)]
    for i, r in enumerate(rows):
        if weights is not None:
            r["weight"] = round(weights[i], 6)
        if soft is not None and soft[i] is not None:
            r["soft_target"] = [round(x, 6) for x in soft[i]]
    atomic_write_jsonl(out / "train_data.jsonl", rows)
    log(f"evolve: {len(data)} examples ({len(data) - gold} pseudo-labelled), {res.steps} steps")


def pseudo_targets(pseudo_path: Path, data: list[Example], gold: int, ecfg: EvolveConfig,
                   kind: str) -> tuple[list[float] | None, list[list[float] | None] | None]:
    """Per-row loss weights and soft targets for the evolve data (the first ``gold`` rows labeled by hand:
    weight 1, hard); (None, None) when evolve trains plain hard targets."""
    soft_on = ecfg.targets == "soft" and kind == "choice"
    if ecfg.weighting == "none" and not soft_on:
        return None, None
    import numpy as np

    from .stages.select import row_distribution

    records = {r["id"]: r for r in iter_jsonl(pseudo_path) if r.get("answer") is not None}
    scores = np.asarray([r["score"] for r in records.values()], dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    mu, var = (float(scores.mean()), float(scores.var())) if len(scores) else (0.0, 0.0)
    weights: list[float] | None = [1.0] * len(data) if ecfg.weighting == "confidence" else None
    soft: list[list[float] | None] | None = [None] * len(data) if soft_on else None
    for i, e in enumerate(data[gold:], start=gold):
        rec = records.get(e.id)
        if rec is None:  # a row pseudo-labelled in an earlier round: its record is in that round's folder
            continue
        if weights is not None and rec["score"] > mu:
            weights[i] = math.exp(-((rec["score"] - mu) ** 2) / (2 * var)) if var > 0 else 1.0
        if soft is not None:
            p = np.asarray(row_distribution(rec), dtype=np.float64) ** (1.0 / ecfg.sharpen)
            soft[i] = [float(x) for x in p / p.sum()]
    return weights, soft


def run_evaluate(ctx: RunContext, out: Path, sft_dir: Path, sft_fp: str, evolve_dir: Path | None, evolve_fp: str,
                 select_dir: Path, matched: tuple[Path, str] | None = None) -> None:
    cfg = ctx.cfg
    test = ctx.task.test
    metrics: dict[str, Any] = {"task": ctx.task.name, "kind": ctx.task.kind, "models": {}}
    if test is None:
        raise StageMissing("evaluate: the task has no test split (set task.test, or a preset with task.data_dir)")
    examples = test.examples
    if cfg.evaluate.limit:
        from .tasks import subsample

        examples = subsample(examples, cfg.evaluate.limit, cfg.seed)
    engine = ctx.get_engine()
    right: dict[str, list[bool]] = {}
    for name in cfg.evaluate.models:
        if name == "base":
            adapter = None
        elif name == "warm":
            adapter = ctx.adapter(f"warm-{sft_fp}", sft_dir)
        elif name == "evolved":
            if evolve_dir is None or not (evolve_dir / "adapter_config.json").exists():
                continue
            adapter = ctx.adapter(f"evolved-{evolve_fp}", evolve_dir)
        else:  # sft_matched, trained by run() just before
            assert matched is not None, "sft_matched is trained before evaluation"
            adapter = ctx.adapter(f"matched-{matched[1]}", matched[0])
        t = time.time()
        preds = predict(engine, examples, ctx.task.kind, adapter, cfg.model.max_new_tokens, ctx.call_cache(),
                        ctx.task.numeric)
        atomic_write_jsonl(out / f"predictions_{name}.jsonl", preds)
        right[name] = [bool(p["correct"]) for p in preds]
        rec = accuracy_record([p["correct"] for p in preds])
        rec["seconds"] = round(time.time() - t, 2)
        rec["prediction_counts"] = counts([p["pred"] for p in preds])
        if ctx.task.kind == "choice":
            rec["gold_nll"] = gold_nll(examples, preds)
        metrics["models"][name] = rec
        log(f"evaluate: {name} accuracy {rec['accuracy']:.3f} (95% CI {rec['ci95'][0]:.3f}-{rec['ci95'][1]:.3f}, n={rec['n']})")
    said = verdict(right)
    if said:
        metrics["verdict"] = said
        for line in said["lines"]:
            log(f"evaluate: {line}")
    for sub in (evolve_dir, sft_dir, matched[0] if matched else None):
        if sub is not None and (sub / "train_summary.json").exists():
            metrics.setdefault("training", {})[sub.name] = json.loads((sub / "train_summary.json").read_text())
    pl = select_dir / "pseudo_labels.jsonl"
    if pl.exists():
        metrics["pseudo_labels"] = pseudo_label_metrics(read_jsonl(pl))
        metrics["selection"] = json.loads((select_dir / "selection.json").read_text())
    atomic_write_json(out / "metrics.json", metrics)


