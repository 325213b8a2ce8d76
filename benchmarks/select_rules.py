"""Which selection rule keeps the truest pseudo-labels from a finished run's votes (issue 22)?

For each run folder given, every rule in ``RULES`` runs `semievol select` on a copy of the run's sft, propagate
and cache stages (the votes are reused: no model is trained or asked again), and the kept pseudo-labels are
graded against the unlabeled rows' gold answers: how many were kept, how many were right, and, per class they
were kept for, how many and how precise. A rule that keeps the minority classes at chance precision teaches
them wrong; one that keeps only the likeliest class teaches no balance: the table shows that trade.

The gold answers of the unlabeled split are what a user does not have; this is a benchmark of the rules, not a
step of a run, and no test split is read.

    python benchmarks/select_rules.py runs/few_labels/few_labels_v3/fpb/l64/seed2 [more run folders]

Writes benchmarks/results/select_rules/select_rules.{json,md} (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "select_rules"
WORK = ROOT / "runs" / "select_rules"
REUSED = ("sft", "propagate", "cache")  # what select reads; copied, never touched in the original folder

# rule name -> overrides of the run's select settings
RULES: dict[str, dict[str, Any]] = {
    "class_rank_50": {"rule": "class_rank", "theta": 50},
    "class_rank_35": {"rule": "class_rank", "theta": 35},
    "class_rank_25": {"rule": "class_rank", "theta": 25},
    "class_quota_50": {"rule": "class_quota", "theta": 50},
    "class_percentile_50": {"rule": "class_percentile", "theta": 50},
    "percentile_50": {"rule": "percentile", "theta": 50},
    "percentile_25": {"rule": "percentile", "theta": 25},
}


def grade(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """All and kept pseudo-labels against the gold answers, and the kept ones per class they were kept for."""
    graded = [r for r in rows if r.get("gold") is not None]
    kept = [r for r in graded if r["selected"]]
    per_class = collections.defaultdict(lambda: [0, 0])
    for r in kept:
        per_class[r["answer"]][0] += 1
        per_class[r["answer"]][1] += r["answer"] == r["gold"]
    return {
        "rows": len(graded),
        "all_right": sum(r["answer"] == r["gold"] for r in graded) / len(graded) if graded else None,
        "kept": len(kept),
        "kept_right": sum(r["answer"] == r["gold"] for r in kept) / len(kept) if kept else None,
        "per_class": {c: {"kept": n, "right": k / n} for c, (n, k) in sorted(per_class.items())},
        "gold_classes": sorted({r["gold"] for r in graded}),
    }


def run_rule(rd: Path, name: str, work: Path) -> dict[str, Any]:
    """`semievol select` of ``rd``'s settings with rule ``name``, on a copy of the stages it reads."""
    dest = work / name
    out = dest / "select" / "pseudo_labels.jsonl"
    if not out.exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for stage in REUSED:
            if (rd / stage).is_dir():
                shutil.copytree(rd / stage, dest / stage)
        cfg = yaml.safe_load((rd.parent / f"{rd.name}.yaml").read_text())
        cfg["run_dir"] = str(dest)
        cfg.setdefault("recipe", "paper")  # the run's settings as they were, no recipe's underneath
        cfg["select"] = {**cfg.get("select", {}), **RULES[name]}
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        with open(work / f"{name}.log", "w") as log:
            subprocess.run([sys.executable, "-m", "semievol", "select", str(path)], check=True, stdout=log, stderr=log)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return grade(rows)


def cell_name(rd: Path) -> str:
    """task/l64/seed2 for a few_labels cell; task/l64/seed0/variant for a recipe_dev run (one folder deeper)."""
    parts = rd.resolve().parts
    return "/".join(parts[-3:] if parts[-2].startswith("l") and parts[-2][1:].isdigit() else parts[-4:])


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Selection rules on a run's votes: how many pseudo-labels each keeps, and how many are right",
        "",
        "Command: `python benchmarks/select_rules.py RUN_DIR ...`: `semievol select` with each rule on a copy "
        "of the run's votes; the kept rows graded against the unlabeled split's gold answers (which a user does "
        "not have). all: every row's answer after the rule (class_rank relabels the rows it keeps with the class "
        "it kept them for); per class: rows kept for that class @ the share of them right. Rules: "
        + "; ".join(f"`{k}` {json.dumps(v)}" for k, v in RULES.items()),
        "",
        "| run | rule | kept | right: all / kept | kept minus all | per class kept @ right |",
        "|---|---|---|---|---|---|",
    ]
    for cell, rules in results.items():
        for name, g in rules.items():
            if g["kept_right"] is None:
                lines.append(f"| {cell} | {name} | 0 | - | - | - |")
                continue
            per = ", ".join(f"{c} {p['kept']}@{100 * p['right']:.0f}" for c, p in g["per_class"].items())
            missing = [c for c in g["gold_classes"] if c not in g["per_class"]]
            per += f" (none kept: {', '.join(missing)})" if missing else ""
            lines.append(
                f"| {cell} | {name} | {g['kept']} | {100 * g['all_right']:.1f} / {100 * g['kept_right']:.1f} | "
                f"{100 * (g['kept_right'] - g['all_right']):+.1f} | {per} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders (their YAML beside them)")
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--name", default="select_rules")
    args = ap.parse_args()
    names = args.rules.split(",")
    if unknown := [n for n in names if n not in RULES]:
        raise SystemExit(f"--rules: unknown {', '.join(unknown)}; known: {', '.join(RULES)}")
    results: dict[str, dict[str, Any]] = {}
    for rd in args.runs:
        if not (rd / "propagate").is_dir() or not (rd.parent / f"{rd.name}.yaml").exists():
            raise SystemExit(f"{rd}: not a finished run folder with its YAML beside it")
        work = WORK / cell_name(rd)
        work.mkdir(parents=True, exist_ok=True)
        results[cell_name(rd)] = {n: run_rule(rd, n, work) for n in names}
        RESULTS.mkdir(parents=True, exist_ok=True)  # written after every run folder: a killed run keeps what it did
        (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
        (RESULTS / f"{args.name}.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
