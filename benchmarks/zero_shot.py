"""Zero-shot accuracy of a model on the full test splits of ARC, FPB and PubMedQA, with wall time.

    python benchmarks/zero_shot.py --data-dir ../shared/data [--model embedded]

Runs `semievol eval` per task (one process each, so each time includes loading the model) and writes
benchmarks/results/zero_shot.json and zero_shot.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--tasks", default="arc,fpb,pubmedqa")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks.split(","):
        dest = out / f"zero_shot_{task}.json"
        t = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "semievol",
                "--quiet",
                "eval",
                "--task",
                task,
                "--data-dir",
                args.data_dir,
                "--model",
                args.model,
                "--out",
                str(dest),
            ],
            check=True,
        )
        rec = json.loads(dest.read_text())
        rec["wall_seconds_with_load"] = round(time.time() - t, 1)
        rows.append(rec)
        dest.unlink()
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, no GPU"
    (out / "zero_shot.json").write_text(
        json.dumps({"machine": machine, "model": args.model, "results": rows}, indent=2)
    )
    lines = [
        f"Zero-shot accuracy, model `{args.model}`, full test splits; {machine}.",
        "",
        "| task | accuracy | 95% interval | n | scoring time | wall time incl. model load |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {100 * r['accuracy']:.1f}% | {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}% | "
            f"{r['n']} | {r['seconds']:.0f} s | {r['wall_seconds_with_load']:.0f} s |"
        )
    (out / "zero_shot.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
