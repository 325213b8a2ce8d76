"""bf16 against fp32 on this CPU: one transformer-sized matmul and one SmolLM2 forward pass, side by side.

    python benchmarks/bf16_probe.py

Writes benchmarks/results/bf16_probe.json and .md (medians of 5 repeats).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from semievol.models import load_model, resolve_model

OUT = Path(__file__).resolve().parent / "results"


def median_time(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_name() -> str:
    """The CPU's model name, and whether it has AMX tiles (what makes bf16 fast on recent Xeons)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "an unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "a CPU")
    return f"{name} ({'with' if 'amx_bf16' in info else 'without'} AMX)"


def main() -> None:
    rows = []
    for dt in (torch.float32, torch.bfloat16):
        x, w = torch.randn(1600, 576, dtype=dt), torch.randn(1536, 576, dtype=dt)
        s = median_time(lambda x=x, w=w: x @ w.T, 20)
        rows.append(
            {"what": "matmul 1600x576x1536", "dtype": str(dt), "seconds": s, "gflops": 2 * 1600 * 576 * 1536 / s / 1e9}
        )
    src = resolve_model("embedded")
    ids = torch.randint(0, 49000, (16, 100))
    for dt in (torch.float32, torch.bfloat16):
        m = load_model(src, dt, "cpu")
        with torch.inference_mode():
            s = median_time(lambda m=m: m(input_ids=ids, logits_to_keep=1))
        rows.append(
            {
                "what": "SmolLM2-135M forward, 16 x 100 tokens",
                "dtype": str(dt),
                "seconds": s,
                "gflops": 2 * sum(p.numel() for p in m.parameters()) * ids.numel() / s / 1e9,
            }
        )
    OUT.mkdir(exist_ok=True)
    threads, cpu = torch.get_num_threads(), cpu_name()
    (OUT / "bf16_probe.json").write_text(
        json.dumps({"cores": os.cpu_count(), "threads": threads, "cpu": cpu, "rows": rows}, indent=2)
    )
    lines = [
        f"bf16 vs fp32 on {cpu}, {os.cpu_count()} cores, {threads} torch thread(s) "
        "(`python benchmarks/bf16_probe.py`, medians)",
        "",
        "| what | dtype | seconds | GFLOP/s |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['what']} | {r['dtype']} | {r['seconds']:.3f} | {r['gflops']:.0f} |" for r in rows]
    (OUT / "bf16_probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
