"""What labeling the suggested rows buys, and whether the audit finds wrong labels; measured, not asserted.

    python benchmarks/label_next.py --data-dir ../shared/data --task fpb                  # embedder runs (minutes)
    python benchmarks/label_next.py --task fpb --engine hf --model embedded --pool 300    # real semievol runs (hours on CPU)

**Label next.** Each seed starts from the same 32 labeled rows (a seeded draw from the labeled split) and
the whole unlabeled split as the pool. Three rounds: run, then `semievol suggest --n 32` on that run, reveal
the suggested rows' gold answers from the unlabeled split into the suggest file (as a person would fill it
in) and run again with `task.add_labels` holding every file so far. The control adds 32 rows drawn at random
from what is still unlabeled, in the same shape, through the same `task.add_labels`. Both arms start from the
same round-0 run. Test accuracy on the whole test split after every round; the difference after the last
round is pooled over seeds with a two-level bootstrap (seeds, then test rows; `paper_table.row_paired`).

What a "run" is, is the ``--engine`` flag:

- ``embedder`` (default): the run's model is a classifier on the embedded all-MiniLM-L6-v2 vectors of the
  questions, and its four "configurations" are softmax regressions (C = 1 and C = 10, scikit-learn's scale),
  5-nearest-neighbour voting and nearest centroid; their mean distribution is the "justified" one and
  answers the test split. The run directory holds what `semievol select` would write
  (`select/pseudo_labels.jsonl`: every vote, the justified distribution, the score) and the real
  `semievol suggest` reads it. Everything else (the suggest file, filling it in, `task.add_labels` merging it
  into the labeled split) is the package's own code; only the LLM is replaced.
- ``hf``, ``fake`` (any `model.engine`): every round is a full `semievol run` (sft, propagate, select,
  evolve, evaluate) of ``--model``; the evolved model's test accuracy is the round's. ``fake`` only checks
  the wiring.

**Audit.** Per seed, 10% of the labeled split's answers are flipped to another class (seeded), the
result is written as the labeled file of a run, and `semievol audit` ranks the rows; precision and recall of
its top 10% (as many rows as were flipped) and of its flagged rows at finding the flips. With
``--audit-run RUN_DIR`` (an LLM run on the same task) that run's finished select stage is copied into every
audit folder and the audit runs twice on the same flips, ``--pseudo none`` and ``--pseudo kept`` (each fold's
classifier also trains on the rows the LLM's selection kept); the flips are then drawn only from labeled rows
that run did not train on, so no flipped row's true answer reached the pseudo-labels through the warm model.
That run trained on its own, unflipped labeled rows; the pseudo-labels of a run trained on the flipped split
would be somewhat worse (its warm model sees 10% wrong answers) or better (it sees all labeled rows, not a
draw of them), and the page says which run was used.

Writes `benchmarks/results/label_next.json` and `label_next.md` (or ``--results``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from semievol.audit import audit, fit_softmax, kept_pseudo_labels, predict_proba
from semievol.config import TaskConfig, build_config, load_yaml, to_dict
from semievol.jsonio import atomic_write_jsonl, read_jsonl
from semievol.retrieval import embedding_file, text_embedder
from semievol.rundir import fingerprint, last_finished, write_manifest
from semievol.stages.scoring import normalized_entropy
from semievol.suggest import label_names, suggest, write_task_rows
from semievol.tasks import Example, Task, load_task

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("paper_table", HERE / "paper_table.py")
assert _spec and _spec.loader
paper_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paper_table)
row_paired = paper_table.row_paired


# ---------------------------------------------------------------- the embedder "run"


class Embeddings:
    """Every question's vector by the embedded sentence model, computed once per question text."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.make = None
        self.vecs: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.vecs]
        if todo:
            if self.make is None:
                self.make = text_embedder(self.name)
            for t, v in zip(todo, self.make(todo), strict=True):
                self.vecs[t] = v
        return np.stack([self.vecs[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)


def classifier_dists(x_train: np.ndarray, y: np.ndarray, k: int, x: np.ndarray) -> dict[str, np.ndarray]:
    """The four configurations' class distributions for the rows ``x``."""
    n = len(y)
    out = {}
    for name, c in (("softmax:C1", 1.0), ("softmax:C10", 10.0)):
        out[name] = predict_proba(x, fit_softmax(x_train, y, k, l2=1.0 / (c * n)))
    sims = x @ x_train.T
    top = np.argsort(-sims, axis=1)[:, : min(5, n)]
    knn = np.zeros((len(x), k))
    for i, row in enumerate(top):
        for j in row:
            knn[i, y[j]] += max(float(sims[i, j]), 0.0) + 1e-6
    out["knn:5"] = (knn + 1e-3) / (knn + 1e-3).sum(axis=1, keepdims=True)
    cents = np.stack([x_train[y == c].mean(axis=0) if (y == c).any() else np.zeros(x.shape[1]) for c in range(k)])
    cents /= np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
    z = (x @ cents.T) / 0.05
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out["centroid"] = e / e.sum(axis=1, keepdims=True)
    return out


def embedder_run(run_dir: Path, cfg: dict[str, Any], task: Task, emb: Embeddings) -> list[bool]:
    """One round with the embedder classifier: the files `semievol suggest` reads, and test correctness."""
    letters = [chr(65 + i) for i in range(len(task.labeled.examples[0].options or []))]
    lab, unl = task.labeled.examples, list(task.unlabeled.iter_examples())
    test = task.test.examples if task.test else []
    y = np.array([letters.index(e.answer) for e in lab])
    x_lab = emb([e.question for e in lab])
    x_unl, x_test = emb([e.question for e in unl]), emb([e.question for e in test])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the embeddings where the run keeps them, so that suggest reads them instead of embedding again
    for stem, folder, texts, vecs in (
        ("emb_labeled", "propagate", [e.question for e in lab], x_lab),
        ("emb_unlabeled", "suggest", [e.question for e in unl], x_unl),
    ):
        f = embedding_file(run_dir / folder / stem, texts)
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, vecs)
    dists = classifier_dists(x_lab, y, len(letters), np.vstack([x_unl, x_test]))
    mean = np.mean(list(dists.values()), axis=0)
    rows = []
    for i, e in enumerate(unl):
        votes = [
            {"config": name, "answer": letters[int(d[i].argmax())], "dist": [round(float(p), 6) for p in d[i]]}
            for name, d in dists.items()
        ]
        rows.append(
            {
                "id": e.id,
                "row": e.row,
                "question": e.question,
                "options": e.options,
                "votes": votes,
                "unanimous": len({v["answer"] for v in votes}) == 1,
                "justified": True,
                "answer": letters[int(mean[i].argmax())],
                "score": round(normalized_entropy(mean[i]), 6),
                "selected": False,
                "justify_dist": [round(float(p), 6) for p in mean[i]],
            }
        )
    atomic_write_jsonl(run_dir / "select" / "pseudo_labels.jsonl", rows)
    write_manifest(run_dir / "select", "select", "embedder-run", ["pseudo_labels.jsonl"])
    preds = mean[len(unl) :].argmax(axis=1)
    return [letters[int(p)] == e.answer for p, e in zip(preds, test, strict=True)]


def semievol_run(run_dir: Path, cfg: dict[str, Any]) -> list[bool]:
    """One round as a full `semievol run`; the evolved model's correctness on the test rows."""
    from semievol.pipeline import make_context, run

    run(make_context(build_config(cfg), quiet=True, need_test=True))
    return [bool(p["correct"]) for p in read_jsonl(run_dir / "evaluate" / "predictions_evolved.jsonl")]


# ---------------------------------------------------------------- the loop


def task_files(data_dir: Path, task: str) -> dict[str, str]:
    return {s: str(data_dir / task / f"{s}.csv") for s in ("labeled", "unlabeled", "test")}


def run_config(args: argparse.Namespace, run_dir: Path, seed: int, added: list[str]) -> dict[str, Any]:
    files = task_files(Path(args.data_dir), args.task)
    d: dict[str, Any] = {
        "run_dir": str(run_dir),
        "seed": seed,
        "model": {
            "model": args.model,
            "engine": args.engine if args.engine != "embedder" else "fake",
            "embedder": args.embedder,
            "threads": args.threads,
        },
        "task": {**files, "limit_labeled": args.start, "limit_unlabeled": args.pool, "add_labels": added},
        "evaluate": {"models": ["evolved"]},
    }
    for item in args.set:
        key, _, value = item.partition("=")
        sec, _, name = key.partition(".")
        d.setdefault(sec, {})[name] = yaml.safe_load(value)
    return to_dict(build_config(d))


def one_round(
    args: argparse.Namespace, run_dir: Path, seed: int, added: list[str], emb: Embeddings
) -> tuple[list[bool], Task]:
    cfg = run_config(args, run_dir, seed, added)
    task = load_task(build_config(cfg).task, seed=seed, need_test=True)
    if args.engine == "embedder":
        return embedder_run(run_dir, cfg, task, emb), task
    return semievol_run(run_dir, cfg), task


def reveal(suggested: Path, task: Task, dest: Path) -> None:
    """The suggest file with the answer column filled from the unlabeled split's gold answers."""
    gold = {e.id: e.answer for e in task.unlabeled.iter_examples()}
    if suggested.suffix == ".csv":
        import csv

        with open(suggested, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            r["answer"] = gold[r["id"]]
        with open(dest, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        atomic_write_jsonl(dest, [r | {"answer": gold[r["id"]]} for r in read_jsonl(suggested)])


def random_rows(task: Task, n: int, rng: random.Random, dest: Path, task_cfg: TaskConfig) -> None:
    """``n`` still-unlabeled rows drawn at random, written in the task's shape with their gold answers."""
    pool = list(task.unlabeled.iter_examples())
    picked: list[Example] = rng.sample(pool, min(n, len(pool)))
    write_task_rows(dest, [(e, {}) for e in picked], task_cfg, "csv", answers=[e.answer for e in picked])


def label_loop(args: argparse.Namespace, work: Path, emb: Embeddings) -> dict[str, Any]:
    arms = ["random"] + [f"suggest:{s}" for s in args.strategies.split(",")]
    acc: dict[str, dict[int, list[float]]] = {a: {} for a in arms}
    final: dict[str, dict[int, list[bool]]] = {a: {} for a in arms}
    classes: dict[str, dict[int, dict[str, int]]] = {a: {} for a in arms}
    seconds = {}
    for seed in args.seeds:
        t = time.time()
        base_dir = work / f"s{seed}" / "r0"
        correct0, task0 = one_round(args, base_dir, seed, [], emb)
        for arm in arms:
            added: list[str] = []
            accs = [sum(correct0) / len(correct0)]
            correct, task, run_dir = correct0, task0, base_dir
            rng = random.Random(f"{seed}-random")
            for r in range(1, args.rounds + 1):
                dest = work / f"s{seed}" / arm.replace(":", "_") / f"add_r{r}.csv"
                dest.parent.mkdir(parents=True, exist_ok=True)
                if arm == "random":
                    random_rows(task, args.per_round, rng, dest, build_config(run_config(args, run_dir, seed, [])).task)
                else:
                    out = suggest(run_dir, args.per_round, arm.split(":")[1], dest.with_name(f"suggest_r{r}.csv"))
                    reveal(out, task, dest)
                added.append(str(dest))
                run_dir = work / f"s{seed}" / arm.replace(":", "_") / f"r{r}"
                correct, task = one_round(args, run_dir, seed, added, emb)
                accs.append(sum(correct) / len(correct))
            acc[arm][seed] = accs
            final[arm][seed] = correct
            classes[arm][seed] = dict(Counter(e.answer for e in task.labeled.examples))
            print(f"seed {seed} {arm}: " + " -> ".join(f"{100 * a:.1f}" for a in accs), flush=True)
        seconds[seed] = round(time.time() - t, 1)
    out: dict[str, Any] = {"arms": {}, "seconds_per_seed": seconds}
    for arm in arms:
        per_round = list(zip(*[acc[arm][s] for s in args.seeds], strict=True))
        out["arms"][arm] = {
            "accuracy_per_round": {s: acc[arm][s] for s in args.seeds},
            "mean_per_round": [statistics.fmean(x) for x in per_round],
            "labels_per_class_after": classes[arm],
        }
        if arm != "random":
            out["arms"][arm]["minus_random_last_round"] = row_paired(
                {s: (final[arm][s], final["random"][s]) for s in args.seeds}
            )
    return out


# ---------------------------------------------------------------- the audit


def audit_flips(args: argparse.Namespace, work: Path, emb: Embeddings) -> dict[str, Any]:
    files = task_files(Path(args.data_dir), args.task)
    llm_select, trained = None, set()
    if args.audit_run:
        llm = Path(args.audit_run)
        llm_select = last_finished(llm, "select")
        if llm_select is None:
            raise SystemExit(f"--audit-run: {llm} has no finished select stage")
        llm_cfg = build_config(load_yaml(llm / "config.yaml"))
        trained = {e.question for e in load_task(llm_cfg.task, seed=llm_cfg.seed).labeled.examples}
    arms = ["none", "kept"] if llm_select else ["none"]
    per_arm: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in arms}
    for seed in args.seeds:
        rd = work / f"audit_s{seed}"
        cfg = run_config(args, rd, seed, [])
        cfg["task"].update({"limit_labeled": args.audit_rows, "limit_unlabeled": 0, "add_labels": []})
        task = load_task(build_config(cfg).task, seed=seed)
        lab = task.labeled.examples
        letters = [chr(65 + i) for i in range(len(lab[0].options or []))]
        rng = random.Random(f"flip-{seed}")
        eligible = [i for i, e in enumerate(lab) if e.question not in trained]
        flipped = set(rng.sample(eligible, round(args.flip * len(lab))))
        answers = [
            rng.choice([a for a in letters if a != e.answer]) if i in flipped else e.answer for i, e in enumerate(lab)
        ]
        labeled = rd / "labeled_flipped.csv"
        rd.mkdir(parents=True, exist_ok=True)
        write_task_rows(labeled, [(e, {}) for e in lab], build_config(cfg).task, "csv", answers=answers)
        cfg["task"].update({"labeled": str(labeled), "limit_labeled": 0, "unlabeled": files["unlabeled"]})
        (rd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        texts = [e.question for e in lab]
        f = embedding_file(rd / "propagate" / "emb_labeled", texts)
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, emb(texts))
        if llm_select:
            shutil.copytree(llm_select, rd / "select")
            # the kept rows' vectors from this benchmark's cache, as for the labeled rows above: the audit
            # finds them where propagate would have left them instead of loading the embedder every seed
            kept = [q for q, _ in kept_pseudo_labels(rd, label_names(task) or [], set(texts))]
            np.save(embedding_file(rd / "propagate" / "emb_kept", kept), emb(kept))
        ids = {lab[i].id for i in flipped}
        for arm in arms:
            ranked = read_jsonl(audit(rd, pseudo=arm))
            summary = json.loads((rd / "audit" / "audit.json").read_text())
            k = len(ids)
            top = [r["id"] for r in ranked[:k]]
            flagged = [r["id"] for r in ranked if r["flagged"]]
            hit_top, hit_flag = len(set(top) & ids), len(set(flagged) & ids)
            per_arm[arm][seed] = {
                "rows": len(lab),
                "flipped": k,
                "top_k": k,
                "precision_top": hit_top / k,
                "recall_top": hit_top / k,
                "flagged": len(flagged),
                "precision_flagged": hit_flag / max(len(flagged), 1),
                "recall_flagged": hit_flag / k,
                "out_of_fold_accuracy": summary["out_of_fold_accuracy"],
                "pseudo_labels": summary["pseudo_labels"],
            }
            print(
                f"audit seed {seed} --pseudo {arm}: top {k}: {hit_top} flips found; flagged {len(flagged)}: {hit_flag}",
                flush=True,
            )
    out: dict[str, Any] = {"arms": {}}
    for arm, per_seed in per_arm.items():
        mean = {
            key: statistics.fmean(p[key] for p in per_seed.values())
            for key in ("precision_top", "recall_top", "precision_flagged", "recall_flagged")
        }
        out["arms"][arm] = {"per_seed": per_seed, "mean": mean}
    out["llm_run"] = str(args.audit_run) if args.audit_run else None
    out["default_arm"] = arms[-1]  # the tool's default: kept pseudo-labels where the run has them
    out |= out["arms"][out["default_arm"]]
    return out


# ---------------------------------------------------------------- output


def git_commit() -> str:
    """The checkout's commit, with '+changes' when files differ from it."""
    import subprocess

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=HERE, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def markdown(res: dict[str, Any]) -> str:
    a = res["args"]
    lines = [
        f"# Label next and label audit: {a['task']}",
        "",
        f"Machine: {res['machine']}. Command: `{res['command']}` at commit {res.get('commit')}, "
        f"{res['seconds']:.0f} s.",
        "",
    ]
    if "loop" in res:
        loop = res["loop"]
        what = (
            "embedder classifier (all-MiniLM-L6-v2 vectors; softmax regression C=1 and C=10, 5-NN, nearest "
            "centroid as the four configurations)"
            if a["engine"] == "embedder"
            else f"full `semievol run` of `{a['model']}` (engine {a['engine']}), evolved model"
        )
        lines += [
            "## Label next",
            "",
            f"Run = {what}. Start {a['start']} labeled rows, +{a['per_round']} per round for {a['rounds']} "
            f"rounds, seeds {', '.join(map(str, a['seeds']))}, pool = "
            f"{'the whole unlabeled split' if not a['pool'] else str(a['pool']) + ' unlabeled rows'}, test = the whole test split.",
            "",
            "| arm | "
            + " | ".join(f"round {r}" for r in range(a["rounds"] + 1))
            + " | minus random, last round (95% CI) |",
            "|---|" + "---|" * (a["rounds"] + 2),
        ]
        for arm, rec in loop["arms"].items():
            d = rec.get("minus_random_last_round")
            delta = f"{100 * d['mean']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]" if d else ""
            lines.append(f"| {arm} | " + " | ".join(f"{100 * x:.1f}%" for x in rec["mean_per_round"]) + f" | {delta} |")
        lines += [
            "",
            "Mean test accuracy over seeds per round (round 0 is the shared start). Interval: two-level "
            "bootstrap over seeds and test rows. Target (default strategy `mix`): +2.0 points with the "
            f"interval above 0: **{'met' if loop['target_met'] else 'not met'}**.",
            "",
        ]
    if "audit" in res:
        au = res["audit"]
        lines += [
            "## Label audit",
            "",
            f"{100 * a['flip']:.0f}% of {a['audit_rows'] or 'all'} labeled rows flipped to another class "
            "(seeded); `semievol audit` (5 folds, softmax regression on the embedder's vectors, confident "
            "learning).",
            "",
        ]
        if au.get("llm_run"):
            lines += [
                f"`--pseudo kept`: each fold's classifier also trained on the rows the selection of `{au['llm_run']}` "
                "kept, with their pseudo-labels; flips drawn from the labeled rows that run did not train on.",
                "",
            ]
        lines += [
            "| --pseudo | seed | rows | flipped | pseudo-labels | out-of-fold accuracy | top-10%: precision = recall "
            "| flagged | precision | recall |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for arm, r in au.get("arms", {"none": au}).items():
            for s, p in r["per_seed"].items():
                lines.append(
                    f"| {arm} | {s} | {p['rows']} | {p['flipped']} | {p.get('pseudo_labels', 0)} | "
                    f"{100 * p['out_of_fold_accuracy']:.1f}% | {100 * p['precision_top']:.1f}% | {p['flagged']} | "
                    f"{100 * p['precision_flagged']:.1f}% | {100 * p['recall_flagged']:.1f}% |"
                )
            m = r["mean"]
            lines.append(
                f"| {arm} | mean | | | | | {100 * m['precision_top']:.1f}% | | {100 * m['precision_flagged']:.1f}% | "
                f"{100 * m['recall_flagged']:.1f}% |"
            )
        lines += [
            "",
            f"Target (the tool's default, `--pseudo {au.get('default_arm', 'none')}`): at least half the flips in the "
            f"top 10% with precision at least 50%: **{'met' if au['target_met'] else 'not met'}**.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument(
        "--task", default="fpb", help="a folder of DATA_DIR with labeled/unlabeled/test.csv (fpb, sst2, ...)"
    )
    ap.add_argument("--parts", default="loop,audit")
    ap.add_argument("--engine", default="embedder", help="'embedder', or a model.engine for full semievol runs")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--embedder", default="embedded")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", type=int, default=32)
    ap.add_argument("--per-round", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pool", type=int, default=0, help="unlabeled rows in the pool (0 = all)")
    ap.add_argument("--strategies", default="mix,uncertainty,diversity,coverage")
    ap.add_argument("--flip", type=float, default=0.1)
    ap.add_argument("--audit-rows", type=int, default=0, help="labeled rows audited (0 = the whole labeled split)")
    ap.add_argument(
        "--audit-run",
        default=None,
        metavar="RUN_DIR",
        help="an LLM run on the same task: the audit also runs with its kept pseudo-labels (--pseudo kept)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="a config setting for full semievol runs (repeatable)",
    )
    ap.add_argument("--work", default=None, help="folder for the runs (default: runs/label_next/TASK-ENGINE)")
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--name", default="label_next")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(args.work or f"runs/label_next/{args.task}-{args.engine}")
    if work.exists():
        shutil.rmtree(work)
    emb = Embeddings(args.embedder)
    commit = git_commit()  # the code that runs: read before commits made while it runs
    t = time.time()
    res: dict[str, Any] = {
        "args": vars(args) | {"seeds": args.seeds},
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"torch threads {args.threads}, no GPU",
        "command": "python benchmarks/label_next.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    parts = args.parts.split(",")
    if "loop" in parts:
        loop = label_loop(args, work, emb)
        mix = loop["arms"].get("suggest:mix", {}).get("minus_random_last_round")
        loop["target_met"] = bool(mix and mix["mean"] >= 0.02 and mix["ci95"][0] > 0)
        res["loop"] = loop
    if "audit" in parts:
        au = audit_flips(args, work, emb)
        au["target_met"] = au["mean"]["recall_top"] >= 0.5 and au["mean"]["precision_top"] >= 0.5
        res["audit"] = au
    res["seconds"] = round(time.time() - t, 1)
    res["commit"] = commit
    res["run_fingerprint"] = fingerprint(res["args"])
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / f"{args.name}.md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
