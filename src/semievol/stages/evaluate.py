"""Evaluation: test accuracy of base, warm, evolved and compute-matched models with 95% Wilson intervals,
the verdict (evolved against warm and against the control, paired over the test rows), and the accuracy of
the pseudo-labels (all, selected, and against coverage as the threshold moves) where the unlabeled split
carries gold answers. Test answers use temperature 0: argmax over options, greedy decoding for free-form.
``evaluate_model`` is shared with ``semievol eval``, so both write one record format.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..answers import LETTERS, answers_match, extract_free
from ..config import RunConfig
from ..engines import Engine, engine_for
from ..jsonio import atomic_write_json, atomic_write_jsonl, read_jsonl
from ..models import ModelError
from ..progress import log
from ..prompts import answer_prompt
from ..runctx import Adapter, RunContext
from ..rundir import StageMissing
from ..tasks import Example, load_task, subsample


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(a: list[bool], b: list[bool], draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Accuracy of A minus B on the same rows, with a 95% paired bootstrap interval over the rows."""
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(x) == 0:
        return {"difference": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(draws, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "difference": float(x.mean()),
        "ci95": [float(lo), float(hi)],
        "n": len(x),
        "only_a": int((x > 0).sum()),
        "only_b": int((x < 0).sum()),
    }


VERDICT_AGAINST = {
    "warm": "the warm model (SFT on the labeled rows)",
    "sft_matched": "SFT trained as many steps on the labeled rows alone",
}


def verdict(
    correct: dict[str, list[bool]], members_as_long: bool = False, ensemble: list[bool] | None = None
) -> dict[str, Any] | None:
    """The evolved model against the warm model, the compute-matched control and, where sft.members' other warm
    models were evaluated (``member1``, ...), the mean of the warm models: paired differences on the test rows
    and one sentence each. ``members_as_long``: each warm model trained as many steps as the evolved one.
    ``ensemble``: whether the warm models served together (``ensemble_correct``) answered each row right. None
    without an evolved model and one to compare it with."""
    seeds = ["warm"] + sorted(k for k in correct if k.startswith("member")) if "warm" in correct else []
    if "evolved" not in correct or not set(VERDICT_AGAINST) & set(correct):
        return None
    evolved = correct["evolved"]
    # (what, in words, the paired difference, what the sentence adds)
    against = dict(VERDICT_AGAINST)
    if members_as_long and len(seeds) == 1:  # one warm model, as many steps as the fresh evolved one: the control
        against["warm"] += ", trained as many steps as the evolved model: the compute-matched control, one seed"
    compared = [(o, w, paired_difference(evolved, correct[o]), "") for o, w in against.items() if o in correct]
    if len(seeds) > 1:  # the seed-covering control: each row's correctness averaged over the warm models
        accs = [100 * float(np.mean(correct[k])) for k in seeds]
        words = f"the mean of {len(seeds)} warm models (SFT on the labeled rows, {len(seeds)} training seeds" + (
            ", each trained as many steps as the evolved model)" if members_as_long else ")"
        )
        share = np.mean([correct[k] for k in seeds], axis=0).tolist()
        spread = f"; the warm models {min(accs):.1f} to {max(accs):.1f}%"
        compared.append(("warm_models", words, paired_difference(evolved, share), spread))
    if ensemble is not None and len(seeds) > 1:  # what a user who kept every warm model could serve instead
        words = f"the {len(seeds)} warm models served together (the mean of their option distributions)"
        compared.append(
            (
                "warm_ensemble",
                words,
                paired_difference(evolved, ensemble),
                f"; that ensemble {100 * float(np.mean(ensemble)):.1f}%",
            )
        )
    out: dict[str, Any] = {"lines": []}
    for other, words, d, spread in compared:
        lo, hi = d["ci95"]
        call = "better than" if lo > 0 else "worse than" if hi < 0 else "not distinguishable from"
        out[other] = d
        out["lines"].append(
            f"The evolved model is {call} {words}: {100 * d['difference']:+.1f} points "
            f"(95% paired interval {100 * lo:+.1f} to {100 * hi:+.1f}, {d['n']} test rows{spread})."
        )
    # the baseline a user must beat: say that it was not run, and how to run it (unless the warm model(s) are it)
    if "sft_matched" not in correct and not (members_as_long and seeds):
        out["lines"].append(
            "Not compared with SFT trained as many steps on the labeled rows alone, the control a gain must beat: "
            "add sft_matched to evaluate.models (one more adapter, trained as long as sft and evolve together)."
        )
    return out


def ensemble_correct(preds: list[list[dict[str, Any]]]) -> list[bool] | None:
    """Per test row, whether the mean of several models' option distributions puts its top on the gold letter;
    None where a model has no distributions (free-form tasks)."""
    if not preds or any("dist" not in p for rows in preds for p in rows):
        return None
    mean = np.mean([[p["dist"] for p in rows] for rows in preds], axis=0)
    return [LETTERS[int(k)] == p["gold"] for k, p in zip(mean.argmax(axis=1), preds[0], strict=True)]


def accuracy_record(correct: list[bool]) -> dict[str, Any]:
    k, n = sum(correct), len(correct)
    lo, hi = wilson(k, n)
    return {"accuracy": k / n if n else float("nan"), "correct": k, "n": n, "ci95": [lo, hi]}


def predict(
    engine: Engine, examples: list[Example], kind: str, adapter: str | None, max_new_tokens: int, numeric: bool = False
) -> list[dict[str, Any]]:
    """One prediction per example at temperature 0. ``numeric``: the answers are numbers (see ``extract_free``)."""
    prompts = [answer_prompt(e, kind) for e in examples]
    out = []
    if kind == "choice":
        dists = engine.score_options(prompts, [len(e.options or []) for e in examples], adapter)
        for e, d in zip(examples, dists, strict=True):
            pred = LETTERS[int(np.argmax(d))]
            out.append(
                {
                    "id": e.id,
                    "pred": pred,
                    "gold": e.answer,
                    "correct": pred == e.answer,
                    "dist": [round(float(x), 5) for x in d],
                }
            )
    else:
        samples = [r[0] for r in engine.generate(prompts, 1, 0.0, 0, max_new_tokens, adapter)]
        for e, s in zip(examples, samples, strict=True):
            free = extract_free(s.text, numeric)
            out.append(
                {
                    "id": e.id,
                    "pred": free,
                    "gold": e.answer,
                    "correct": answers_match(free, e.answer, kind),
                    "text": s.text,
                }
            )
    return out


def counts(values: list[Any]) -> dict[str, int]:
    """How often each value occurs, by value (None counts as 'None')."""
    return dict(sorted(Counter(str(v) for v in values).items()))


def gold_nll(examples: list[Example], preds: list[dict[str, Any]]) -> float:
    """Mean negative log-probability the model gives the gold option (NaN without gold letters)."""
    nll = [
        -math.log(max(p["dist"][LETTERS.index(e.answer)], 1e-12))
        for e, p in zip(examples, preds, strict=True)
        if e.answer is not None and e.answer in LETTERS[: len(p["dist"])]
    ]
    return sum(nll) / len(nll) if nll else float("nan")


def class_recall(preds: list[dict[str, Any]]) -> dict[str, Any]:
    """``recall``: gold answer -> the share of its test rows the model answered right (a model that answers one
    class everywhere scores 1 there and 0 elsewhere, whatever its accuracy); ``balanced_accuracy``: their mean."""
    rows = Counter(str(p["gold"]) for p in preds)
    right = Counter(str(p["gold"]) for p in preds if p["correct"])
    recall = {g: right[g] / n for g, n in sorted(rows.items())}
    return {"recall": recall, "balanced_accuracy": sum(recall.values()) / len(recall) if recall else float("nan")}


def evaluate_model(
    engine: Engine, examples: list[Example], kind: str, adapter: str | None, max_new_tokens: int, numeric: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Predictions on ``examples`` and their record: accuracy with its interval, seconds, how often each
    answer was predicted and, for multiple choice, the gold option's mean NLL (which tells apart models
    whose accuracies tie, say two that answer the majority class everywhere) and each gold class's recall
    with their mean, the balanced accuracy (which no answering of the common classes alone can raise)."""
    t = time.time()
    preds = predict(engine, examples, kind, adapter, max_new_tokens, numeric)
    rec = accuracy_record([p["correct"] for p in preds])
    rec["seconds"] = round(time.time() - t, 2)
    rec["prediction_counts"] = counts([p["pred"] for p in preds])
    if kind == "choice":
        rec["gold_counts"] = counts([e.answer for e in examples])
        rec["gold_nll"] = gold_nll(examples, preds)
        rec |= class_recall(preds)
    return preds, rec


def run_evaluate(
    ctx: RunContext, out: Path, models: dict[str, Adapter | None], trained: list[Path], select_dir: Path | None
) -> None:
    """Write ``metrics.json`` and ``predictions_<model>.jsonl`` into ``out``.

    ``models``: the name of each model to evaluate and its adapter (None: the base model); ``trained``:
    the stage folders whose training summaries the metrics carry; ``select_dir``: the last round's select
    output, whose pseudo-labels are scored where the unlabeled split has gold answers."""
    cfg, task = ctx.cfg, ctx.task
    if task.test is None:
        raise StageMissing("evaluate: the task has no test split (set task.test, or a preset with task.data_dir)")
    examples = subsample(task.test.examples, cfg.evaluate.limit, cfg.seed) if cfg.evaluate.limit else task.test.examples
    engine = ctx.cached_engine()
    metrics: dict[str, Any] = {"task": task.name, "kind": task.kind, "models": {}}
    right: dict[str, list[bool]] = {}
    warm_preds: list[list[dict[str, Any]]] = []  # the warm model's and every member's, for their ensemble
    for name, adapter in models.items():
        preds, rec = evaluate_model(
            engine,
            examples,
            task.kind,
            ctx.adapter(adapter) if adapter else None,
            cfg.model.max_new_tokens,
            task.numeric,
        )
        atomic_write_jsonl(out / f"predictions_{name}.jsonl", preds)
        right[name] = [bool(p["correct"]) for p in preds]
        if name == "warm" or name.startswith("member"):
            warm_preds.append(preds)
        metrics["models"][name] = rec
        log(
            f"evaluate: {name} accuracy {rec['accuracy']:.3f} (95% CI {rec['ci95'][0]:.3f}-{rec['ci95'][1]:.3f}, "
            f"n={rec['n']})"
        )
    ensemble = ensemble_correct(warm_preds) if len(warm_preds) > 1 else None
    if ensemble is not None:
        metrics["warm_ensemble"] = accuracy_record(ensemble)
    said = verdict(right, members_as_long=members_trained_as_long(ctx, trained), ensemble=ensemble)
    if said:
        metrics["verdict"] = said
        for line in said["lines"]:
            log(f"evaluate: {line}")
    for d in trained:
        if (d / "train_summary.json").exists():
            metrics.setdefault("training", {})[d.name] = json.loads((d / "train_summary.json").read_text())
    if select_dir is not None and (select_dir / "pseudo_labels.jsonl").exists():
        metrics["pseudo_labels"] = pseudo_label_metrics(read_jsonl(select_dir / "pseudo_labels.jsonl"))
        metrics["selection"] = json.loads((select_dir / "selection.json").read_text())
    atomic_write_json(out / "metrics.json", metrics)


def members_trained_as_long(ctx: RunContext, trained: list[Path]) -> bool:
    """Whether each warm model took as many optimizer steps as the evolved model (evolve from the base model
    for the warm model's steps): then the warm models are compute-matched controls, one per seed."""
    steps = {
        d.name: json.loads((d / "train_summary.json").read_text())["steps"]
        for d in trained
        if (d / "train_summary.json").exists()
    }
    return ctx.cfg.evolve.mode == "fresh" and "sft" in steps and steps.get("evolve") == steps["sft"]


def pseudo_label_metrics(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Accuracy of all and selected pseudo-labels, per configuration, and against coverage."""
    gold = [r for r in records if "gold" in r]
    if not gold:
        return None
    sel = [r for r in gold if r["selected"]]
    out: dict[str, Any] = {
        "all": accuracy_record([r["correct"] for r in gold]),
        "selected": accuracy_record([r["correct"] for r in sel]) if sel else None,
        "coverage": len(sel) / len(gold),
        "agreement_rate": sum(r["unanimous"] for r in gold) / len(gold),
    }
    configs: dict[str, list[bool]] = {}
    for r in gold:
        for v in r["votes"]:
            configs.setdefault(v["config"], []).append(
                answers_match(v["answer"], r["gold"], "choice" if r["options"] else "free")
            )
    out["per_config"] = {c: accuracy_record(v) for c, v in configs.items()}
    ranked = sorted(gold, key=lambda r: r["score"])
    curve = []
    for pct in range(10, 101, 10):
        m = max(1, round(len(ranked) * pct / 100))
        top = ranked[:m]
        curve.append(
            {
                "coverage": pct / 100,
                "n": m,
                "accuracy": sum(r["correct"] for r in top) / m,
                "max_score": top[-1]["score"],
            }
        )
    out["accuracy_vs_coverage"] = curve
    return out


def summary_table(m: dict[str, Any]) -> str:
    balanced = all("balanced_accuracy" in rec for rec in m["models"].values())  # multiple choice only
    rows = [
        "| model | accuracy | 95% interval |" + (" balanced accuracy |" if balanced else "") + " n |",
        "|---|---|---|" + ("---|" if balanced else "") + "---|",
    ]
    for name, rec in m["models"].items():
        rows.append(
            f"| {name} | {100 * rec['accuracy']:.1f}% | {100 * rec['ci95'][0]:.1f}-{100 * rec['ci95'][1]:.1f}% |"
            + (f" {100 * rec['balanced_accuracy']:.1f}% |" if balanced else "")
            + f" {rec['n']} |"
        )
    pl = m.get("pseudo_labels")
    if pl:
        sel = pl["selected"]
        rows.append("")
        rows.append("| pseudo-labels | accuracy | n |")
        rows.append("|---|---|---|")
        rows.append(f"| all | {100 * pl['all']['accuracy']:.1f}% | {pl['all']['n']} |")
        if sel:
            rows.append(f"| selected | {100 * sel['accuracy']:.1f}% | {sel['n']} |")
        for c, rec in pl["per_config"].items():
            rows.append(f"| config {c} | {100 * rec['accuracy']:.1f}% | {rec['n']} |")
    if m.get("verdict"):
        rows += [""] + m["verdict"]["lines"]
    return "\n".join(rows)


def eval_command(cfg: RunConfig, args: Any) -> int:
    """``semievol eval``: one model (the base, or with ``--adapter``) on the test split, its record written
    to ``--out`` (default RUN_DIR/eval_<task>.json) in the evaluate stage's format."""
    task = load_task(cfg.task, seed=cfg.seed, only_test=True)  # no labeled or unlabeled split is needed
    assert task.test is not None
    examples = subsample(task.test.examples, cfg.evaluate.limit, cfg.seed)
    engine = engine_for(cfg.model, quiet=args.quiet)
    name = None
    if args.adapter:
        if not (Path(args.adapter) / "adapter_config.json").exists():
            raise ModelError(f"{args.adapter}: not a PEFT adapter folder (no adapter_config.json)")
        engine.add_adapter("eval", args.adapter)
        name = "eval"
    _, rec = evaluate_model(engine, examples, task.kind, name, cfg.model.max_new_tokens, task.numeric)
    rec.update({"task": task.name, "model": cfg.model.model, "adapter": args.adapter, "split": task.test.source})
    dest = Path(args.out) if args.out else Path(cfg.run_dir) / f"eval_{task.name}.json"
    atomic_write_json(dest, rec)
    lo, hi = rec["ci95"]
    print(
        f"{task.name}: accuracy {100 * rec['accuracy']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%), "
        f"n={rec['n']}, {rec['seconds']:.0f}s -> {dest}"
    )
    return 0
