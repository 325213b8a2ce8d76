"""The table's statistics: accuracy over seeds, paired differences on the same seeds, the row-paired
bootstrap that separates test-row noise from seed noise, and the issue's target check."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any


def acc(summary: dict[str, Any] | None, model: str) -> float | None:
    if not summary:
        return None
    rec = summary["metrics"]["models"].get(model)
    return None if rec is None else rec["accuracy"]


def stats(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and a t-based 95% interval of the mean over seeds."""
    n = len(values)
    if n == 0:
        return {"n": 0}
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else 0.0
    t95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(n, 1.96)
    half = t95 * sd / math.sqrt(n) if n > 1 else float("nan")
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "ci95": [mean - half, mean + half],
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def fmt(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "-"
    if s["n"] == 1:
        w = s.get("wilson95")
        return (
            f"{100 * s['mean']:.1f} [{100 * w[0]:.1f}, {100 * w[1]:.1f}] (1 seed)"
            if w
            else f"{100 * s['mean']:.1f} (1 seed)"
        )
    return f"{100 * s['mean']:.1f} ± {100 * s['sd']:.1f} [{100 * s['min']:.1f}, {100 * s['max']:.1f}]"


def seed_stats(summaries: list[dict[str, Any] | None], model: str) -> dict[str, Any]:
    """``stats`` of one model's accuracy over the runs that measured it; with a single run, that run's own 95%
    Wilson interval over the test rows as well (a one-seed standard deviation says nothing)."""
    measured = [r for r in summaries if acc(r, model) is not None]
    out = stats([acc(r, model) for r in measured])
    if out["n"] == 1:
        out["wilson95"] = measured[0]["metrics"]["models"][model]["ci95"]
    return out


def fmt_delta(s: dict[str, Any]) -> str:
    """A paired difference over seeds: the mean, then each seed's value (same seed, same data, other model)."""
    if not s.get("n"):
        return "-"
    return f"{100 * s['mean']:+.1f} ({', '.join(f'{100 * v:+.1f}' for v in s['values'])})"


def delta(d: dict[str, Any]) -> str:
    """A difference with its interval (``row_paired``'s or ``tasks_pooled``'s), or '-' where none was measured."""
    if "ci95" not in d:
        return "-"
    lo, hi = d["ci95"]
    return f"{100 * d['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def paired(a: dict[int, Any], model_a: str, b: dict[int, Any], model_b: str) -> dict[str, Any]:
    """Stats of accuracy(a, model_a) - accuracy(b, model_b) over the seeds where both were measured."""
    diffs = [
        x - y for s in sorted(a) if (x := acc(a[s], model_a)) is not None and (y := acc(b.get(s), model_b)) is not None
    ]
    return stats(diffs)


def redraw(diff: dict[int, list[float]], rng: random.Random, rows: list[int] | None = None) -> float:
    """One draw of the two-level bootstrap: the seeds drawn with replacement, then the test rows (the same rows
    for every seed drawn; ``rows`` where the caller draws them once for several differences), and the mean
    per-row difference over both."""
    seeds = list(diff)
    n = len(diff[seeds[0]])
    drawn = [seeds[rng.randrange(len(seeds))] for _ in seeds]
    if rows is None:
        rows = [rng.randrange(n) for _ in range(n)]
    return sum(diff[s][i] for s in drawn for i in rows) / (len(rows) * len(drawn))


def row_paired(pairs: dict[int, tuple[list[bool], list[bool]]], draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Model A minus model B over the test rows, per seed and pooled: is a difference larger than the noise of
    drawing these test rows, and than the noise of training on another seed?

    ``pairs`` maps a seed to (A right?, B right?) on the same test rows (every seed shares the test split); B
    may be a share per row instead (the mean of several models' answers), its difference then a fraction.
    Per seed: the difference, the rows only A / only B got right, and a 95% paired bootstrap interval over the
    rows. Pooled: the mean over seeds with a two-level bootstrap that redraws the seeds, then the test rows
    (the same rows for every seed drawn), so both sources of noise are in the interval.
    """
    if not pairs:
        return {"n_seeds": 0}
    rng = random.Random(seed)
    seeds = sorted(pairs)
    n = len(pairs[seeds[0]][0])
    if any(len(a) != n or len(b) != n for a, b in pairs.values()):
        raise ValueError("row_paired: every seed's predictions must cover the same test rows")
    diff = {s: [float(a) - float(b) for a, b in zip(*pairs[s], strict=True)] for s in seeds}
    per_seed = {}
    for s in seeds:
        d = diff[s]
        boots = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
        per_seed[s] = {
            "diff": sum(d) / n,
            "only_a": d.count(1),
            "only_b": d.count(-1),
            "ci95": [boots[int(0.025 * draws)], boots[int(0.975 * draws) - 1]],
        }
    pooled = sorted(redraw(diff, rng) for _ in range(draws))
    mean = statistics.fmean(sum(diff[s]) / n for s in seeds)
    return {
        "n_seeds": len(seeds),
        "rows": n,
        "mean": mean,
        "per_seed": per_seed,
        "ci95": [pooled[int(0.025 * draws)], pooled[int(0.975 * draws) - 1]],
        "p_above_zero": sum(x > 0 for x in pooled) / draws,
    }


def tasks_pooled(
    tasks: dict[str, dict[int, tuple[list[bool], list[bool]]]], draws: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Model A minus model B averaged over tasks, each task weighted equally whatever its test split's size.

    ``tasks`` maps a task to ``row_paired``'s argument for it. The tasks are fixed (they are the question, not
    a sample), so the bootstrap redraws, within each task, its seeds and then its test rows, and averages the
    tasks' means: the interval holds seed and test-row noise, not the choice of tasks.
    """
    tasks = {t: p for t, p in tasks.items() if p}
    if not tasks:
        return {"n_tasks": 0}
    rng = random.Random(seed)
    diff = {
        t: {s: [float(a) - float(b) for a, b in zip(*p[s], strict=True)] for s in sorted(p)} for t, p in tasks.items()
    }
    boots = sorted(statistics.fmean(redraw(d, rng) for d in diff.values()) for _ in range(draws))
    per_task = {t: statistics.fmean(sum(v) / len(v) for v in d.values()) for t, d in diff.items()}
    return {
        "n_tasks": len(tasks),
        "n_cells": sum(len(d) for d in diff.values()),
        "mean": statistics.fmean(per_task.values()),
        "per_task": per_task,
        "ci95": [boots[int(0.025 * draws)], boots[int(0.975 * draws) - 1]],
    }


def gap_pooled(
    a: dict[int, tuple[list[Any], list[Any]]],
    b: dict[int, tuple[list[Any], list[Any]]],
    draws: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """One paired difference minus another, each ``row_paired``'s argument, measured on the same test rows
    under different draws (the gain at 16 labeled rows against the gain at 128). Each draw of the bootstrap
    redraws each side's seeds on its own and one set of test rows for both, as the rows are shared."""
    if not a or not b:
        return {"n_seeds": [len(a), len(b)]}
    rng = random.Random(seed)
    diff = [{s: [float(x) - float(y) for x, y in zip(*p[s], strict=True)] for s in sorted(p)} for p in (a, b)]
    n = len(next(iter(diff[0].values())))
    if any(len(d) != n for side in diff for d in side.values()):
        raise ValueError("gap_pooled: both sides must cover the same test rows")
    boots = []
    for _ in range(draws):
        rows = [rng.randrange(n) for _ in range(n)]
        boots.append(redraw(diff[0], rng, rows) - redraw(diff[1], rng, rows))
    boots.sort()
    mean = [statistics.fmean(sum(d) / n for d in side.values()) for side in diff]
    return {
        "n_seeds": [len(a), len(b)],
        "mean": mean[0] - mean[1],
        "ci95": [boots[int(0.025 * draws)], boots[int(0.975 * draws) - 1]],
    }


def target_check(main: dict[str, Any]) -> dict[str, Any]:
    """The issue's target on one task: SemiEvol at least 1 point above SFT and above compute-matched SFT, and
    its lowest seed above both controls' highest seeds (seed ranges that do not overlap)."""
    ev, sft, mt = main["evolved"], main["warm"], main["sft_matched"]
    if not ev.get("n") or not sft.get("n") or not mt.get("n"):
        return {"met": None}
    margins = {
        "mean_over_sft": ev["mean"] - sft["mean"],
        "mean_over_matched": ev["mean"] - mt["mean"],
        "lowest_over_highest_sft": ev["min"] - sft["max"],
        "lowest_over_highest_matched": ev["min"] - mt["max"],
    }
    met = (
        ev["n"] > 1
        and margins["mean_over_sft"] >= 0.01
        and margins["mean_over_matched"] >= 0.01
        and margins["lowest_over_highest_sft"] > 0
        and margins["lowest_over_highest_matched"] > 0
    )
    return {"met": met, **margins}
