"""Do the kept pseudo-labels say anything the warm model does not (issue 22)?

Recipe v4's teacher averages two option distributions, the warm model's own vote (``warm:0:0``) and the
embedder's logistic regression (``probe:0:0``), and class_rank keeps a share of the rows. The warm model has
fitted its labeled rows to a loss near 1e-5, so its distributions are near one-hot and an average follows it:
a kept label then repeats the warm model's answer, and evolve is taught nothing new. This script takes a
finished run's votes and, for several ways of combining the two teachers, runs class_rank at the run's theta
and counts what is kept, how much of it is right, and how much of it differs from the warm model's own answer
(and how much of that is right). No model is trained or asked; the gold answers are the unlabeled split's,
which a user does not have, and no test split is read.

Combinations: ``mean`` (the recipe's, without its alignment step; class_rank already ranks each class
relative to its mean), ``rank_mean`` (each teacher's probability of a class replaced by its rank among the
rows, then averaged: scale-free, so an overconfident teacher does not outvote the other), ``warm_t0.1`` (the
warm model's distribution flattened, p ** 0.1 renormalised, before the average), and each teacher alone.

    python benchmarks/teacher_mix.py runs/recipe_dev/fpb/l64/seed0/v4_resume_r35 [more run folders]

Writes benchmarks/results/teacher/teacher_mix.{json,md} (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src")]

from select_rules import cell_name  # noqa: E402

from semievol.answers import LETTERS  # noqa: E402
from semievol.stages.scoring import WARM_OWN, class_rank  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "teacher"


def ranks(d: np.ndarray) -> np.ndarray:
    """Each column's values replaced by their rank among the rows, in (0, 1]; ties share their mean rank."""
    out = np.empty_like(d)
    for c in range(d.shape[1]):
        order = np.argsort(d[:, c], kind="stable")
        r = np.empty(len(d))
        r[order] = np.arange(1, len(d) + 1)
        for v in np.unique(d[:, c]):  # ties: the mean of their ranks
            tied = d[:, c] == v
            r[tied] = r[tied].mean()
        out[:, c] = r / len(d)
    return out


def flatten(d: np.ndarray, power: float) -> np.ndarray:
    p = np.maximum(d, 1e-12) ** power
    return p / p.sum(axis=1, keepdims=True)


MIXES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": lambda w, p: (w + p) / 2,
    "rank_mean": lambda w, p: (ranks(w) + ranks(p)) / 2,
    "warm_t0.1": lambda w, p: (flatten(w, 0.1) + p) / 2,
    "warm_only": lambda w, p: w,
    "probe_only": lambda w, p: p,
}


def load(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The warm model's and the probe's distributions, the gold answers, the labeled shares and theta."""
    rows = [json.loads(line) for line in open(run / "select" / "pseudo_labels.jsonl")]
    sel = json.loads((run / "select" / "selection.json").read_text())
    shares = np.asarray(next(iter(sel["target_shares"].values())), dtype=np.float64)

    def dist(r: dict[str, Any], config: str) -> list[float]:
        return next(v["dist"] for v in r["votes"] if v["config"] == config)

    warm = np.asarray([dist(r, WARM_OWN) for r in rows], dtype=np.float64)
    probe = np.asarray([dist(r, "probe:0:0") for r in rows], dtype=np.float64)
    gold = np.asarray([LETTERS.index(r["gold"]) for r in rows])
    return warm, probe, gold, shares, float(sel["theta"])


def grade(mixed: np.ndarray, warm: np.ndarray, gold: np.ndarray, shares: np.ndarray, theta: float) -> dict[str, Any]:
    label = class_rank(mixed, shares, theta)
    kept = label >= 0
    new = kept & (label != warm.argmax(axis=1))
    return {
        "kept": int(kept.sum()),
        "kept_right": round(float(np.mean(label[kept] == gold[kept])), 4),
        "new": int(new.sum()),
        "new_right": round(float(np.mean(label[new] == gold[new])), 4) if new.any() else None,
        "argmax_right": round(float(np.mean(mixed.argmax(axis=1) == gold)), 4),
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--name", default="teacher_mix")
    args = ap.parse_args()
    table = []
    for run in args.runs:
        warm, probe, gold, shares, theta = load(run)
        row = {
            "run": cell_name(run),
            "rows": len(gold),
            "theta": theta,
            "warm_right": round(float(np.mean(warm.argmax(axis=1) == gold)), 4),
            "probe_right": round(float(np.mean(probe.argmax(axis=1) == gold)), 4),
            "mixes": {name: grade(mix(warm, probe), warm, gold, shares, theta) for name, mix in MIXES.items()},
        }
        table.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/teacher_mix.py " + " ".join(str(r) for r in args.runs)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"command": command, "runs": table}, indent=1) + "\n")
    lines = [
        "# Do the kept pseudo-labels say anything the warm model does not?",
        "",
        f"Command: `{command}`. class_rank at each run's theta on two teachers' distributions combined as "
        "named (see the script's docstring); graded on the unlabeled rows' gold answers (no test split read). "
        "new: kept rows whose label differs from the warm model's own answer (warm:0:0), and the share of "
        "those right. argmax: every row's likeliest class under the combination.",
        "",
        "| run | warm right | probe right | combination | kept | kept right | new | new right | argmax right |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        for name, g in row["mixes"].items():
            lines.append(
                f"| {row['run']} | {pct(row['warm_right'])} | {pct(row['probe_right'])} | {name} | {g['kept']} | "
                f"{pct(g['kept_right'])} | {g['new']} | {pct(g['new_right'])} | {pct(g['argmax_right'])} |"
            )
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
