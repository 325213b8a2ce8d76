"""Running the table: one ``semievol run`` per configuration (a finished one is skipped, a changed one runs
again), the SFT learning rate and epochs chosen on the validation slice, and the loops over seeds, variants
and labeled counts."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .render import num
from .settings import FREE_TASKS, PROFILES, VARIANTS, Settings, merge, scarcity_counts
from .stats import acc
from .subsets import read_rows, subset, tune_split

ROOT = Path(__file__).resolve().parents[2]  # the repository: semievol runs from here
PAPER = {"recipe": "paper"}  # the paper's procedure and its baselines at any labeled count, no recipe underneath


def semievol(args: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        r = subprocess.run([sys.executable, "-m", "semievol", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"semievol {' '.join(args)} failed (exit {r.returncode}); see {log}")


def run_config(run_dir: Path, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Run (or resume) one configuration; returns its metrics, or None if it failed."""
    metrics = run_dir / "evaluate" / "metrics.json"
    summary = run_dir / "bench_summary.json"
    text = yaml.safe_dump(PAPER | cfg | {"run_dir": str(run_dir)}, sort_keys=False)
    written = run_dir / "bench_config.yaml"
    if summary.exists() and written.exists() and written.read_text() == text:
        return json.loads(summary.read_text())
    # a changed config (e.g. other tuned hyper-parameters) runs again; semievol keeps the stages it can
    summary.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    written.write_text(text)
    t = time.time()
    try:
        semievol(["--quiet", "run", str(written)], run_dir / "bench.log")
    except RuntimeError as e:
        print(f"  FAILED: {e}", flush=True)
        return None
    out = {
        "metrics": json.loads(metrics.read_text()),
        "wall_seconds": round(time.time() - t, 1),
        "timings": json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").exists() else {},
    }
    summary.write_text(json.dumps(out, indent=2))
    return out


def choose_sft(settings: Settings, task: str, data: Path, lrs: list[float], epochs: list[int]) -> dict[str, Any]:
    """Warm-model accuracy on the validation slice for each (learning rate, epochs); the best pair is used.

    Epochs are tuned as well as the rate: too few steps leave a small model answering the majority class,
    and a fixed epoch count would hand SFT and the warm model that collapsed start.
    Ties in accuracy go to the lower mean negative log-probability of the gold option on the same slice.
    """
    rec_path = settings.out / "tune" / task / "choice.json"
    if rec_path.exists():
        rec = json.loads(rec_path.read_text())
        if (
            sorted(rec.get("epochs_grid", [])) == sorted(epochs)
            and sorted(rec.get("lr_grid", [])) == sorted(lrs)
            and "gold_nll" in rec
        ):
            return rec
    tdata = tune_split(task, data, settings.out)
    scores: dict[str, float] = {}
    nll: dict[str, float] = {}
    keys = {(lr, ep): f"lr{lr:g}_ep{ep}" for ep in epochs for lr in lrs}
    for (lr, ep), key in keys.items():
        rd = settings.out / "tune" / task / key
        cfg = settings.task_config(task, tdata, 0, {"lr": lr, "epochs": ep})
        cfg["evaluate"] = {"models": ["warm"]}
        rd.mkdir(parents=True, exist_ok=True)
        (rd / "cfg.yaml").write_text(yaml.safe_dump(PAPER | cfg | {"run_dir": str(rd)}, sort_keys=False))
        semievol(["--quiet", "sft", str(rd / "cfg.yaml")], rd / "bench.log")
        res = rd / "val.json"
        # a free-form task has no gold NLL; an older choice result lacks it: evaluate again
        if not res.exists() or (task not in FREE_TASKS and "gold_nll" not in json.loads(res.read_text())):
            semievol(
                ["--quiet", "eval", str(rd / "cfg.yaml"), "--adapter", str(rd / "sft"), "--out", str(res)],
                rd / "bench.log",
            )
        val = json.loads(res.read_text())
        scores[key], nll[key] = val["accuracy"], val.get("gold_nll")
        print(
            f"  tune {task} lr {lr:g} epochs {ep}: validation accuracy {scores[key]:.3f}, gold-option NLL "
            f"{num(nll[key])}, predicted {val.get('prediction_counts', '-')}",
            flush=True,
        )
    lr, ep = pick_tuned(list(keys), [scores[k] for k in keys.values()], [nll[k] for k in keys.values()])
    rec = {
        "grid": scores,
        "gold_nll": nll,
        "lr": lr,
        "epochs": ep,
        "lr_grid": lrs,
        "epochs_grid": epochs,
        "validation_rows": len(read_rows(next((tdata / task).glob("test.*")))[1]),
    }
    rec_path.write_text(json.dumps(rec, indent=2))
    return rec


