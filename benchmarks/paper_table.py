"""The paper's table: base, SFT, SemiEvol and compute-matched SFT over seeds, the ablations, self-training
baselines, more rounds, and label scarcity; the embedded model unless ``--set model.model=...`` names another.

    python benchmarks/paper_table.py --data-dir ../shared/data                 # the 'session' profile
    python benchmarks/paper_table.py --parts main --tasks fpb --seeds 0,1,2    # one part
    python benchmarks/paper_table.py --collect-only                            # table from finished runs
    python benchmarks/paper_table.py --out runs/paper_qwen --results runs/paper_qwen/results \
        --set model.model=Qwen/Qwen2.5-1.5B-Instruct --set model.dtype=bf16    # another model, its own folders

The model runs on CUDA when torch sees a GPU, else on the CPU; `benchmarks/gpu/paper_table_gpu.py` wraps
this for one call on a GPU machine.

Everything is a `semievol run` in `runs/paper/...`; a finished run is skipped, so the script resumes where
it stopped. A variant starts from a copy of the same seed's SemiEvol run directory, so it reuses the
stages its settings leave unchanged (the warm adapter, the votes, cached base/warm predictions) and trains
only what differs.

Data: each task's splits are subsampled once, with a fixed seed (12345) independent of the run seed, into
`runs/paper/data/<task>/` (sizes per profile below, written into the results); the seeds then change
only the training (LoRA initialisation, batch order, vote draws). Hyper-parameters: the SFT learning rate
is chosen per task on a validation slice (20%) of the labeled split, never on the test split.

Writes `benchmarks/results/paper_table.json` and `paper_table.md`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from semievol.config import ConfigError, build_config
from semievol.report import stage_dirs
from semievol.stages.select import PriorSums, decide

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "runs" / "paper"
SUBSET_SEED = 12345

# Rows per split (0 = the whole split). 'session' fits the multiple-choice tasks on 2 CPU cores in a few
# hours; 'full' is the paper's splits and needs a GPU (benchmarks/gpu/).
PROFILES: dict[str, dict[str, dict[str, int]]] = {
    "session": {
        "fpb": {"labeled": 128, "unlabeled": 192, "test": 200},
        "pubmedqa": {"labeled": 128, "unlabeled": 192, "test": 200},
        "arc": {"labeled": 128, "unlabeled": 192, "test": 200},
        "gsm8k": {"labeled": 64, "unlabeled": 64, "test": 100},
    },
    # 'session' with the whole test split: the same labeled and unlabeled rows (so the same tuning and
    # training), 453 FPB / 518 ARC test rows instead of 200, which narrows each run's test-sample noise
    "session_fulltest": {t: {"labeled": 128, "unlabeled": 192, "test": 0} for t in ("fpb", "pubmedqa", "arc")},
    "full": {t: {"labeled": 0, "unlabeled": 0, "test": 0} for t in ("fpb", "pubmedqa", "arc", "gsm8k")},
    # checks that the table runs at all (a new model, engine or machine): minutes, numbers meaningless
    "smoke": {t: {"labeled": 20, "unlabeled": 8, "test": 8} for t in ("fpb", "pubmedqa", "arc", "gsm8k")},
}

BASE_CONFIG: dict[str, Any] = {
    "model": {"model": "embedded", "embedder": "embedded"},
    "sft": {"epochs": 2, "batch_size": 8, "lora_r": 16},
    "propagate": {"k": 3, "configs": ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1.0"]},
    "select": {"justify": "all", "confidence": "entropy", "rule": "percentile", "theta": 50},
    "evolve": {"mode": "fresh", "rounds": 1},
    "evaluate": {"models": ["base", "warm", "evolved", "sft_matched"]},
}
MODEL_NAMES = {"warm": "SFT", "sft_matched": "compute-matched SFT", "evolved": "SemiEvol"}  # in the table
FREE_TASKS = {"gsm8k"}  # answered in free form: FREE_OVERRIDES apply, and there is no option to score
FREE_OVERRIDES: dict[str, Any] = {
    "model": {"max_new_tokens": 256},
    "sft": {"use_rationale": True, "max_length": 768},
    "propagate": {"configs": ["warm:0:0.7", "warm:2:0.7", "base:2:0.7", "warm:1:1.0"]},
    "select": {"confidence": "nll"},
}

# Variants: (name, what it tests, overrides on top of the SemiEvol config). Evaluated models: base and warm
# come from the call cache of the copied run, so only 'evolved' costs anything.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "no_in_weight": ("ablation: pseudo-labels from the base model (no SFT in the answering configurations)",
                     {"propagate": {"configs": ["base:0:0", "base:3:0.7", "base:3:0.5", "base:1:1.0"]}}),
    "no_in_context": ("ablation: no retrieved demos",
                      {"propagate": {"k": 0, "configs": ["warm:0:0", "warm:0:0.7", "base:0:0.7", "warm:0:1.0"]}}),
    "no_collaborative": ("ablation: one configuration (n = 1), nothing to reconcile",
                         {"propagate": {"configs": ["warm:3:0"]}, "select": {"justify": "none"}}),
    "no_adaptive": ("ablation: every pseudo-label kept (no confidence selection)", {"select": {"rule": "all"}}),
    "lmsi_vote": ("baseline: majority vote decides, no justification, no entropy filter (LMSI-style)",
                  {"select": {"justify": "none", "rule": "all"}}),
    "fixed_threshold": ("baseline: fixed confidence threshold, normalised entropy <= 0.5 (FixMatch-style)",
                        {"select": {"rule": "fixed", "threshold": 0.5}}),
    "class_percentile": ("baseline: per-class percentile (FlexMatch-style)", {"select": {"rule": "class_percentile"}}),
    "more_configs": ("8 configurations: the 4 above and warm:2:0.7, warm:0:0.7, base:0:0.7, warm:3:1.0",
                     {"propagate": {"configs": ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1.0",
                                                "warm:2:0.7", "warm:0:0.7", "base:0:0.7", "warm:3:1.0"]}}),
    "calibrated": ("beyond the paper: the justification batch-calibrated and kept to the candidates' answers",
                   {"select": {"calibrate": True, "candidates_only": True}}),
    "rounds_2": ("2 rounds of propagate-select-evolve", {"evolve": {"rounds": 2}}),
    "rounds_3": ("3 rounds", {"evolve": {"rounds": 3}}),
}
SCARCITY = [16, 32, 64, 128, 0]


def base_config(sets: list[str]) -> dict[str, Any]:
    """The base config with ``--set`` overrides, checked as semievol checks a config (ConfigError if not)."""
    cfg = merge(BASE_CONFIG, parse_set(sets))
    build_config(cfg)
    return cfg


def scarcity_counts(labeled: int) -> list[int]:
    """The labeled counts to run for a profile with ``labeled`` rows (0 = the whole split): those below it."""
    return [n for n in SCARCITY if n and (not labeled or n < labeled)]


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set model.model=X --set sft.lr=1e-3`` -> nested overrides; values are read as YAML (numbers, lists, 1e-3)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"paper_table: --set wants KEY=VALUE (e.g. model.model=Qwen/Qwen2.5-1.5B-Instruct), got {item!r}")
        *parents, leaf = key.split(".")
        node = out
        for k in parents:
            node = node.setdefault(k, {})
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        node[leaf] = parsed
    return out


def gpus() -> str:
    try:
        import torch
    except ImportError:
        return "no GPU"
    if not torch.cuda.is_available():
        return "no GPU"
    names = Counter(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return ", ".join(f"{n} x {name}" for name, n in names.items())


def model_name() -> str:
    name = BASE_CONFIG["model"]["model"]
    return "Embedded SmolLM2-135M-Instruct" if name == "embedded" else f"Model `{name}`"


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---------------------------------------------------------------- data subsets


def _read_rows(path: Path) -> tuple[list[str] | None, list[Any]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    return None, [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_rows(path: Path, header: list[str] | None, rows: list[Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    if header is not None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows)
    else:
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def subset(task: str, data_dir: Path, sizes: dict[str, int]) -> Path:
    """Seeded subsample of each split into runs/paper/data/<task>/ (same rows for every run seed)."""
    dest = OUT / "data" / task
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        src = next(p for p in (data_dir / task / f"{split}.csv", data_dir / task / f"{split}.jsonl") if p.exists())
        target = dest / src.name
        header, rows = _read_rows(src)
        if target.exists():
            have, want = len(_read_rows(target)[1]), min(n or len(rows), len(rows))
            if have != want:  # another profile's subset: its runs would silently use the wrong rows
                raise SystemExit(f"paper_table: {target} holds {have} rows, profile wants {want}; "
                                 f"give this profile its own --out folder")
            continue
        if n and n < len(rows):
            rows = [rows[i] for i in subsample_positions(task, split, len(rows), n)]
        _write_rows(target, header, rows)
    return OUT / "data"


def subsample_positions(task: str, split: str, total: int, n: int) -> list[int]:
    """Which rows of a split's file (0-based, in the subset's order) a profile with ``n`` of its ``total``
    rows takes: the same for every run seed and every profile asking for ``n``."""
    return random.Random(f"{SUBSET_SEED}-{task}-{split}").sample(range(total), n)


def tune_split(task: str, data: Path) -> Path:
    """80/20 split of the labeled subset: the validation slice for choosing hyper-parameters."""
    dest = OUT / "tune" / task / "data" / task
    dest.mkdir(parents=True, exist_ok=True)
    src = next(p for p in (data / task).iterdir() if p.stem == "labeled")
    header, rows = _read_rows(src)
    rows = list(rows)
    random.Random(f"{SUBSET_SEED}-tune-{task}").shuffle(rows)
    cut = max(1, len(rows) // 5)
    _write_rows(dest / src.name, header, rows[cut:])
    _write_rows(dest / src.name.replace("labeled", "test"), header, rows[:cut])
    _write_rows(dest / src.name.replace("labeled", "unlabeled"), header, rows[:cut])
    return dest.parent


# ---------------------------------------------------------------- runs


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
    text = yaml.safe_dump(cfg | {"run_dir": str(run_dir)}, sort_keys=False)
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
    out = {"metrics": json.loads(metrics.read_text()), "wall_seconds": round(time.time() - t, 1),
           "timings": json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").exists() else {}}
    summary.write_text(json.dumps(out, indent=2))
    return out


def task_config(task: str, data: Path, seed: int, tune: dict[str, Any]) -> dict[str, Any]:
    """The SemiEvol config of one run; ``tune`` holds the lr and epochs chosen on the validation slice."""
    sft = {"lr": tune["lr"], "epochs": tune.get("epochs", BASE_CONFIG["sft"]["epochs"])}
    cfg = merge(BASE_CONFIG, {"seed": seed, "task": {"task": task, "data_dir": str(data)}, "sft": sft})
    return merge(cfg, FREE_OVERRIDES) if task in FREE_TASKS else cfg


def choose_sft(task: str, data: Path, lrs: list[float], epochs: list[int]) -> dict[str, Any]:
    """Warm-model accuracy on the validation slice for each (learning rate, epochs); the best pair is used.

    Epochs are tuned as well as the rate: with 128 labeled rows, 2 epochs (32 steps) left every rate's model
    answering the majority class, so a fixed epoch count would hand SFT and the warm model a collapsed start.
    Ties in accuracy go to the lower mean negative log-probability of the gold option on the same slice.
    """
    rec_path = OUT / "tune" / task / "choice.json"
    if rec_path.exists():
        rec = json.loads(rec_path.read_text())
        if (sorted(rec.get("epochs_grid", [])) == sorted(epochs) and sorted(rec.get("lr_grid", [])) == sorted(lrs)
                and "gold_nll" in rec):
            return rec
    tdata = tune_split(task, data)
    scores: dict[str, float] = {}
    nll: dict[str, float] = {}
    keys = {(lr, ep): f"lr{lr:g}_ep{ep}" for ep in epochs for lr in lrs}
    for (lr, ep), key in keys.items():
        rd = OUT / "tune" / task / key
        cfg = task_config(task, tdata, 0, {"lr": lr, "epochs": ep})
        cfg["evaluate"] = {"models": ["warm"]}
        rd.mkdir(parents=True, exist_ok=True)
        (rd / "cfg.yaml").write_text(yaml.safe_dump(cfg | {"run_dir": str(rd)}, sort_keys=False))
        semievol(["--quiet", "sft", str(rd / "cfg.yaml")], rd / "bench.log")
        res = rd / "val.json"
        # a free-form task has no gold NLL; an older choice result lacks it: evaluate again
        if not res.exists() or (task not in FREE_TASKS and "gold_nll" not in json.loads(res.read_text())):
            semievol(["--quiet", "eval", str(rd / "cfg.yaml"), "--adapter", str(rd / "sft"), "--out", str(res)],
                     rd / "bench.log")
        val = json.loads(res.read_text())
        scores[key], nll[key] = val["accuracy"], val.get("gold_nll")
        print(f"  tune {task} lr {lr:g} epochs {ep}: validation accuracy {scores[key]:.3f}, gold-option NLL "
              f"{_num(nll[key])}, predicted {val.get('predicted', '-')}", flush=True)
    lr, ep = pick_tuned(list(keys), [scores[k] for k in keys.values()], [nll[k] for k in keys.values()])
    rec = {"grid": scores, "gold_nll": nll, "lr": lr, "epochs": ep, "lr_grid": lrs, "epochs_grid": epochs,
           "validation_rows": len(_read_rows(next((tdata / task).glob("test.*")))[1])}
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


# ---------------------------------------------------------------- summary


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
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "min": min(values), "max": max(values),
            "values": values}


def fmt(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "-"
    if s["n"] == 1:
        w = s.get("wilson95")
        return f"{100 * s['mean']:.1f} [{100 * w[0]:.1f}, {100 * w[1]:.1f}] (1 seed)" if w else f"{100 * s['mean']:.1f} (1 seed)"
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


def paired(a: dict[int, Any], model_a: str, b: dict[int, Any], model_b: str) -> dict[str, Any]:
    """Stats of accuracy(a, model_a) - accuracy(b, model_b) over the seeds where both were measured."""
    diffs = [x - y for s in sorted(a) if (x := acc(a[s], model_a)) is not None and (y := acc(b.get(s), model_b)) is not None]
    return stats(diffs)


def collect(profile: str, tasks: list[str], seeds: list[int]) -> dict[str, Any]:
    res: dict[str, Any] = {"profile": profile, "sizes": {t: PROFILES[profile][t] for t in tasks}, "tasks": {}}
    for task in tasks:
        tdir = OUT / profile / task
        tune = OUT / "tune" / task / "choice.json"
        rec: dict[str, Any] = {"tuning": json.loads(tune.read_text()) if tune.exists() else None, "main": {},
                               "variants": {}, "scarcity": {}}
        runs = {s: _load(tdir / f"s{s}" / "semievol") for s in seeds}
        for model in ("base", "warm", "sft_matched", "evolved"):
            rec["main"][model] = seed_stats(list(runs.values()), model)
        rec["main"]["minus_sft"] = paired(runs, "evolved", runs, "warm")
        rec["main"]["minus_matched"] = paired(runs, "evolved", runs, "sft_matched")
        rec["main"]["target"] = target_check(rec["main"])
        # each seed's test rows, right or wrong, per model (read once, used by the three summaries below)
        preds = {s: {m: predictions(tdir / f"s{s}" / "semievol", m) for m in MODEL_NAMES} for s in seeds if runs[s]}
        right = {s: {m: [bool(r["correct"]) for r in p] if p else None for m, p in per.items()} for s, per in preds.items()}
        rec["main"]["class_right"] = {s: {m: class_right(p) if p else None for m, p in per.items()}
                                      for s, per in preds.items()}
        rec["main"]["row_paired"] = {
            name: row_paired({s: (r["evolved"], r[other]) for s, r in right.items() if r["evolved"] and r[other]})
            for other, name in (("warm", "vs_sft"), ("sft_matched", "vs_matched"))}
        rec["main"]["answers"] = {m: [r["metrics"]["models"].get(m, {}).get("prediction_counts") for r in runs.values() if r]
                                  for m in ("warm", "sft_matched", "evolved")}
        rec["main"]["selected_labels"] = [_selected_counts(tdir / f"s{s}" / "semievol") for s in seeds if runs[s]]
        rec["main"]["diagnostics"] = {s: d for s in seeds if runs[s] and (d := diagnose(tdir / f"s{s}" / "semievol"))}
        pl_all = [r["metrics"]["pseudo_labels"]["all"]["accuracy"] for r in runs.values() if r]
        pl_sel = [r["metrics"]["pseudo_labels"]["selected"]["accuracy"] for r in runs.values()
                  if r and r["metrics"]["pseudo_labels"].get("selected")]
        rec["main"]["pseudo_all"], rec["main"]["pseudo_selected"] = stats(pl_all), stats(pl_sel)
        if profile == "session_fulltest":  # the same runs scored on the 'session' profile's test rows only
            k = PROFILES["session"][task]["test"]
            rec["main"]["on_session_rows"] = {
                m: {s: sum(c[i] for i in subsample_positions(task, "test", len(c), k)) / k
                    for s, r in right.items() if (c := r[m])} for m in MODEL_NAMES}
        rec["main"]["wall_minutes"] = stats([r["wall_seconds"] / 60 for r in runs.values() if r])
        rec["main"]["agreement"] = stats([r["metrics"]["pseudo_labels"].get("agreement_rate", 0)
                                          for r in runs.values() if r])
        for v in VARIANTS:
            found = {s: x for s in seeds if (x := _load(tdir / f"s{s}" / v))}
            vs = list(found.values())
            if vs:
                rec["variants"][v] = {
                    "evolved": seed_stats(vs, "evolved"),
                    "minus_semievol": paired(found, "evolved", runs, "evolved"),
                    "minus_matched": paired(found, "evolved", runs, "sft_matched"),
                    "pseudo_selected": stats([x["metrics"]["pseudo_labels"]["selected"]["accuracy"] for x in vs
                                              if x["metrics"].get("pseudo_labels", {}).get("selected")]),
                    "coverage": stats([x["metrics"]["pseudo_labels"]["coverage"] for x in vs
                                       if x["metrics"].get("pseudo_labels")]),
                    "steps": [last_evolve_steps(x) for x in vs],
                    "answers": [x["metrics"]["models"].get("evolved", {}).get("prediction_counts") for x in vs],
                    "selected_labels": [_selected_counts(tdir / f"s{s}" / v) for s in found],
                }
        # the seeds with any scarcity run; 'all' (the seed's SemiEvol run) over those seeds only
        sc_seeds = [s for s in seeds if any(_load(tdir / f"s{s}" / f"labeled_{n}") for n in SCARCITY if n)]
        for n in SCARCITY if sc_seeds else []:
            name = f"labeled_{n}" if n else "semievol"
            at_n = {s: x for s in sc_seeds if (x := _load(tdir / f"s{s}" / name))}
            xs = list(at_n.values())
            if xs:
                rec["scarcity"][str(n or "all")] = {
                    "sft": stats([acc(x, "warm") for x in xs]),
                    "sft_matched": stats([a for x in xs if (a := acc(x, "sft_matched")) is not None]),
                    "semievol": stats([acc(x, "evolved") for x in xs]),
                    "minus_sft": paired(at_n, "evolved", at_n, "warm"),
                    "minus_matched": paired(at_n, "evolved", at_n, "sft_matched"),
                    "sft_minutes": stats([x["timings"].get("sft", 0) / 60 for x in xs]),
                    # SFT is SemiEvol's first stage; the rest is the overhead (evaluation and the control left out)
                    "semievol_minutes": stats([sum(v for k, v in x["timings"].items() if k == "sft"
                                                   or k.startswith(("propagate", "select", "evolve"))) / 60 for x in xs]),
                }
        res["tasks"][task] = rec
    return res


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


def row_paired(pairs: dict[int, tuple[list[bool], list[bool]]], draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Model A minus model B over the test rows, per seed and pooled: is a difference larger than the noise of
    drawing these test rows, and than the noise of training on another seed?

    ``pairs`` maps a seed to (A right?, B right?) on the same test rows (every seed shares the test split).
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
    diff = {s: [int(a) - int(b) for a, b in zip(*pairs[s], strict=True)] for s in seeds}
    per_seed = {}
    for s in seeds:
        d = diff[s]
        boots = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
        per_seed[s] = {"diff": sum(d) / n, "only_a": d.count(1), "only_b": d.count(-1),
                       "ci95": [boots[int(0.025 * draws)], boots[int(0.975 * draws) - 1]]}
    pooled = []
    for _ in range(draws):
        drawn = [seeds[rng.randrange(len(seeds))] for _ in seeds]
        rows = [rng.randrange(n) for _ in range(n)]
        pooled.append(sum(diff[s][i] for s in drawn for i in rows) / (n * len(drawn)))
    pooled.sort()
    mean = statistics.fmean(sum(diff[s]) / n for s in seeds)
    return {"n_seeds": len(seeds), "rows": n, "mean": mean, "per_seed": per_seed,
            "ci95": [pooled[int(0.025 * draws)], pooled[int(0.975 * draws) - 1]],
            "p_above_zero": sum(x > 0 for x in pooled) / draws}


def target_check(main: dict[str, Any]) -> dict[str, Any]:
    """The issue's target on one task: SemiEvol at least 1 point above SFT and above compute-matched SFT, and
    its lowest seed above both controls' highest seeds (seed ranges that do not overlap)."""
    ev, sft, mt = main["evolved"], main["warm"], main["sft_matched"]
    if not ev.get("n") or not sft.get("n") or not mt.get("n"):
        return {"met": None}
    margins = {"mean_over_sft": ev["mean"] - sft["mean"], "mean_over_matched": ev["mean"] - mt["mean"],
               "lowest_over_highest_sft": ev["min"] - sft["max"], "lowest_over_highest_matched": ev["min"] - mt["max"]}
    met = (ev["n"] > 1 and margins["mean_over_sft"] >= 0.01 and margins["mean_over_matched"] >= 0.01
           and margins["lowest_over_highest_sft"] > 0 and margins["lowest_over_highest_matched"] > 0)
    return {"met": met, **margins}


