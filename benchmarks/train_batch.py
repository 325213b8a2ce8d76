"""Does a bigger micro-batch raise LoRA training's tokens per second on this CPU?

    python benchmarks/train_batch.py --data-dir ../shared/data [--sizes 8,40] [--rows 200] [--rounds 2] [--threads 1]

The question behind it: a LoRA step of 8 short rows uses a small share of the CPU's matmul peak, so would
training several models in one forward pass (the five warm models of recipe v5, say) or larger batches make
training cheaper per token? Each micro-batch size trains the embedded model (semievol's defaults: bf16 where
the CPU has it, shared prefix, eager attention on short rows) on the same FPB labeled rows for about 80 rows
after its first step; the sizes run in turns, ``--rounds`` times, and the figure is the median over
rounds of tokens per second (the rows' tokens, prompt included; the first step, which plans kernels, left
out). Writes benchmarks/results/train_batch.{json,md}.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--sizes", default="8,40")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    task = load_task(TaskConfig(task="fpb", data_dir=args.data_dir, limit_labeled=args.rows), seed=0)
    pairs = [training_pair(e, e.answer or "", task.kind, False) for e in task.labeled.iter_examples()]
    source = resolve_model("embedded")
    runs: dict[int, list[float]] = {b: [] for b in sizes}
    steps = {b: max(3, 80 // b + 1) for b in sizes}  # about 80 rows after the first step, at every size
    for _ in range(args.rounds):
        for b in sizes:
            cfg = TrainConfig(lr=1e-3, max_steps=steps[b], batch_size=b, micro_batch_size=b)
            with tempfile.TemporaryDirectory() as tmp:
                res = train_lora(source, pairs, cfg, Path(tmp) / "a", seed=0, desc=f"micro-batch {b}")
                log = [json.loads(x) for x in (res.adapter_dir / "train_log.jsonl").read_text().splitlines()]
            later = log[1:]
            runs[b].append(sum(r["tokens"] for r in later) / (later[-1]["seconds"] - log[0]["seconds"]))
    first = statistics.median(runs[sizes[0]])
    cmd = (
        f"python benchmarks/train_batch.py --data-dir {args.data_dir} --sizes {args.sizes} --rows {args.rows} "
        f"--rounds {args.rounds} --threads {args.threads}"
    )
    rows = [
        {
            "micro_batch": b,
            "steps": steps[b],
            "tokens_per_s": statistics.median(runs[b]),
            "vs_first": statistics.median(runs[b]) / first,
            "each_round": runs[b],
        }
        for b in sizes
    ]
    lines = [
        "# LoRA training: tokens per second against micro-batch size",
        "",
        f"{machine()}, torch {torch.__version__}, {args.threads} thread(s); `{cmd}`",
        "",
        f"| micro-batch | steps | tokens/s (median of {args.rounds}) | against {sizes[0]} |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['micro_batch']} | {r['steps']} | {r['tokens_per_s']:.0f} | {r['vs_first']:.2f}x |" for r in rows]
    OUT.mkdir(exist_ok=True)
    (OUT / "train_batch.json").write_text(json.dumps({"command": cmd, "machine": machine(), "rows": rows}, indent=2))
    (OUT / "train_batch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
