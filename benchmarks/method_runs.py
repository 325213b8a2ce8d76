"""SemiEvol end to end on the shipped example configs: base, warm (SFT) and evolved accuracy, pseudo-label
accuracy (all vs selected, per configuration) and wall time per stage.

    python benchmarks/method_runs.py --data-dir ../shared/data --tasks fpb,arc
    python benchmarks/method_runs.py --collect-only --tasks fpb,arc     # summarise finished runs/<task>

Each task runs `semievol run examples/<task>.yaml` (finished stages are skipped) and the script writes
benchmarks/results/method.json and method.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summarise(task: str) -> dict:
    rd = ROOT / "runs" / task
    m = json.loads((rd / "evaluate" / "metrics.json").read_text())
    timings = json.loads((rd / "timings.json").read_text()) if (rd / "timings.json").exists() else {}
    return {"task": task, "metrics": m, "timings": timings, "wall_seconds": round(sum(timings.values()), 1)}


def table(rows: list[dict], machine: str) -> str:
    out = [
        f"SemiEvol with the embedded SmolLM2-135M-Instruct, example configs (`examples/<task>.yaml`); {machine}.",
        "",
        "| task | base | warm (SFT) | SFT, compute-matched | evolved (SemiEvol) | pseudo-labels all | selected (coverage) | best single config | wall time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        mod = m["models"]

        def cell(name: str, mod: dict = mod) -> str:
            if name not in mod:
                return "-"
            rec = mod[name]
            return f"{pct(rec['accuracy'])} ({pct(rec['ci95'][0])}-{pct(rec['ci95'][1])})"

        pl = m.get("pseudo_labels") or {}
        sel = pl.get("selected")
        best = max(pl.get("per_config", {}).items(), key=lambda kv: kv[1]["accuracy"], default=None)
        sel_cell = f"{pct(sel['accuracy'])} ({pct(pl['coverage'])})" if sel else "-"
        out.append(
            f"| {r['task']} (test n={mod['base']['n']}) | {cell('base')} | {cell('warm')} | {cell('sft_matched')} | {cell('evolved')} | "
            f"{pct(pl['all']['accuracy']) if pl else '-'} | "
            f"{sel_cell} | "
            f"{best[0] + ' ' + pct(best[1]['accuracy']) if best else '-'} | {r['wall_seconds'] / 60:.0f} min |"
        )
    out.append("")
    out.append(
        "Accuracy with the 95% Wilson interval. Steps: "
        + "; ".join(
            f"{r['task']}: " + ", ".join(f"{k} {v['steps']}" for k, v in r["metrics"].get("training", {}).items())
            for r in rows
        )
        + "."
    )
    out.append("")
    out.append("Per configuration (accuracy on the unlabeled rows' gold answers, a diagnostic only):")
    out.append("")
    for r in rows:
        pl = r["metrics"].get("pseudo_labels") or {}
        cfgs = ", ".join(f"{c} {pct(v['accuracy'])}" for c, v in pl.get("per_config", {}).items())
        out.append(f"- {r['task']}: {cfgs}; votes unanimous on {pct(pl.get('agreement_rate', 0))} of questions")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--tasks", default="fpb,arc")
    ap.add_argument("--collect-only", action="store_true")
    args = ap.parse_args()
    rows = []
    for task in args.tasks.split(","):
        if not args.collect_only:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "semievol",
                    "run",
                    str(ROOT / "examples" / f"{task}.yaml"),
                    "--data-dir",
                    args.data_dir,
                ],
                check=True,
                cwd=ROOT,
            )
        rows.append(summarise(task))
    machine = f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU"
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "method.json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=2))
    (res / "method.md").write_text(table(rows, machine))
    print(table(rows, machine))


if __name__ == "__main__":
    main()
