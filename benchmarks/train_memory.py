"""Peak memory and time of a LoRA training step on long rows: the micro-batch token budget and activation
checkpointing against training a whole micro-batch at once, each setting in its own process, side by side.

    python benchmarks/train_memory.py                       # PubMedQA's longest labeled rows, 4 per step
    python benchmarks/train_memory.py --rows 8 --steps 3    # the default micro-batch (needs ~18 GB free)

The rows are the longest of PubMedQA's labeled split in ../shared/data (the embedded model's chat template,
options and 'Answer: X' target), so each forward pass is rows x ~550 padded tokens. Each setting trains
from the same seed for --steps optimizer steps with lora_dropout 0, so the losses must agree; peak RSS is
the training process's (the model's ~0.5 GB and its loading included), seconds are the median per step.
Each setting also runs with glibc's mmap threshold fixed at 1 MiB (MALLOC_MMAP_THRESHOLD_), which returns
large freed blocks to the system at once instead of keeping them in a fragmented heap.

Writes benchmarks/results/train_memory.json and .md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "whole micro-batch": {"micro_batch_tokens": 0},
    "micro_batch_tokens 2048": {"micro_batch_tokens": 2048},
    "micro_batch_tokens 1024 (default)": {"micro_batch_tokens": 1024},
    "activation checkpointing": {"micro_batch_tokens": 0, "gradient_checkpointing": True},
    "both": {"micro_batch_tokens": 1024, "gradient_checkpointing": True},
}


def child(args: argparse.Namespace) -> None:
    """One setting: train, then print the step log and this process's peak RSS as JSON."""
    import torch

    from semievol.config import TaskConfig, TrainConfig
    from semievol.models import resolve_model
    from semievol.stages.sft import labeled_pairs
    from semievol.tasks import load_task
    from semievol.training import train_lora

    torch.set_num_threads(args.threads)
    task = load_task(TaskConfig(task="pubmedqa", data_dir=args.data_dir))
    longest = sorted(task.labeled.examples, key=lambda e: -len(e.question))[: args.rows]
    cfg = TrainConfig(
        lr=1e-3,
        max_steps=args.steps,
        batch_size=args.rows,
        micro_batch_size=args.rows,
        lora_dropout=0.0,
        warmup_ratio=0.0,
        **SETTINGS[args.child],
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = train_lora(
            resolve_model("embedded"), labeled_pairs(longest, task.kind, False), cfg, Path(tmp) / "a", seed=0
        )
        log = [json.loads(x) for x in (res.adapter_dir / "train_log.jsonl").read_text().splitlines()]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print("RESULT " + json.dumps({"log": log, "peak_rss_mb": round(peak_mb)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--rows", type=int, default=4, help="rows per optimizer step (one micro-batch)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--malloc-mmap-threshold",
        default="0,1048576",
        help="comma list of bytes for glibc's M_MMAP_THRESHOLD in the training processes; each setting "
        "runs under each (0 = glibc's dynamic default)",
    )
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma list of the settings to run")
    ap.add_argument("--name", default="train_memory", help="results file name")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--child", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    rows = []
    # each setting under each threshold back to back, so the pairs share the machine's load at the time
    runs = [(name, int(t)) for name in args.settings.split(",") for t in args.malloc_mmap_threshold.split(",")]
    for name, threshold in runs:
        env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
        if threshold:
            env["MALLOC_MMAP_THRESHOLD_"] = str(threshold)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--data-dir",
            args.data_dir,
            "--rows",
            str(args.rows),
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode:
            sys.exit(f"{name}: the training process failed (exit {proc.returncode}; -9 is usually out of memory)")
        res = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
        log = res["log"]
        times = [b - a for a, b in itertools.pairwise([0.0] + [r["seconds"] for r in log])]
        rows.append(
            {
                "setting": name,
                **SETTINGS[name],
                "mmap_threshold": threshold,
                "peak_rss_mb": res["peak_rss_mb"],
                "losses": [r["loss"] for r in log],
                "tokens_per_step": log[0]["tokens"],
                "median_step_seconds": round(statistics.median(times), 2),
            }
        )
        print(
            f"{name}, mmap threshold {threshold}: peak {res['peak_rss_mb']} MB, {rows[-1]['median_step_seconds']} s/step",
            flush=True,
        )
    first = next((r for r in rows if r["setting"] == "whole micro-batch" and not r["mmap_threshold"]), rows[0])
    for r in rows:
        r["memory_vs_whole"] = round(r["peak_rss_mb"] / first["peak_rss_mb"], 2)
        r["time_vs_whole"] = round(r["median_step_seconds"] / first["median_step_seconds"], 2)
    machine = f"{os.cpu_count()} CPU cores ({platform.machine()}), {args.threads} thread(s) per run, no GPU"
    command = "python benchmarks/train_memory.py" + "".join(
        f" --{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if k not in ("child", "data_dir", "out") and v != ap.get_default(k)
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"machine": machine, "command": command, "rows": rows}, indent=2))
    lines = [
        f"LoRA training step on PubMedQA's {args.rows} longest labeled rows ({first['tokens_per_step']} tokens "
        f"a step), embedded SmolLM2-135M in fp32; {machine}; `{command}`; settings run one after another. "
        "glibc mmap threshold: 'dynamic' is glibc's default (it rises after each large free, up to 32 MiB); a "
        "number is MALLOC_MMAP_THRESHOLD_ in bytes, which fixes it.",
        "",
        "| setting | glibc mmap threshold | peak RSS (MB) | vs whole | median s / step | vs whole | losses |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['mmap_threshold'] or 'dynamic'} | {r['peak_rss_mb']} | {r['memory_vs_whole']}x | {r['median_step_seconds']} | "
        f"{r['time_vs_whole']}x | {', '.join(f'{x:.4f}' for x in r['losses'])} |"
        for r in rows
    ]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
