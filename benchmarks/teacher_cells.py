"""How right the v5 teacher is on the unlabeled rows of finished few-labels cells, and whether a gentler
alignment prior would make it more right.

A v5 cell (``benchmarks/few_labels.py``) teaches its student the five warm models' mean answer distribution on
every unlabeled row, rescaled to the labeled draw's class shares (``select.align``). At 16 labeled rows the
draw's shares are a noisy estimate (SST-2 seed 5: 10 of 16 rows 'negative' on a split that is 48%
'negative'), so one candidate fix is to shrink them toward uniform: shares = (count + a) / (n + K a), where
semievol uses a = 1. This script reads each cell's ``propagate/votes.jsonl`` and the draw its
``config.yaml`` names, and measures on the unlabeled split's gold answers (never a test split):

- each warm model's accuracy, the mean distribution's, before and after alignment at several ``a``;
- the mean negative log-likelihood of the gold answer under each target (what soft targets train on).

    python benchmarks/teacher_cells.py runs/few_labels/few_labels_v5 --out benchmarks/results/teacher

Reads run folders only (no model runs): seconds. Writes teacher_cells.json and teacher_cells.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from semievol.answers import LETTERS
from semievol.config import build_config, load_yaml
from semievol.stages.scoring import adjusted
from semievol.tasks import load_task
from semievol.views import label_indices

PSEUDO_COUNTS = (1.0, 4.0, 16.0, float("inf"))  # 1: semievol's add-one shares; inf: uniform shares


def shrunk_shares(counts: np.ndarray, a: float) -> np.ndarray:
    """The labeled class shares with ``a`` pseudo-rows added to every class (uniform when ``a`` is inf)."""
    if np.isinf(a):
        return np.full(len(counts), 1.0 / len(counts))
    return (counts + a) / (counts.sum() + a * len(counts))


def scores(targets: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy of the targets' likeliest answers and the mean negative log-likelihood of the gold answer."""
    picked = targets[np.arange(len(y)), y]
    return {"accuracy": float((targets.argmax(1) == y).mean()), "nll": float(-np.log(np.maximum(picked, 1e-12)).mean())}


def one_cell(cell: Path) -> dict:
    """The teacher's figures for one finished cell (its folder holds config.yaml and propagate/votes.jsonl)."""
    cfg = build_config(load_yaml(cell / "config.yaml"))
    task = load_task(cfg.task, seed=cfg.seed)
    labeled = task.labeled.examples
    n_opt = len(labeled[0].options or [])
    counts = np.bincount(label_indices(labeled, n_opt), minlength=n_opt).astype(np.float64)
    gold = {e.id: LETTERS.index(e.answer) for e in task.unlabeled.iter_examples()}
    rows = [json.loads(line) for line in (cell / "propagate" / "votes.jsonl").read_text().splitlines()]
    vote = [r["votes"][0] for r in rows]  # v5 has one configuration: the members' mean
    y = np.asarray([gold[r["id"]] for r in rows])
    dists = np.asarray([v["dist"] for v in vote], dtype=np.float64)
    dists /= dists.sum(axis=1, keepdims=True)
    members = np.asarray([[LETTERS.index(a) for a in v["members"]] for v in vote])
    mean = dists.mean(axis=0)
    aligned = {}
    for a in PSEUDO_COUNTS:
        prior = mean / shrunk_shares(counts, a)  # the divisor select.align uses, with these shares
        target = np.stack([adjusted(d, prior) for d in dists])
        aligned["uniform" if np.isinf(a) else f"a={a:g}"] = scores(target, y)
    return {
        "task": cfg.task.task,
        "labeled": len(labeled),
        "seed": cfg.seed,
        "draw_counts": counts.astype(int).tolist(),
        "unlabeled_gold_counts": np.bincount(y, minlength=n_opt).tolist(),
        "members": [float((members[:, j] == y).mean()) for j in range(members.shape[1])],
        "members_split": float((members != members[:, :1]).any(axis=1).mean()),
        "unaligned": scores(dists, y),
        "aligned": aligned,
    }


def markdown(cells: list[dict], command: str, machine: str) -> str:
    keys = list(cells[0]["aligned"])
    lines = [
        "# The v5 teacher on the unlabeled rows of finished cells",
        "",
        f"`{command}` ({machine}; reads run folders, no model runs). Accuracy of the teacher on the unlabeled",
        "split's gold answers (never a test split), in %, with the mean negative log-likelihood of the gold",
        "answer under the soft target in brackets. 'a=1' is what v5 trains on (the draw's class shares, add-one",
        "smoothed); larger a shrinks those shares toward uniform. 'split' = the share of rows on which the five",
        "warm models do not all agree.",
        "",
        "| cell | draw classes | warm models | split | mean, unaligned | " + " | ".join(keys) + " |",
        "|---|---|---|---|---|" + "---|" * len(keys),
    ]
    for c in cells:
        members = ", ".join(f"{100 * m:.1f}" for m in c["members"])
        cols = [f"{100 * s['accuracy']:.1f} ({s['nll']:.2f})" for s in [c["unaligned"], *c["aligned"].values()]]
        lines.append(
            f"| {c['task']} {c['labeled']} rows, seed {c['seed']} | {':'.join(map(str, c['draw_counts']))} | "
            f"{members} | {100 * c['members_split']:.0f}% | " + " | ".join(cols) + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="a few_labels recipe folder: <root>/<task>/l<n>/seed<s> cells")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher"))
    ap.add_argument("--machine", default="2-core Intel Xeon with AMX, no GPU")
    a = ap.parse_args()
    found = sorted(p.parent.parent for p in a.root.glob("*/l*/seed*/propagate/votes.jsonl"))
    found = [p for p in found if p.name.removeprefix("seed").isdigit()]  # recipe cells, not variants
    if not found:
        sys.exit(f"{a.root}: no finished cell (no <task>/l<n>/seed<s>/propagate/votes.jsonl under it)")
    cells = sorted((one_cell(p) for p in found), key=lambda c: (c["task"], c["labeled"], c["seed"]))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "teacher_cells.json").write_text(json.dumps(cells, indent=1) + "\n")
    command = f"python benchmarks/teacher_cells.py {a.root} --out {a.out}"
    (a.out / "teacher_cells.md").write_text(markdown(cells, command, a.machine))
    print((a.out / "teacher_cells.md").read_text())


if __name__ == "__main__":
    main()