def pick_tuned(pairs: list[Any], accuracy: list[float], gold_nll: list[float | None]) -> Any:
    """The pair with the best validation accuracy. On a 25-row slice accuracy ties often, and the lower
    negative log-probability of the gold option breaks the tie; a free-form task has none, so its ties go
    to the first pair of the grid (the lowest rate and fewest epochs)."""

    def key(i: int) -> tuple[float, float, int]:
        return accuracy[i], -(gold_nll[i] if gold_nll[i] is not None else math.inf), -i

    return pairs[max(range(len(pairs)), key=key)]


def copy_run(src: Path, dest: Path) -> None:
    """Start a variant from a finished run: keep sft/propagate/select/evolve/cache, drop the rest."""
    if dest.exists():
        return
    keep = {"sft", "propagate", "select", "evolve", "cache", "sft_matched"}
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_dir() and p.name in keep:
            shutil.copytree(p, tmp / p.name)
    os.replace(tmp, dest)


def run_main(settings: Settings, task: str, data_dir: Path) -> None:
    """Subsample the task, choose the SFT settings, and run SemiEvol on every seed that needs it (a seed of
    the variants or scarcity needs its main run as the start of theirs)."""
    data = subset(task, data_dir, PROFILES[settings.profile][task], settings.out)
    tune = choose_sft(settings, task, data, list(settings.lr_grid), list(settings.epochs_grid))
    print(
        f"{task}: lr {tune['lr']:g}, {tune['epochs']} epochs chosen on the validation slice {tune['grid']}",
        flush=True,
    )
    for seed in settings.seeds:
        sdir = settings.out / settings.profile / task / f"s{seed}"
        if "main" in settings.parts or seed in settings.variant_seeds:
            r = run_config(sdir / "semievol", settings.task_config(task, data, seed, tune))
            print(
                f"{task} seed {seed} semievol: "
                + (", ".join(f"{k} {v['accuracy']:.3f}" for k, v in r["metrics"]["models"].items()) if r else "failed"),
                flush=True,
            )


def run_extras(settings: Settings, task: str) -> None:
    """The variants (each from a copy of the seed's SemiEvol run) and the label-scarcity runs of one task."""
    data = settings.out / "data"
    tune = json.loads((settings.out / "tune" / task / "choice.json").read_text())
    for seed in settings.variant_seeds:
        sdir = settings.out / settings.profile / task / f"s{seed}"
        if "variants" in settings.parts and (sdir / "semievol" / "bench_summary.json").exists():
            for v in settings.variants:
                copy_run(sdir / "semievol", sdir / v)
                cfg = merge(settings.task_config(task, data, seed, tune), VARIANTS[v][1])
                cfg["evaluate"] = {"models": ["base", "warm", "evolved"]}
                r = run_config(sdir / v, cfg)
                print(f"{task} seed {seed} {v}: evolved {acc(r, 'evolved')}", flush=True)
        if "scarcity" in settings.parts and task in settings.scarcity_tasks:
            # 'all' is the seed's SemiEvol run itself, and so is any count at or above the profile's
            for n in scarcity_counts(PROFILES[settings.profile][task]["labeled"]):
                cfg = settings.task_config(task, data, seed, tune)
                cfg["task"]["limit_labeled"] = n
                r = run_config(sdir / f"labeled_{n}", cfg)
                print(
                    f"{task} seed {seed} labeled {n}: sft {acc(r, 'warm')} semievol {acc(r, 'evolved')}",
                    flush=True,
                )
