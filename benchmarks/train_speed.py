"""LoRA training throughput on real FPB rows, in one process: fp32 with torch's dropout (semievol before this
change), bf16 autocast with the frozen weights stored in bf16, then the shared prompt prefix run once per
micro-batch, then LoRA dropout from 16-bit random numbers, then eager attention on short micro-batches (the
default on a CPU with fast bf16).

    python benchmarks/train_speed.py --data-dir ../shared/data [--rows 96] [--steps 12] [--rounds 2]

Each setting trains the embedded model for ``--steps`` optimizer steps (batch 8, the example config's lr 1e-3,
LoRA dropout 0.05) on the same rows from the same seed; the settings run in turns, ``--rounds`` times, so load
on the machine hits them alike, and the figure is the median over rounds of tokens per second (the rows' tokens,
prompt included, padding not; the first step of each run, which plans kernels, is left out). The loss curves are
compared with the first setting's step by step (dropout masks differ between settings, so the curves differ
by more than rounding). Writes benchmarks/results/train_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from run_time import machine

from semievol.config import TaskConfig, TrainConfig
from semievol.models import resolve_model
from semievol.prompts import training_pair
from semievol.tasks import load_task
from semievol.training import train_lora

OUT = Path(__file__).resolve().parent / "results"
SETTINGS = {
    "fp32, torch's dropout (before)": {"bf16": "off", "prefix": False, "fast_dropout": False, "eager": False},
    "bf16 autocast, frozen weights in bf16": {"bf16": "on", "prefix": False, "fast_dropout": False, "eager": False},
    "+ shared prefix": {"bf16": "on", "prefix": True, "fast_dropout": False, "eager": False},
    "+ 16-bit dropout": {"bf16": "on", "prefix": True, "fast_dropout": True, "eager": False},
    "+ eager attention on short rows (the default)": {
        "bf16": "on",
        "prefix": True,
        "fast_dropout": True,
        "eager": True,
    },
}
BEFORE = next(iter(SETTINGS))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default (one per core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_task(TaskConfig(task="fpb", data_dir=args.data_dir, limit_labeled=args.rows), seed=0)
    pairs = [training_pair(e, e.answer or "", task.kind, False) for e in task.labeled.iter_examples()]
    source = resolve_model("embedded")
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for _ in range(args.rounds):
        for name, s in SETTINGS.items():
            cfg = TrainConfig(
                lr=1e-3,
                max_steps=args.steps,
                batch_size=8,
                bf16=s["bf16"],
                shared_prefix=s["prefix"],
                fast_dropout=s["fast_dropout"],
                eager_attention=s["eager"],
            )
            with tempfile.TemporaryDirectory() as tmp:
                res = train_lora(source, pairs, cfg, Path(tmp) / "a", seed=0, desc=name)
                log = [json.loads(x) for x in (res.adapter_dir / "train_log.jsonl").read_text().splitlines()]
                summary = json.loads((res.adapter_dir / "train_summary.json").read_text())
            later = log[1:]
            seconds = later[-1]["seconds"] - log[0]["seconds"]
            runs[name].append(
                {
                    "tokens_per_s": sum(r["tokens"] for r in later) / seconds,
                    "computed_tokens_per_s": sum(r["computed_tokens"] for r in later) / seconds,
                    "losses": [r["loss"] for r in log],
                    "prefix": summary["shared_prefix_tokens"],
                }
            )
    base = statistics.median(r["tokens_per_s"] for r in runs[BEFORE])
    fp32_loss = runs[BEFORE][0]["losses"]
    rows = []
    for name, rs in runs.items():
        tps = statistics.median(r["tokens_per_s"] for r in rs)
        loss = rs[0]["losses"]
        rows.append(
            {
                "setting": name,
                "tokens_per_s": tps,
                "computed_tokens_per_s": statistics.median(r["computed_tokens_per_s"] for r in rs),
                "speedup": tps / base,
                "prefix_tokens": rs[0]["prefix"],
                "max_loss_diff_vs_fp32": max(abs(a - b) for a, b in zip(loss, fp32_loss, strict=True)),
                "final_loss": loss[-1],
                "all_runs_tokens_per_s": [r["tokens_per_s"] for r in rs],
            }
        )
    cmd = (
        f"python benchmarks/train_speed.py --data-dir {args.data_dir} --rows {args.rows} --steps {args.steps} --rounds {args.rounds}"
        + (f" --threads {args.threads}" if args.threads else "")
    )
    head = (
        f"LoRA training on {args.rows} FPB labeled rows, {args.steps} steps of batch 8 per run, {args.rounds} rounds "
        f"in turns; {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; `{cmd}`"
    )
    lines = [
        head,
        "",
        "| setting | tokens/s (median) | speed-up vs fp32 | shared prefix (tokens) | tokens run/s | max loss diff vs fp32 | final loss |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['tokens_per_s']:.0f} | {r['speedup']:.2f}x | {r['prefix_tokens']} | "
        f"{r['computed_tokens_per_s']:.0f} | {r['max_loss_diff_vs_fp32']:.4f} | {r['final_loss']:.4f} |"
        for r in rows
    ]
    OUT.mkdir(exist_ok=True)
    (OUT / "train_speed.json").write_text(json.dumps({"command": cmd, "head": head, "rows": rows}, indent=2))
    (OUT / "train_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
