"""Does one model trained on the warm ensemble's labels beat SFT trained as long? (issue 22, development rows)

``warm_ensemble.py`` trained five warm models on the same 64 labeled rows (other training seeds): their mean is
2.7 (FPB) and 4.0 (SST-2) development points above the average member, but it is five models. This distils it
through the unlabeled rows: a student LoRA, from the base model, trains on the labeled rows (``--labeled-repeat``
times) and every unlabeled row with the ensemble's mean distribution as its target (``--targets soft``) or its
argmax (``hard``), for as many optimizer steps as one member (same learning rate and schedule). One member is
then exactly the compute-matched control (SFT on the labeled rows alone, as many steps), and the five members
are five training seeds of it, so the comparison covers the seed as well as the rows. Students train with seeds
``seed + 7000 + 1000 * i``.

    python benchmarks/warm_ensemble.py --tasks fpb --members 5          # the teacher, first
    python benchmarks/ensemble_student.py --tasks fpb --students 2 --threads 1

Resumable: each student's adapter and predictions are kept under runs/ensemble_student; the JSON and page are
rebuilt from every finished student after each one (two processes side by side share them).
"""

from __future__ import annotations

# ruff: noqa: E402 (the modules beside this file are importable only after the sys.path line)
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from recipe_runs import machine
from warm_ensemble import RUNS as TEACHERS
from warm_ensemble import dev_arguments, dev_cell, dev_draws

RESULTS = HERE / "results" / "teacher"
RUNS = ROOT / "runs" / "ensemble_student"


def teacher(task: str, seed: int, labeled: int, members: int) -> list[dict[str, Any]]:
    """The first ``members`` warm members' predictions of a cell (warm_ensemble.py must have scored them)."""
    cell = TEACHERS / task / f"l{labeled}" / f"seed{seed}"
    paths = [cell / f"member{j}" / "predictions.json" for j in range(members)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"ensemble_student: no teacher member at {missing[0]}; run warm_ensemble.py first")
    return [json.loads(p.read_text()) for p in paths]


def student_targets(members: list[dict[str, Any]], mode: str, prior: list[float] | None = None) -> list[list[float]]:
    """Each unlabeled row's target: the members' mean distribution (soft) or its argmax one-hot (hard);
    with ``prior`` (the labeled draw's class shares) the mean is first aligned to it: each class scaled by
    its prior over the mean's average share of it (distribution alignment, as in AdaMatch)."""
    mean = np.stack([np.asarray(m["unlabeled"]["dist"], dtype=np.float64) for m in members]).mean(0)
    if prior is not None:
        mean *= np.clip(np.asarray(prior), 1e-6, None) / np.clip(mean.mean(0), 1e-6, None)
    mean /= mean.sum(-1, keepdims=True)
    if mode == "hard":
        mean = np.eye(mean.shape[-1])[mean.argmax(-1)]
    return mean.tolist()


def variant_name(args: argparse.Namespace) -> str:
    return f"{args.targets}{'_aligned' if args.align else ''}_k{args.members}_rep{args.labeled_repeat}"