def last_evolve_steps(summary: dict[str, Any]) -> int | None:
    """Optimizer steps of the run's last evolve stage (``evolve``, ``evolve_r2``, ...)."""
    training = summary["metrics"].get("training", {})
    rounds = sorted((int(k.partition("_r")[2] or 1), v) for k, v in training.items() if k.split("_r")[0] == "evolve")
    return rounds[-1][1].get("steps") if rounds else None


def _selected_counts(run_dir: Path) -> dict[str, int] | None:
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
        sums = PriorSums()
        for r in rows:
            sums.add(r["justify_dist"])
        priors = sums.priors()

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
        by_answer[a] = {"n": len(rs), "accuracy": sum(r["correct"] for r in rs) / len(rs),
                        "median_score": statistics.median(r["score"] for r in rs),
                        "selected": sum(r["selected"] for r in rs)}
        if (w := auroc([-r["score"] for r in rs], [r["correct"] for r in rs])) is not None:
            within.append((w, len(rs)))
    groups = {"unanimous": [r for r in rows if r["unanimous"]], "disagreeing": [r for r in rows if not r["unanimous"]]}
    return {
        "alternatives": alternatives(rows),
        "auroc": auroc(conf, [r["correct"] for r in rows]),
        "auroc_within_answer": sum(w * n for w, n in within) / sum(n for _, n in within) if within else None,
        "by_answer": by_answer,
        "gold": dict(sorted(Counter(r["gold"] for r in rows).items())),
        **{k: {"n": len(v), "accuracy": sum(r["correct"] for r in v) / len(v) if v else None} for k, v in groups.items()},
    }


