"""Is an ensemble of warm models a better teacher than one? (issue 22, development rows only)

Recipe v4's kept pseudo-labels never differ from the warm model's own answer (benchmarks/results/teacher/
teacher_mix.md): evolve relearns what the warm model knows. A teacher worth distilling must be right where the
warm model is wrong. At 64 labeled rows a LoRA run of the embedded model is chaotic (the same rows, another
training seed, give another model), so several warm models trained on the same rows with different seeds may
err on different rows and their mean be truer than any one of them. This measures that before any product
change: for each task and draw it trains ``--members`` warm adapters on the same labeled rows (v4's warm
settings, a full schedule each; member j's training seed is ``seed + 1000 * j``), scores the development rows
and the unlabeled rows with each, and compares every member with the ensemble (mean of their option
distributions): accuracy, and on the unlabeled rows how many of the ensemble's labels differ from member 0's
and how many of those are right. Splits as ``recipe_dev.py`` cuts them (the test split is not read).

    python benchmarks/warm_ensemble.py --data-dir ../shared/data --tasks fpb,sst2 --seeds 0,1 --members 3

Resumable: adapters and predictions are kept under runs/warm_ensemble; the JSON and page are rewritten from
them after every member (so two processes, one task each, can run side by side).
"""

from __future__ import annotations

# ruff: noqa: E402 (the modules beside this file are importable only after the sys.path line)
import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from recipe_dev import dev_splits
from recipe_runs import embedder, machine

RESULTS = HERE / "results" / "teacher"
RUNS = ROOT / "runs" / "warm_ensemble"
DEV_SEED = {"fpb": 0, "sst2": 1}  # the development draws recipe_dev.py used


def dev_cell(args: argparse.Namespace, task: str, seed: int, with_dev: bool = True) -> Any:
    """A development cell's task: ``args.labeled`` rows drawn by ``seed`` from recipe_dev.py's labeled cut, its
    unlabeled rows and (``with_dev``) its development rows as the test split."""
    from semievol.config import TaskConfig
    from semievol.tasks import load_task

    data = dev_splits(Path(args.data_dir), task)
    split = dict(labeled=str(data / "labeled.csv"), unlabeled=str(data / "unlabeled.csv"))
    if with_dev:
        split["test"] = str(data / "dev.csv")
    cfg = TaskConfig(answer_kind="choice", limit_labeled=args.labeled, **split)
    return load_task(cfg, seed=seed, need_test=with_dev)


def member_predictions(task: str, seed: int, j: int, args: argparse.Namespace) -> dict[str, Any]:
    """Member j's option distributions on the dev and unlabeled rows (trained and scored once, then read)."""
    out = RUNS / task / f"l{args.labeled}" / f"seed{seed}" / f"member{j}"
    cached = out / "predictions.json"
    if cached.exists():
        return json.loads(cached.read_text())
    from semievol.config import ModelConfig, TrainConfig
    from semievol.engines import engine_for
    from semievol.models import resolve_model
    from semievol.stages.evaluate import predict
    from semievol.stages.sft import labeled_pairs
    from semievol.training import train_lora

    t = dev_cell(args, task, seed)
    adapter = out / "adapter"
    summary = adapter / "train_summary.json"
    if not summary.exists():  # a member trained before an interruption is scored, not trained again
        cfg = TrainConfig(lr=args.lr, epochs=args.epochs, batch_size=8)
        pairs = labeled_pairs(t.labeled.examples, t.kind, False)
        train_lora(resolve_model("embedded"), pairs, cfg, adapter, seed=seed + 1000 * j)
    trained = json.loads(summary.read_text())
    rec: dict[str, Any] = {k: trained.get(k) for k in ("seconds", "steps", "final_loss")} | {"machine": machine()}
    engine = engine_for(ModelConfig(model="embedded", threads=args.threads), quiet=True)
    engine.add_adapter(f"member{j}", str(adapter))
    for name, examples in (("dev", t.test.examples), ("unlabeled", t.unlabeled.examples)):
        preds = predict(engine, examples, "choice", f"member{j}", 8)
        rec[name] = {"gold": [p["gold"] for p in preds], "dist": [p["dist"] for p in preds]}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".predictions.json"
    tmp.write_text(json.dumps(rec))
    tmp.replace(cached)
    return rec


