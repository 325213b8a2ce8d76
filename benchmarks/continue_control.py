"""A second compute-matched control for a finished few-labels cell: the warm adapter trained on for as many
steps as evolve took, with evolve's settings and the labeled rows alone (evolve without the pseudo-labels).

    python benchmarks/continue_control.py runs/few_labels/few_labels_v3/sst2/l64/seed2 [...]

The run's own control (``sft_matched``) starts from the base model and spends warm's and evolve's steps in one
schedule. This one starts where evolve starts, from the warm adapter, so evolved minus it is what the
pseudo-labels add and nothing else. Its adapter goes to RUN_DIR/sft_continue; every run's test accuracy
beside the run's own models, with paired intervals over the test rows, to
benchmarks/results/continue_control/continue_control.{json,md} (rows of earlier runs kept).
"""

# ruff: noqa: E402 (the package beside this file is importable only after the sys.path line)
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]

from paper.stats import delta, row_paired
from recipe_runs import machine, training_precision

from semievol.config import build_config, load_yaml
from semievol.engines import engine_for
from semievol.models import resolve_model
from semievol.stages.evaluate import evaluate_model
from semievol.stages.sft import labeled_pairs
from semievol.tasks import load_task
from semievol.training import train_lora

RESULTS = HERE / "results" / "continue_control"
MODELS = ("warm", "evolved", "sft_matched")


def train_continued(rd: Path) -> Path:
    """The labeled rows (repeated as evolve repeats them) from the warm adapter for evolve's steps."""
    out = rd / "sft_continue"
    if (out / "adapter_config.json").exists():
        return out
    cfg = build_config(load_yaml(rd / "config.yaml"))
    task = load_task(cfg.task, seed=cfg.seed)
    steps = json.loads((rd / "evolve" / "train_summary.json").read_text())["steps"]
    labeled = [e for e in task.labeled.examples if e.answer is not None] * max(1, cfg.evolve.labeled_repeat)
    epochs = cfg.evolve.train_epochs if cfg.evolve.train_epochs > 0 else cfg.sft.epochs
    tcfg = replace(cfg.sft, epochs=epochs, max_steps=steps)
    pairs = labeled_pairs(labeled, task.kind, cfg.sft.use_rationale)
    train_lora(
        resolve_model(cfg.model.model), pairs, tcfg, out, seed=cfg.seed, init_adapter=rd / "sft", desc="continue"
    )
    return out


def right_of(rd: Path, model: str) -> dict[str, bool]:
    rows = map(json.loads, open(rd / "evaluate" / f"predictions_{model}.jsonl"))
    return {r["id"]: bool(r["correct"]) for r in rows}


def measure(rd: Path) -> dict[str, Any]:
    t0 = time.time()
    adapter = train_continued(rd)
    cfg = build_config(load_yaml(rd / "config.yaml"))
    task = load_task(cfg.task, seed=cfg.seed, only_test=True)
    assert task.test is not None
    engine = engine_for(cfg.model, quiet=True)
    engine.add_adapter("continue", str(adapter))
    preds, _ = evaluate_model(engine, task.test.examples, task.kind, "continue", cfg.model.max_new_tokens, task.numeric)
    ids = [p["id"] for p in preds]
    stored = {m: right_of(rd, m) for m in MODELS}
    right = {m: [stored[m][i] for i in ids] for m in MODELS} | {"continue": [bool(p["correct"]) for p in preds]}
    steps = {
        s: json.loads((rd / s / "train_summary.json").read_text())["steps"] for s in ("sft", "evolve", "sft_matched")
    }
    return {
        "run": str(rd),
        "task": cfg.task.task,
        "seed": cfg.seed,
        "steps": steps | {"continue": steps["sft"] + steps["evolve"]},
        "accuracy": {m: sum(v) / len(v) for m, v in right.items()},
        "evolved_minus_continue": row_paired({cfg.seed: (right["evolved"], right["continue"])}),
        "evolved_minus_sft_matched": row_paired({cfg.seed: (right["evolved"], right["sft_matched"])}),
        "continue_minus_sft_matched": row_paired({cfg.seed: (right["continue"], right["sft_matched"])}),
        "seconds": round(time.time() - t0),
        "machine": machine(),
        "precision": training_precision(rd),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# A second compute-matched control: the warm adapter trained on without pseudo-labels",
        "",
        "Command: `python benchmarks/continue_control.py RUN_DIR` on a finished `few_labels.py` cell. `continued` ="
        " the warm adapter trained on the labeled rows alone for evolve's steps with evolve's settings; "
        "`matched` = the run's own control (from the base model, warm's and evolve's steps in one schedule). "
        "Accuracy on the whole test split; differences with a 95% paired bootstrap interval over its rows.",
        "",
        "| run | steps (warm + evolve) | warm | matched | continued | evolved | evolved - continued | "
        "evolved - matched | continued - matched | machine, training |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = {m: f"{100 * v:.1f}" for m, v in r["accuracy"].items()}
        lines.append(
            f"| {r['task']} seed {r['seed']} | {r['steps']['sft']} + {r['steps']['evolve']} | {a['warm']} | "
            f"{a['sft_matched']} | {a['continue']} | {a['evolved']} | {delta(r['evolved_minus_continue'])} | "
            f"{delta(r['evolved_minus_sft_matched'])} | {delta(r['continue_minus_sft_matched'])} | "
            f"{r['machine']}, {r['precision']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "continue_control.json"
    rows = {r["run"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    for rd in args.runs:
        rows[str(rd)] = measure(rd)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"rows": list(rows.values())}, indent=1) + "\n")
        tmp.replace(path)
        (RESULTS / "continue_control.md").write_text(markdown(list(rows.values())))


if __name__ == "__main__":
    main()
