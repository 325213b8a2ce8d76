"""LoRA training step time on this CPU: fp32 weights, bf16 autocast over fp32 weights, and a frozen bf16
base with fp32 LoRA weights; with each batch's width as it comes and padded up to a multiple of 64.

    python benchmarks/train_dtype.py [--steps 12] [--rows 8]

Every step uses another batch width (as length-grouped batches do), so a kernel planned for one shape is
not reused by the next. The settings run in turns (one step of each, round after round), so load on the
machine hits them alike; the figure is the median step time. The loss of the first batch is printed for
each setting, to show the dtypes train the same function. Writes benchmarks/results/train_dtype.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from semievol.losses import response_loss
from semievol.models import load_model, resolve_model

OUT = Path(__file__).resolve().parent / "results"


def build(setting: str):
    src = resolve_model("embedded")
    weights = torch.bfloat16 if setting == "bf16 base" else torch.float32
    model = load_model(src, weights, "cpu")
    lcfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    return model


def batch(rows: int, width: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, 49000, (rows, width), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, -3:] = ids[:, -3:]
    return ids, torch.ones_like(ids), labels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rows", type=int, default=8)
    args = ap.parse_args()
    settings = ["fp32", "bf16 autocast", "bf16 base"]
    models = {s: build(s) for s in settings}
    widths = [random.Random(i).randint(60, 200) for i in range(args.steps)]
    times: dict[str, list[float]] = {f"{s}, {p}": [] for s in settings for p in ("as is", "pad 64")}
    first_loss: dict[str, float] = {}
    for step, w in enumerate(widths):
        for key in times:
            setting, pad = key.split(", ")
            width = -(-w // 64) * 64 if pad == "pad 64" else w
            ids, mask, labels = batch(args.rows, width, step)
            model = models[setting]
            t = time.perf_counter()
            loss = response_loss(model, ids, mask, labels, setting == "bf16 autocast", True)
            loss.backward()
            model.zero_grad(set_to_none=True)  # no update: every setting keeps the same weights
            times[key].append(time.perf_counter() - t)
            if step == 0:
                first_loss[key] = float(loss) / (3 * args.rows)
    rows = [
        {"setting": k, "median_s": statistics.median(v[1:]), "first_s": v[0], "loss_first_batch": first_loss[k]}
        for k, v in times.items()
    ]
    base = next(r["median_s"] for r in rows if r["setting"] == "fp32, as is")
    for r in rows:
        r["speedup_vs_fp32"] = base / r["median_s"]
    cmd = f"python benchmarks/train_dtype.py --steps {args.steps} --rows {args.rows}"
    machine = f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__}"
    OUT.mkdir(exist_ok=True)
    (OUT / "train_dtype.json").write_text(
        json.dumps({"machine": machine, "command": cmd, "widths": widths, "rows": rows}, indent=2)
    )
    lines = [
        f"One LoRA step (forward + backward, {args.rows} rows, widths 60-200 tokens, a new width each step) "
        f"on {machine}; median of {args.steps - 1} steps after the first; `{cmd}`",
        "",
        "| setting | median step (s) | first step (s) | speed-up vs fp32 | loss, first batch |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['median_s']:.3f} | {r['first_s']:.2f} | {r['speedup_vs_fp32']:.2f}x | "
        f"{r['loss_first_batch']:.4f} |"
        for r in rows
    ]
    (OUT / "train_dtype.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
