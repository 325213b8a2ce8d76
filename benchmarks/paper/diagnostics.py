"""Why selection helps or not, from what a run stored: the confidence score's AUROC overall and within one
answer class, each class's accuracy and confidence, the labels other rules would have given, and what the
evolved model was trained on and answers."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from semievol.rundir import stage_dirs
from semievol.stages.scoring import decide, mean_distributions


def predictions(run_dir: Path, model: str) -> list[dict[str, Any]] | None:
    """The run's test-split predictions of one model (``predictions_<model>.jsonl``, in the test file's order)."""
    p = run_dir / "evaluate" / f"predictions_{model}.jsonl"
    if not p.exists():
        return None
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def class_right(preds: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per gold answer on the test split: [rows answered right, rows] (which classes a model has learnt)."""
    out: dict[str, list[int]] = {}
    for r in preds:
        c = out.setdefault(str(r["gold"]), [0, 0])
        c[0] += bool(r["correct"])
        c[1] += 1
    return dict(sorted(out.items()))


def last_evolve_steps(summary: dict[str, Any]) -> int | None:
    """Optimizer steps of the run's last evolve stage (``evolve``, ``evolve_r2``, ...)."""
    training = summary["metrics"].get("training", {})
    rounds = sorted((int(k.partition("_r")[2] or 1), v) for k, v in training.items() if k.split("_r")[0] == "evolve")
    return rounds[-1][1].get("steps") if rounds else None


def selected_counts(run_dir: Path) -> dict[str, int] | None:
    """Pseudo-labels kept by the last round's selection, by answer (the class balance the evolved model is
    trained on)."""
    found = [d / "pseudo_labels.jsonl" for d in stage_dirs(run_dir, "select") if (d / "pseudo_labels.jsonl").exists()]
    if not found:
        return None
    p = found[-1]
    rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    return dict(sorted(Counter(r["answer"] for r in rows if r["selected"]).items()))


def auroc(scores: list[float], positive: list[bool]) -> float | None:
    """Chance that a random positive scores above a random negative (ties count half); None if one side is empty."""
    pos = [x for x, p in zip(scores, positive, strict=True) if p]
    neg = [x for x, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def alternatives(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of the labels other rules would have given the same rows, from what the run stored: each
    configuration alone, their majority vote (ties to the first configuration's answer), the justification
    restricted to the candidates' answers, and that after batch calibration (each option's probability
    divided by its mean over the rows with as many options, a fix for a position bias of the justifier)."""
    if not rows or not all(r.get("votes") for r in rows):
        return {}

    def rate(answers: list[str | None]) -> float:
        return sum(a == r["gold"] for a, r in zip(answers, rows, strict=True)) / len(rows)

    out = {}
    for i, v in enumerate(rows[0]["votes"]):
        out[f"config {v['config']}"] = rate([r["votes"][i]["answer"] if len(r["votes"]) > i else None for r in rows])
    out["majority vote"] = rate([Counter(v["answer"] for v in r["votes"]).most_common(1)[0][0] for r in rows])
    if all(r.get("justify_dist") for r in rows):
        priors = mean_distributions([r["justify_dist"] for r in rows])

        def pick(r: dict[str, Any], calibrate: bool) -> str:
            d = r["justify_dist"]
            # the select stage's own rule (select.candidates_only, select.calibrate): ties to the first letter
            return decide(d, [v["answer"] for v in r["votes"]], priors[len(d)] if calibrate else None, "entropy")[0]

        out["justified, kept to the candidates"] = rate([pick(r, False) for r in rows])
        out["justified, candidates, batch-calibrated"] = rate([pick(r, True) for r in rows])
    out["justified (the run)"] = rate([r["answer"] for r in rows])
    return out


def diagnose(run_dir: Path) -> dict[str, Any] | None:
    """Why selection helps or not: does the confidence score rank right pseudo-labels above wrong ones, overall
    and within one answer class; how accurate and how confident each answer class is; and whether agreement
    among the configurations tells right from wrong."""
    p = run_dir / "select" / "pseudo_labels.jsonl"
    if not p.exists():
        return None
    rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("correct") is not None]
    if not rows:
        return None
    conf = [-r["score"] for r in rows]  # lower score = more confident
    by_answer: dict[str, Any] = {}
    within = []
    for a in sorted({r["answer"] for r in rows}):
        rs = [r for r in rows if r["answer"] == a]
        by_answer[a] = {
            "n": len(rs),
            "accuracy": sum(r["correct"] for r in rs) / len(rs),
            "median_score": statistics.median(r["score"] for r in rs),
            "selected": sum(r["selected"] for r in rs),
        }
        if (w := auroc([-r["score"] for r in rs], [r["correct"] for r in rs])) is not None:
            within.append((w, len(rs)))
    groups = {
        "unanimous": [r for r in rows if r["unanimous"]],
        "disagreeing": [r for r in rows if not r["unanimous"]],
    }
    return {
        "alternatives": alternatives(rows),
        "auroc": auroc(conf, [r["correct"] for r in rows]),
        "auroc_within_answer": sum(w * n for w, n in within) / sum(n for _, n in within) if within else None,
        "by_answer": by_answer,
        "gold": dict(sorted(Counter(r["gold"] for r in rows).items())),
        **{
            k: {"n": len(v), "accuracy": sum(r["correct"] for r in v) / len(v) if v else None}
            for k, v in groups.items()
        },
    }