def _counts_text(c: dict[str, int] | None) -> str:
    return " ".join(f"{k}:{v}" for k, v in c.items()) if c else "-"


def _alternatives_text(d: dict[str, Any]) -> str:
    return "; ".join(f"{k} {_pct(v)}" for k, v in d.get("alternatives", {}).items())


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _load(run_dir: Path) -> dict[str, Any] | None:
    p = run_dir / "bench_summary.json"
    return json.loads(p.read_text()) if p.exists() else None


def markdown(res: dict[str, Any], machine: str, command: str) -> str:
    L = [f"{res.get('model', 'Embedded SmolLM2-135M-Instruct')}; {machine}; profile `{res['profile']}`; command: `{command}`.", "",
         "Rows per split (seeded subsample, seed 12345, the same for every run seed): " + "; ".join(
             f"{t}: " + ", ".join(f"{k} {v or 'all'}" for k, v in s.items()) for t, s in res["sizes"].items()) + ".",
         "Cells: test accuracy in %, mean ± standard deviation over seeds [lowest, highest seed]; with one seed, "
         "the accuracy [95% Wilson interval over the test rows].", "",
         "Paired columns: SemiEvol minus the other model on the same seed, in points: the mean, then each seed.", "",
         "| task | seeds | base | SFT | SFT, compute-matched | SemiEvol | SemiEvol − SFT | SemiEvol − matched SFT | "
         "pseudo-labels all | selected | votes unanimous | lr, epochs (validation) | wall time / seed |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, r in res["tasks"].items():
        m = r["main"]
        lr = f"{r['tuning']['lr']:g}, {r['tuning'].get('epochs', 2)} ep" if r["tuning"] else "-"
        L.append(f"| {task} | {m['evolved'].get('n', 0)} | {fmt(m['base'])} | {fmt(m['warm'])} | {fmt(m['sft_matched'])} | "
                 f"{fmt(m['evolved'])} | {fmt_delta(m['minus_sft'])} | {fmt_delta(m['minus_matched'])} | {fmt(m['pseudo_all'])} | {fmt(m['pseudo_selected'])} | {fmt(m['agreement'])} | "
                 f"{lr} | {m['wall_minutes'].get('mean', 0):.0f} min |")
    L += ["", "The issue's target (SemiEvol at least 1 point above SFT and compute-matched SFT, its lowest seed above "
          "both controls' highest), and whether a difference is larger than the noise: a paired bootstrap over the "
          "test rows for each seed, and pooled over seeds with a two-level bootstrap (seeds, then test rows). "
          "'only A / only B': test rows that only SemiEvol / only the other model answered right.", "",
          "| task | target met | lowest SemiEvol seed − highest SFT / matched SFT seed | vs | pooled difference [95%] | "
          "share of draws above 0 | per seed: difference [95% over test rows], only A / only B |",
          "|---|---|---|---|---|---|---|"]
    for task, r in res["tasks"].items():
        m = r["main"]
        tg = m.get("target", {})
        met = {True: "yes", False: "no", None: "-"}[tg.get("met")]
        gaps = (f"{100 * tg['lowest_over_highest_sft']:+.1f} / {100 * tg['lowest_over_highest_matched']:+.1f}"
                if tg.get("met") is not None else "-")
        for name, label in (("vs_sft", "SFT"), ("vs_matched", "matched SFT")):
            rp = m.get("row_paired", {}).get(name, {})
            if not rp.get("n_seeds"):
                continue
            per = "; ".join(f"s{s}: {100 * x['diff']:+.1f} [{100 * x['ci95'][0]:+.1f}, {100 * x['ci95'][1]:+.1f}], "
                            f"{x['only_a']}/{x['only_b']}" for s, x in rp["per_seed"].items())
            L.append(f"| {task} | {met} | {gaps} | {label} | {100 * rp['mean']:+.1f} [{100 * rp['ci95'][0]:+.1f}, "
                     f"{100 * rp['ci95'][1]:+.1f}] over {rp['n_seeds']} seeds x {rp['rows']} rows | "
                     f"{100 * rp['p_above_zero']:.0f}% | {per} |")
    for task, r in res["tasks"].items():
        if on := r["main"].get("on_session_rows"):
            L += ["", f"{task}, the same runs on the 200 test rows of the `session` profile (to compare with runs of "
                  "that profile): " + "; ".join(f"{MODEL_NAMES[m]} " + ", ".join(f"s{s} {100 * a:.1f}" for s, a in per.items())
                                                for m, per in on.items() if per)]
    if any(r["main"].get("class_right") for r in res["tasks"].values()):
        L += ["", "Test rows answered right per gold answer (right/rows), per seed: which classes each model has learnt.", ""]
        for task, r in res["tasks"].items():
            for seed, per in r["main"].get("class_right", {}).items():
                L.append(f"- {task} seed {seed}: " + "; ".join(
                    f"{MODEL_NAMES[m]} " + " ".join(f"{g} {a}/{n}" for g, (a, n) in c.items())
                    for m, c in per.items() if c))
    L += ["", "What each model answers on the test split, and the class balance of the kept pseudo-labels "
          "(first seed; A/B/C on FPB = negative/neutral/positive):", ""]
    for task, r in res["tasks"].items():
        m = r["main"]
        first = {k: (v or [None])[0] for k, v in m.get("answers", {}).items()}
        L.append(f"- {task}: SFT {_counts_text(first.get('warm'))}; compute-matched SFT "
                 f"{_counts_text(first.get('sft_matched'))}; SemiEvol {_counts_text(first.get('evolved'))}; "
                 f"selected pseudo-labels {_counts_text((m.get('selected_labels') or [None])[0])}")
    if any(r["main"].get("diagnostics") for r in res["tasks"].values()):
        L += ["", "Why selection helps or hurts (SemiEvol's pseudo-labels on the unlabeled split, per seed). AUROC (0.5 = no better than chance): "
              "the chance that the confidence score (lower entropy) ranks a right pseudo-label above a wrong one; "
              "'within answer' averages it inside each answer class (weighted by rows), so it shows whether the "
              "score ranks well once the class is fixed. Per answer: rows, accuracy, median score, rows selected.", "",
              "| task | seed | AUROC | AUROC within answer | per answer: rows, right, median score, selected | gold classes | "
              "unanimous: rows, right | disagreeing: rows, right |", "|---|---|---|---|---|---|---|---|"]
        for task, r in res["tasks"].items():
            for seed, d in r["main"].get("diagnostics", {}).items():
                per = "; ".join(f"{a}: {x['n']}, {_pct(x['accuracy'])}, {x['median_score']:.2f}, {x['selected']}"
                                for a, x in d["by_answer"].items())
                L.append(f"| {task} | {seed} | {_num(d['auroc'])} | {_num(d['auroc_within_answer'])} | {per} | "
                         f"{_counts_text(d['gold'])} | {d['unanimous']['n']}, {_pct(d['unanimous']['accuracy'])} | "
                         f"{d['disagreeing']['n']}, {_pct(d['disagreeing']['accuracy'])} |")
        L += ["", "The same rows labelled by other rules (accuracy of the labels, from the stored votes and the "
              "justification's option distribution; nothing re-run):", ""]
        for task, r in res["tasks"].items():
            for seed, d in r["main"].get("diagnostics", {}).items():
                L.append(f"- {task} seed {seed}: {_alternatives_text(d)}")
    if any(r["variants"] for r in res["tasks"].values()):
        L += ["", "Ablations, baselines and rounds (SemiEvol's final model; each from a copy of the same seed's run):", "",
              "| task | variant | what | seeds | accuracy | − SemiEvol (same seeds) | − matched SFT (same seeds) | "
              "selected pseudo-label accuracy | coverage | evolve steps | "
              "selected labels (first seed) | evolved model's answers (first seed) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for task, r in res["tasks"].items():
            if r["variants"]:
                m = r["main"]
                L.append(f"| {task} | semievol | the method | {m['evolved'].get('n', 0)} | {fmt(m['evolved'])} | | "
                         f"{fmt_delta(m['minus_matched'])} | {fmt(m['pseudo_selected'])} | | | {_counts_text((m.get('selected_labels') or [None])[0])} | "
                         f"{_counts_text((m.get('answers', {}).get('evolved') or [None])[0])} |")
            for v, x in r["variants"].items():
                L.append(f"| {task} | {v} | {VARIANTS[v][0]} | {x['evolved'].get('n', 0)} | {fmt(x['evolved'])} | "
                         f"{fmt_delta(x['minus_semievol'])} | {fmt_delta(x['minus_matched'])} | {fmt(x['pseudo_selected'])} | {fmt(x['coverage'])} | {x['steps']} | "
                         f"{_counts_text((x.get('selected_labels') or [None])[0])} | {_counts_text((x.get('answers') or [None])[0])} |")
    if any(r["scarcity"] for r in res["tasks"].values()):
        L += ["", "Label scarcity (same unlabeled pool; labeled rows drawn with the run seed):", "",
              "| task | labeled | SFT | SFT, compute-matched | SemiEvol | SemiEvol − SFT | SemiEvol − matched SFT | "
              "SFT time | SemiEvol time (SFT to evolve) | overhead |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for task, r in res["tasks"].items():
            for n, x in r["scarcity"].items():
                t_sft, t_all = x["sft_minutes"].get("mean", 0), x["semievol_minutes"].get("mean", 0)
                L.append(f"| {task} | {n} | {fmt(x['sft'])} | {fmt(x['sft_matched'])} | {fmt(x['semievol'])} | "
                         f"{fmt_delta(x.get('minus_sft', {}))} | {fmt_delta(x.get('minus_matched', {}))} | "
                         f"{t_sft:.1f} min | {t_all:.1f} min | {f'{t_all / t_sft:.1f}x' if t_sft else '-'} |")
    return "\n".join(L) + "\n"


def main() -> None:
    global OUT, BASE_CONFIG
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--profile", default="session", choices=sorted(PROFILES))
    ap.add_argument("--tasks", default="fpb,pubmedqa,arc")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--parts", default="main,variants,scarcity", help="comma list of main, variants, scarcity")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--variant-seeds", default=None, help="seeds for variants and scarcity (default: --seeds)")
    ap.add_argument("--scarcity-tasks", default="fpb,arc")
    ap.add_argument("--lr-grid", default="3e-4,1e-3,3e-3")
    ap.add_argument("--epochs-grid", default="2,4")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--out", default=str(OUT), help="runs folder (tuning, subsets, runs); one per model")
    ap.add_argument("--results", default=str(HERE / "results"), help="where paper_table.json and .md go")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the base config, e.g. model.model=... model.dtype=bf16 sft.batch_size=16")
    ap.add_argument("--diagnose", nargs="+", metavar="RUN_DIR",
                    help="print the pseudo-label diagnostics of finished run folders (any semievol run) and exit")
    args = ap.parse_args()
    if args.diagnose:
        for d in args.diagnose:
            x = diagnose(Path(d))
            if x is None:
                print(f"{d}: no select/pseudo_labels.jsonl with gold answers")
                continue
            per = "; ".join(f"{a}: {v['n']} rows, {_pct(v['accuracy'])} right, median score {v['median_score']:.2f}, "
                            f"{v['selected']} kept" for a, v in x["by_answer"].items())
            print(f"- `{d}`: AUROC {_num(x['auroc'])}, within answer {_num(x['auroc_within_answer'])}; gold "
                  f"{_counts_text(x['gold'])}; {per}; unanimous {x['unanimous']['n']} rows "
                  f"{_pct(x['unanimous']['accuracy'])} right, split {x['disagreeing']['n']} rows "
                  f"{_pct(x['disagreeing']['accuracy'])} right.\n  Other rules: {_alternatives_text(x)}")
        return
    OUT = Path(args.out).resolve()
    try:  # a misspelt --set key fails here, not in the first run's log after the data is written
        BASE_CONFIG = base_config(args.set)
    except ConfigError as e:
        print(f"paper_table: --set: {e}", file=sys.stderr)
        sys.exit(2)
    tasks = args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    vseeds = [int(s) for s in (args.variant_seeds or args.seeds).split(",")]
    parts = set(args.parts.split(","))
    data_dir = Path(args.data_dir).resolve()
    t0 = time.time()
    if not args.collect_only:
        for task in tasks:
            data = subset(task, data_dir, PROFILES[args.profile][task])
            tune = choose_sft(task, data, [float(x) for x in args.lr_grid.split(",")],
                              [int(x) for x in args.epochs_grid.split(",")])
            print(f"{task}: lr {tune['lr']:g}, {tune['epochs']} epochs chosen on the validation slice {tune['grid']}",
                  flush=True)
            for seed in seeds:
                sdir = OUT / args.profile / task / f"s{seed}"
                if "main" in parts or seed in vseeds:
                    r = run_config(sdir / "semievol", task_config(task, data, seed, tune))
                    print(f"{task} seed {seed} semievol: " + (", ".join(
                        f"{k} {v['accuracy']:.3f}" for k, v in r["metrics"]["models"].items()) if r else "failed"),
                        flush=True)
        for task in tasks:
            data = OUT / "data"
            tune = json.loads((OUT / "tune" / task / "choice.json").read_text())
            for seed in vseeds:
                sdir = OUT / args.profile / task / f"s{seed}"
                if "variants" in parts and (sdir / "semievol" / "bench_summary.json").exists():
                    for v in args.variants.split(","):
                        copy_run(sdir / "semievol", sdir / v)
                        cfg = merge(task_config(task, data, seed, tune), VARIANTS[v][1])
                        cfg["evaluate"] = {"models": ["base", "warm", "evolved"]}
                        r = run_config(sdir / v, cfg)
                        print(f"{task} seed {seed} {v}: evolved {acc(r, 'evolved')}", flush=True)
                if "scarcity" in parts and task in args.scarcity_tasks.split(","):
                    # 'all' is the seed's SemiEvol run itself, and so is any count at or above the profile's
                    for n in scarcity_counts(PROFILES[args.profile][task]["labeled"]):
                        cfg = task_config(task, data, seed, tune)
                        cfg["task"]["limit_labeled"] = n
                        r = run_config(sdir / f"labeled_{n}", cfg)
                        print(f"{task} seed {seed} labeled {n}: sft {acc(r, 'warm')} semievol {acc(r, 'evolved')}",
                              flush=True)
    res = collect(args.profile, tasks, sorted(set(seeds) | set(vseeds)))
    machine = f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.processor() or 'cpu'}), {gpus()}"
    res["machine"] = machine
    res["model"] = model_name()
    res["overrides"] = args.set
    res["session_wall_minutes"] = round((time.time() - t0) / 60, 1)
    command = "python benchmarks/paper_table.py " + " ".join(sys.argv[1:])
    res["command"] = command
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "paper_table.json").write_text(json.dumps(res, indent=2))
    md = markdown(res, machine, command)
    (results / "paper_table.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