def student_predictions(task: str, seed: int, i: int, args: argparse.Namespace) -> dict[str, Any]:
    """Student i's option distributions on the development rows (trained and scored once, then read)."""
    out = RUNS / task / f"l{args.labeled}" / f"seed{seed}" / variant_name(args) / f"student{i}"
    cached = out / "predictions.json"
    if cached.exists():
        return json.loads(cached.read_text())
    from semievol.answers import LETTERS
    from semievol.config import ModelConfig, TrainConfig
    from semievol.engines import engine_for
    from semievol.models import resolve_model
    from semievol.stages.evaluate import predict
    from semievol.stages.sft import labeled_pairs
    from semievol.training import train_lora

    members = teacher(task, seed, args.labeled, args.members)
    t = dev_cell(args, task, seed)
    if [e.answer for e in t.unlabeled.examples] != members[0]["unlabeled"]["gold"]:
        raise SystemExit(f"ensemble_student: {task} seed {seed}: the unlabeled rows are not the teacher's")
    prior = None
    if args.align:  # the labeled draw's class shares, as warm_ensemble.py recorded them
        prior = json.loads((TEACHERS / task / f"l{args.labeled}" / f"seed{seed}" / "views.json").read_text())["prior"]
    targets = student_targets(members, args.targets, prior)
    pseudo = [replace(e, answer=LETTERS[int(np.argmax(p))]) for e, p in zip(t.unlabeled.examples, targets, strict=True)]
    rows = t.labeled.examples * args.labeled_repeat + pseudo
    soft = [None] * (len(rows) - len(pseudo)) + list(targets) if args.targets == "soft" else None
    adapter = out / "adapter"
    summary = adapter / "train_summary.json"
    if not summary.exists():  # a student trained before an interruption is scored, not trained again
        steps = members[0]["steps"]  # a member's steps: the member is the compute-matched control
        cfg = TrainConfig(lr=args.lr, epochs=1, batch_size=8, max_steps=steps)
        pairs = labeled_pairs(rows, t.kind, False)
        train_lora(resolve_model("embedded"), pairs, cfg, adapter, seed=seed + 7000 + 1000 * i, soft=soft)
    trained = json.loads(summary.read_text())
    rec: dict[str, Any] = {k: trained.get(k) for k in ("seconds", "steps", "final_loss")}
    engine = engine_for(ModelConfig(model="embedded", threads=args.threads), quiet=True)
    engine.add_adapter(f"student{i}", str(adapter))
    preds = predict(engine, t.test.examples, "choice", f"student{i}", 8)
    rec["dev"] = {"gold": [p["gold"] for p in preds], "dist": [p["dist"] for p in preds]}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".predictions.json"
    tmp.write_text(json.dumps(rec))
    tmp.replace(cached)
    return rec


def correct(rec: dict[str, Any]) -> np.ndarray:
    from semievol.answers import LETTERS

    gold = np.asarray([LETTERS.index(g) for g in rec["dev"]["gold"]])
    return (np.asarray(rec["dev"]["dist"]).argmax(-1) == gold).astype(np.float64)