def cell_views(task: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """What is known of a cell without a model's answer: the labeled draw's class shares and the embedder's
    logistic regression on it (``semievol.views.Probe``), as distributions over the unlabeled rows."""
    path = RUNS / task / f"l{args.labeled}" / f"seed{seed}" / "views.json"
    if path.exists():
        return json.loads(path.read_text())
    from semievol.retrieval import embed
    from semievol.views import Probe, label_indices

    drawn = dev_cell(args, task, seed, with_dev=False)
    n_options = len(drawn.labeled.examples[0].options or [])
    labels = label_indices(drawn.labeled.examples, n_options)
    probe = Probe(embed([e.question for e in drawn.labeled.examples], embedder()), labels, n_options)
    views = {
        "prior": (np.bincount(labels, minlength=n_options) / len(labels)).tolist(),
        "probe": probe.distributions(embed([e.question for e in drawn.unlabeled.examples], embedder())).tolist(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(views))
    return views


def signals(members: list[dict[str, Any]], views: dict[str, Any]) -> dict[str, list[float]]:
    """Per member, what a run could choose it by without gold answers, read on the unlabeled rows: agreement
    with the embedder's probe, with the other members, and the KL divergence of its predicted class shares
    from the labeled draw's (a member leaning on one class answers it more often than the labels do)."""
    preds = np.stack([np.asarray(m["unlabeled"]["dist"]).argmax(-1) for m in members])
    probe = np.asarray(views["probe"]).argmax(-1)
    prior = np.clip(np.asarray(views["prior"]), 1e-6, None)
    out: dict[str, list[float]] = {"probe_agreement": [], "peer_agreement": [], "share_kl": []}
    for j, p in enumerate(preds):
        share = np.clip(np.bincount(p, minlength=len(prior)) / len(p), 1e-6, None)
        out["probe_agreement"].append(round(float((p == probe).mean()), 4))
        out["peer_agreement"].append(round(float(np.mean([(p == q).mean() for i, q in enumerate(preds) if i != j])), 4))
        out["share_kl"].append(round(float((share * np.log(share / prior)).sum()), 4))
    return out


CHOOSE = {"probe_agreement": np.argmax, "peer_agreement": np.argmax, "share_kl": np.argmin}  # how each picks


def compare(members: list[dict[str, Any]], views: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each member's accuracy and the ensemble's, on dev and unlabeled rows; what the ensemble changes."""
    from semievol.answers import LETTERS

    out: dict[str, Any] = {"members": len(members), "train_seconds": [m["seconds"] for m in members]}
    for name in ("dev", "unlabeled"):
        gold = np.asarray([LETTERS.index(g) for g in members[0][name]["gold"]])
        dists = np.stack([np.asarray(m[name]["dist"]) for m in members])  # members x rows x options
        preds = dists.argmax(-1)
        mean = dists.mean(0).argmax(-1)
        changed = mean != preds[0]
        out[name] = {
            "rows": int(len(gold)),
            "member_acc": [round(100 * float((p == gold).mean()), 1) for p in preds],
            "ensemble_acc": round(100 * float((mean == gold).mean()), 1),
            "any_member_right": round(100 * float((preds == gold).any(0).mean()), 1),
            "all_members_agree": round(100 * float((preds == preds[0]).all(0).mean()), 1),
            "changed_from_member0": int(changed.sum()),
            "changed_and_right": int((changed & (mean == gold)).sum()),
            "changed_and_member0_was_right": int((changed & (preds[0] == gold)).sum()),
        }
    if views is not None:
        sig = signals(members, views)
        out["signals"] = sig
        out["chosen"] = {name: int(CHOOSE[name](v)) for name, v in sig.items()}
    return out


def write_page(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    # the settings live in each cell: a later invocation (another task, --members 1) leaves earlier cells' alone
    (RESULTS / "warm_ensemble.json").write_text(json.dumps({"results": results}, indent=1) + "\n")
    under: dict[str, list[str]] = {}
    for cell, r in results.items():
        under.setdefault(describe(r.get("settings", {})), []).append(cell)
    settings = [f"{', '.join(cells)}: {how}" for how, cells in under.items()]
    lines = [
        "# An ensemble of warm models as the teacher (issue 22, development rows)",
        "",
        "Command: `python benchmarks/warm_ensemble.py --tasks fpb --members 5 --threads 1` and, beside it, `--tasks "
        "sst2 --members 5 --threads 1`; bf16 training; batch 8 per member (a full schedule each), training seeds "
        f"seed + 1000 j. Cells trained under: {'; '.join(settings)}. Scored on the development rows and the "
        "unlabeled rows recipe_dev.py cuts (gold answers read for grading only); the test split is not read.",
        "",
        "| cell | rows | members (accuracy each) | mean of members | ensemble | ensemble - member 0 | any member right "
        "| all agree | labels changed from member 0: all / right / were right |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, r in results.items():
        for name in ("dev", "unlabeled"):
            s = r[name]
            mean_member = float(np.mean(s["member_acc"]))
            lines.append(
                f"| {cell} {name} | {s['rows']} | {' / '.join(f'{a:.1f}' for a in s['member_acc'])} | "
                f"{mean_member:.1f} | {s['ensemble_acc']:.1f} | {s['ensemble_acc'] - s['member_acc'][0]:+.1f} | "
                f"{s['any_member_right']:.1f} | {s['all_members_agree']:.1f} | {s['changed_from_member0']} / "
                f"{s['changed_and_right']} / {s['changed_and_member0_was_right']} |"
            )
    lines += [
        "",
        "Choosing one member without gold answers: each member's signal on the unlabeled rows (agreement with the "
        "embedder's probe, with the other members; KL of its predicted class shares from the labeled draw's), and "
        "the development accuracy of the member each signal picks.",
        "",
        "| cell | member | dev accuracy | probe agreement | peer agreement | share KL |",
        "|---|---|---|---|---|---|",
    ]
    for cell, r in results.items():
        if "signals" not in r:
            continue
        sig, acc = r["signals"], r["dev"]["member_acc"]
        for j, a in enumerate(acc):
            lines.append(
                f"| {cell} | {j} | {a:.1f} | {sig['probe_agreement'][j]:.3f} | {sig['peer_agreement'][j]:.3f} | "
                f"{sig['share_kl'][j]:.3f} |"
            )
        picks = ", ".join(f"{name} picks {j} ({acc[j]:.1f})" for name, j in r["chosen"].items())
        lines.append(f"| {cell} | picked | | {picks} | | |")
    lines.append("")
    (RESULTS / "warm_ensemble.md").write_text("\n".join(lines))


def dev_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options every development-cell benchmark takes: where the data is, which draws, the labeled rows,
    the learning rate and torch's threads."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--tasks", default="fpb,sst2")
    ap.add_argument("--seeds", default="", help="draw seeds, one per task (default: the recipe_dev draws)")
    ap.add_argument("--labeled", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0)
    return ap


def dev_draws(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(task, draw seed) for each asked-for cell; torch's threads set as asked."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [DEV_SEED.get(t, 0) for t in tasks]
    return list(zip(tasks, seeds, strict=True))


def main() -> None:
    ap = dev_arguments(__doc__)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=48)
    args = ap.parse_args()
    for task, seed in dev_draws(args):
        cell_views(task, seed, args)
        for j in range(args.members):
            member_predictions(task, seed, j, args)
            write_page(collect())


def describe(settings: dict[str, Any]) -> str:
    """A cell's training settings in words, for the page's header."""
    if not settings:
        return "not recorded"
    return (
        f"{settings['labeled']} labeled rows, lr {settings['lr']}, {settings['steps']} steps, on "
        f"{settings.get('machine') or 'a machine not recorded'}"
    )


def trained_under(cell: Path, members: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings a cell's members were trained under, from member 0's training summary (and the machine that
    scored it, where its predictions recorded one), not from the arguments of whichever run rebuilds the page."""
    summary = cell / "member0" / "adapter" / "train_summary.json"
    if not summary.exists():
        return {}
    trained = json.loads(summary.read_text())
    return {"labeled": trained["examples"], "lr": trained["lr"], "steps": trained["steps"]} | {
        "machine": members[0].get("machine")
    }


def collect() -> dict[str, Any]:
    """Every cell with at least two scored members on this machine (so processes side by side share the page),
    over the cells the results JSON already holds (a later session's machine has lost their run folders).
    Each cell keeps the settings its members were trained under."""
    path = RESULTS / "warm_ensemble.json"
    results: dict[str, Any] = json.loads(path.read_text())["results"] if path.exists() else {}
    for cell in sorted({p.parent.parent for p in RUNS.glob("*/l*/seed*/member*/predictions.json")}):
        found = sorted(cell.glob("member*/predictions.json"), key=lambda p: int(p.parent.name[len("member") :]))
        if len(found) > 1:
            views = cell / "views.json"
            members = [json.loads(p.read_text()) for p in found]
            results[str(cell.relative_to(RUNS))] = compare(
                members, json.loads(views.read_text()) if views.exists() else None
            ) | {"settings": trained_under(cell, members)}
    return results


if __name__ == "__main__":
    main()
