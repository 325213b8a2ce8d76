"""Gathers the finished runs under the runs folder into the table's results (the JSON the markdown is
rendered from): the main comparison per task, the variants and label scarcity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .diagnostics import class_right, diagnose, last_evolve_steps, predictions, selected_counts
from .settings import MODEL_NAMES, PROFILES, SCARCITY, VARIANTS
from .stats import acc, paired, row_paired, seed_stats, stats, target_check
from .subsets import subsample_positions


def collect(out: Path, profile: str, tasks: list[str], seeds: list[int]) -> dict[str, Any]:
    """The results of ``profile``'s runs under ``out`` for these tasks and seeds (missing runs are left out)."""
    res: dict[str, Any] = {"profile": profile, "sizes": {t: PROFILES[profile][t] for t in tasks}, "tasks": {}}
    for task in tasks:
        tdir = out / profile / task
        tune = out / "tune" / task / "choice.json"
        runs = {s: load_summary(tdir / f"s{s}" / "semievol") for s in seeds}
        res["tasks"][task] = {
            "tuning": json.loads(tune.read_text()) if tune.exists() else None,
            "main": main_results(tdir, profile, task, runs),
            "variants": variant_results(tdir, runs),
            "scarcity": scarcity_results(tdir, seeds),
        }
    return res


def main_results(tdir: Path, profile: str, task: str, runs: dict[int, Any]) -> dict[str, Any]:
    """Base, SFT, compute-matched SFT and SemiEvol over the seeds' main runs, with their pseudo-labels."""
    rec: dict[str, Any] = {}
    for model in ("base", "warm", "sft_matched", "evolved"):
        rec[model] = seed_stats(list(runs.values()), model)
    rec["minus_sft"] = paired(runs, "evolved", runs, "warm")
    rec["minus_matched"] = paired(runs, "evolved", runs, "sft_matched")
    rec["target"] = target_check(rec)
    done = [s for s, r in runs.items() if r]
    # each seed's test rows, right or wrong, per model (read once, used by the three summaries below)
    preds = {s: {m: predictions(tdir / f"s{s}" / "semievol", m) for m in MODEL_NAMES} for s in done}
    right = {s: {m: [bool(r["correct"]) for r in p] if p else None for m, p in per.items()} for s, per in preds.items()}
    rec["class_right"] = {s: {m: class_right(p) if p else None for m, p in per.items()} for s, per in preds.items()}
    rec["row_paired"] = {
        name: row_paired({s: (r["evolved"], r[other]) for s, r in right.items() if r["evolved"] and r[other]})
        for other, name in (("warm", "vs_sft"), ("sft_matched", "vs_matched"))
    }
    finished = [r for r in runs.values() if r]
    rec["answers"] = {
        m: [r["metrics"]["models"].get(m, {}).get("prediction_counts") for r in finished]
        for m in ("warm", "sft_matched", "evolved")
    }
    rec["selected_labels"] = [selected_counts(tdir / f"s{s}" / "semievol") for s in done]
    rec["diagnostics"] = {s: d for s in done if (d := diagnose(tdir / f"s{s}" / "semievol"))}
    pl_all = [r["metrics"]["pseudo_labels"]["all"]["accuracy"] for r in finished]
    pl_sel = [
        r["metrics"]["pseudo_labels"]["selected"]["accuracy"]
        for r in finished
        if r["metrics"]["pseudo_labels"].get("selected")
    ]
    rec["pseudo_all"], rec["pseudo_selected"] = stats(pl_all), stats(pl_sel)
    if profile == "session_fulltest":  # the same runs scored on the 'session' profile's test rows only
        k = PROFILES["session"][task]["test"]
        rec["on_session_rows"] = {
            m: {
                s: sum(c[i] for i in subsample_positions(task, "test", len(c), k)) / k
                for s, r in right.items()
                if (c := r[m])
            }
            for m in MODEL_NAMES
        }
    rec["wall_minutes"] = stats([r["wall_seconds"] / 60 for r in finished])
    rec["agreement"] = stats([r["metrics"]["pseudo_labels"].get("agreement_rate", 0) for r in finished])
    return rec


def variant_results(tdir: Path, runs: dict[int, Any]) -> dict[str, Any]:
    """Each variant's evolved model over the seeds it ran, paired with SemiEvol's and matched SFT's seeds."""
    rec: dict[str, Any] = {}
    for v in VARIANTS:
        found = {s: x for s in runs if (x := load_summary(tdir / f"s{s}" / v))}
        vs = list(found.values())
        if vs:
            rec[v] = {
                "evolved": seed_stats(vs, "evolved"),
                "minus_semievol": paired(found, "evolved", runs, "evolved"),
                "minus_matched": paired(found, "evolved", runs, "sft_matched"),
                "pseudo_selected": stats(
                    [
                        x["metrics"]["pseudo_labels"]["selected"]["accuracy"]
                        for x in vs
                        if x["metrics"].get("pseudo_labels", {}).get("selected")
                    ]
                ),
                "coverage": stats(
                    [x["metrics"]["pseudo_labels"]["coverage"] for x in vs if x["metrics"].get("pseudo_labels")]
                ),
                "steps": [last_evolve_steps(x) for x in vs],
                "answers": [x["metrics"]["models"].get("evolved", {}).get("prediction_counts") for x in vs],
                "selected_labels": [selected_counts(tdir / f"s{s}" / v) for s in found],
            }
    return rec


def scarcity_results(tdir: Path, seeds: list[int]) -> dict[str, Any]:
    """SFT and SemiEvol per labeled count, over the seeds with any scarcity run ('all' is the seed's SemiEvol
    run, over those seeds only)."""
    rec: dict[str, Any] = {}
    sc_seeds = [s for s in seeds if any(load_summary(tdir / f"s{s}" / f"labeled_{n}") for n in SCARCITY if n)]
    for n in SCARCITY if sc_seeds else []:
        name = f"labeled_{n}" if n else "semievol"
        at_n = {s: x for s in sc_seeds if (x := load_summary(tdir / f"s{s}" / name))}
        xs = list(at_n.values())
        if xs:
            rec[str(n or "all")] = {
                "sft": stats([acc(x, "warm") for x in xs]),
                "sft_matched": stats([a for x in xs if (a := acc(x, "sft_matched")) is not None]),
                "semievol": stats([acc(x, "evolved") for x in xs]),
                "minus_sft": paired(at_n, "evolved", at_n, "warm"),
                "minus_matched": paired(at_n, "evolved", at_n, "sft_matched"),
                "sft_minutes": stats([x["timings"].get("sft", 0) / 60 for x in xs]),
                # SFT is SemiEvol's first stage; the rest is the overhead (evaluation and the control left out)
                "semievol_minutes": stats(
                    [
                        sum(
                            v
                            for k, v in x["timings"].items()
                            if k == "sft" or k.startswith(("propagate", "select", "evolve"))
                        )
                        / 60
                        for x in xs
                    ]
                ),
            }
    return rec


def load_summary(run_dir: Path) -> dict[str, Any] | None:
    p = run_dir / "bench_summary.json"
    return json.loads(p.read_text()) if p.exists() else None