def paired_interval(diff: np.ndarray, reps: int = 2000, seed: int = 0) -> list[float]:
    """95% bootstrap interval (points) of the mean of per-row differences (the rows resampled)."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(reps, len(diff)))].mean(1)
    return [round(100 * float(np.percentile(means, 2.5)), 1), round(100 * float(np.percentile(means, 97.5)), 1)]


def compare(members: list[dict[str, Any]], students: list[dict[str, Any]]) -> dict[str, Any]:
    """Students against the members (each a compute-matched SFT run with another seed) on the dev rows."""
    from semievol.answers import LETTERS

    m = np.stack([correct(r) for r in members])  # members x rows
    s = np.stack([correct(r) for r in students])
    ens_dist = np.stack([np.asarray(r["dev"]["dist"]) for r in members]).mean(0)
    gold = np.asarray([LETTERS.index(g) for g in members[0]["dev"]["gold"]])
    diff = s.mean(0) - m.mean(0)  # per row: the students' mean correctness minus the members'
    return {
        "rows": int(m.shape[1]),
        "member_acc": [round(100 * float(a), 1) for a in m.mean(1)],
        "ensemble_acc": round(100 * float((ens_dist.argmax(-1) == gold).mean()), 1),
        "student_acc": [round(100 * float(a), 1) for a in s.mean(1)],
        "student_seconds": [round(float(r["seconds"])) for r in students],
        "student_minus_mean_member": round(100 * float(diff.mean()), 1),
        "interval_rows": paired_interval(diff),
        "students_above_best_member": int((s.mean(1) > m.mean(1).max()).sum()),
    }


def collect() -> dict[str, Any]:
    """Every variant of every cell with a finished student (processes side by side share the page), over the
    variants the results JSON already holds (a later session's machine has lost their run folders)."""
    stored = RESULTS / "ensemble_student.json"
    results = json.loads(stored.read_text())["results"] if stored.exists() else {}
    for vdir in sorted(RUNS.glob("*/l*/seed*/*")):
        found = sorted(vdir.glob("student*/predictions.json"), key=lambda p: int(p.parent.name[len("student") :]))
        if not found:
            continue
        task, lab, seed = vdir.relative_to(RUNS).parts[:3]
        k = int(vdir.name.split("_k")[1].split("_")[0])
        members = teacher(task, int(seed[len("seed") :]), int(lab[1:]), k)
        results[str(vdir.relative_to(RUNS))] = compare(members, [json.loads(p.read_text()) for p in found])
    return results


def write_page(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    # the cells come from several invocations (variants, tasks): the record keeps the machine, not one's args
    record = {"machine": machine(), "results": results}
    (RESULTS / "ensemble_student.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        "# One model trained on the warm ensemble's labels against SFT trained as long (issue 22, development rows)",
        "",
        "Commands: `python benchmarks/ensemble_student.py --tasks fpb --students 2 --threads 1` and, beside it, "
        "`--tasks sst2`; then for each task `--members 1 --students 1` and `--align --students 1` (`--students 0` "
        "rebuilds this page), after `warm_ensemble.py --members 5` scored the teacher's members; machine: "
        f"{machine()}, bf16 training. "
        "Each member is SFT on the labeled rows alone for as many optimizer steps as a student (the "
        "compute-matched control), with another training seed; a student trains from the base model on the "
        "labeled rows and every unlabeled row under the members' mean (aligned: rescaled to the labeled draw's "
        "class shares first). Variant name: targets, alignment, members in the teacher, labeled-row repeats. Development rows as recipe_dev.py cuts them; the test split is not read. "
        "The interval is a paired bootstrap over the rows of (students' mean - members' mean) correctness: it "
        "covers the rows, the spread of the members and students shows the seed. Each row compares its students "
        "with the members they learnt from: a variant run in a later session, on a new machine, retrained its "
        "members there (`warm_ensemble.py --members 1` for the one-member variants of session 26), and bf16 "
        "training does not repeat bit for bit across machines, so its member 0 differs from the five-member rows'.",
        "",
        "| cell / variant | rows | members (control, one per seed) | mean member | ensemble of members | students "
        "| students - mean member [95%] | students above the best member | seconds per student |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, r in results.items():
        lines.append(
            f"| {cell} | {r['rows']} | {' / '.join(f'{a:.1f}' for a in r['member_acc'])} | "
            f"{np.mean(r['member_acc']):.1f} | {r['ensemble_acc']:.1f} | "
            f"{' / '.join(f'{a:.1f}' for a in r['student_acc'])} | {r['student_minus_mean_member']:+.1f} "
            f"[{r['interval_rows'][0]:+.1f}, {r['interval_rows'][1]:+.1f}] | "
            f"{r['students_above_best_member']} of {len(r['student_acc'])} | "
            f"{', '.join(str(s) for s in r['student_seconds'])} |"
        )
    lines.append("")
    (RESULTS / "ensemble_student.md").write_text("\n".join(lines))


def main() -> None:
    ap = dev_arguments(__doc__)
    ap.add_argument("--members", type=int, default=5, help="warm members in the teacher")
    ap.add_argument("--students", type=int, default=2)
    ap.add_argument("--targets", choices=("soft", "hard"), default="soft")
    ap.add_argument("--align", action="store_true", help="align the members' mean to the labeled draw's prior")
    ap.add_argument("--labeled-repeat", type=int, default=2)
    args = ap.parse_args()
    for task, seed in dev_draws(args):
        for i in range(args.students):
            student_predictions(task, seed, i, args)
            write_page(collect())
    write_page(collect())


if __name__ == "__main__":
    main()
