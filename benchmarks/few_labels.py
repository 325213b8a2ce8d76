"""Issue 22's protocol: the few-labels recipe against the SFT controls and the embedder's logistic regression,
on the classification tasks' test splits, over seeded draws of the labeled rows.

    python benchmarks/few_labels.py --data-dir ../shared/data --tasks fpb,sst2,agnews,emotion --labeled 64 \\
        --seeds 0,1,2,3,4 --workers 2 --baselines sft_default,sft_cv
    python benchmarks/few_labels.py --collect-only --recipe benchmarks/recipes/few_labels_v1.yaml --seeds 0

Every cell is one `semievol run` of the recipe (``--recipe``, a file in benchmarks/recipes/, its
task settings replaced) with ``task.limit_labeled`` rows drawn by the seed, 1,000 unlabeled rows (the same
seeded draw) and the whole test split, evaluated for warm (SFT on the labeled rows at the recipe's
settings), evolved, and the compute-matched control (the labeled rows alone for as many optimizer steps as
warm and evolve together). Beside it, on the same draw: a logistic regression on the embedder's vectors
of the labeled rows (``semievol.views.Probe``), the five-second baseline. ``--workers 2`` runs two cells
side by side, one thread each; ``--workers 1 --threads 2`` runs one cell on both cores. Finished cells are
collected, not re-run; the JSON and markdown are rewritten after each cell, so a stopped run loses at most
the cells under way.

``--baselines sft_default,sft_cv`` adds, on the same draws, SFT at semievol's default settings and SFT
with its epochs chosen by cross-validation on the labeled rows (``sft_baselines.py``).
``--ablation class_quota,one_epoch,...`` then runs each part of the recipe undone in turn on the same
seeds, each variant from a copy of its seed's recipe run (the stages it leaves unchanged are reused).

Runs go to runs/few_labels/RECIPE (the recipe file's name without .yaml), the table to
benchmarks/results/few_labels/RECIPE.{json,md}: a changed recipe is a new file, and its cells never mix
with an earlier recipe's.

``--baselines-only`` runs the baselines alone (not the recipe's cells), beside a process running those cells:
each cell takes the baselines' answers when both have finished.
``--baselines semievol_paper,majority_vote`` adds the paper's SemiEvol (semievol's defaults) and the
LMSI-style majority vote (the same run without the justification) on the same draws: about an hour of LLM
pseudo-labelling per cell on two cores.
"""

# ruff: noqa: E402 (the package beside this file is importable only after the sys.path line)
from __future__ import annotations

import argparse
import collections
import functools
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from paper.runs import copy_run
from paper.settings import merge
from paper.stats import delta, gap_pooled, row_paired, stats, tasks_pooled
from recipe_runs import (
    embedder,
    end_children_on_sigterm,
    fit_probe,
    machine,
    pseudo_accuracy,
    run_semievol,
    trained_steps,
    training_precision,
    wall_seconds,
    with_resume_steps,
)
from sft_baselines import run_sft_cv, run_sft_default

from semievol.answers import LETTERS
from semievol.config import TaskConfig
from semievol.stages.evaluate import ensemble_correct
from semievol.tasks import load_task

RUNS = ROOT / "runs" / "few_labels"
RESULTS = HERE / "results" / "few_labels"
N_UNLABELED = 1000
MODELS = ("warm", "sft_matched", "evolved")


def evaluated_models(cfg: dict[str, Any]) -> list[str]:
    """What a cell's run evaluates: warm, evolved and the compute-matched control. Under sft.members (recipe
    v5) the warm models are that control, each trained as many steps as the evolved model under its own
    seed, so the run evaluates them all ('members') instead of training sft_matched (the warm model again)."""
    return ["warm", "evolved", "members"] if cfg.get("sft", {}).get("members", 1) > 1 else list(MODELS)


def warm_models_share(right: dict[str, list[bool]]) -> list[float]:
    """Per test row, the share of a cell's warm models (the warm model and sft.members' others) that got it
    right: under sft.members, the compute-matched control's answer."""
    return np.mean([right["warm"]] + [v for m, v in right.items() if m.startswith("member")], axis=0).tolist()


def control_pairs(cells: list[dict[str, Any]], other: str) -> dict[int, tuple[list[bool], list[Any]]]:
    """(evolved, other) answers per seed. Where a cell has sft.members' warm models, the compute-matched
    control ('sft_matched') is their mean answer per row: the evolved model against five training seeds."""
    out: dict[int, tuple[list[bool], list[Any]]] = {}
    for c in cells:
        r = c["right"]
        if other == "sft_matched" and "member1" in r:
            out[c["seed"]] = (r["evolved"], warm_models_share(r))
        elif other in r:
            out[c["seed"]] = (r["evolved"], r[other])
    return out


def class_weighted(
    pairs: dict[int, tuple[list[Any], list[Any]]], gold: str
) -> dict[int, tuple[list[float], list[float]]]:
    """``pairs`` (``control_pairs``) with each test row's answers scaled by N / (K * the count of its gold class):
    the mean of a model's scaled answers is its balanced accuracy (its recall averaged over the K classes), so
    ``row_paired`` on them gives differences and intervals in balanced accuracy, where a class the test split
    holds few rows of counts as much as a common one and answering only the common classes earns nothing."""
    count = collections.Counter(gold)
    w = [len(gold) / (len(count) * count[g]) for g in gold]
    return {
        s: ([x * float(a) for x, a in zip(w, ev, strict=True)], [x * float(b) for x, b in zip(w, other, strict=True)])
        for s, (ev, other) in pairs.items()
    }


def balanced_pairs(
    cells: list[dict[str, Any]], other: str = "sft_matched"
) -> dict[int, tuple[list[float], list[float]]] | None:
    """The evolved model's and ``other``'s answers per seed, weighted for balanced accuracy (``class_weighted``),
    on cells of one task; None where a cell does not know its test rows' gold answers."""
    if not cells or any("gold" not in c for c in cells):
        return None
    if len({c["gold"] for c in cells}) > 1:
        raise ValueError(f"{cells[0]['task']}: cells answered different test rows")
    return class_weighted(control_pairs(cells, other), cells[0]["gold"])


def class_recall(cells: list[dict[str, Any]], other: str) -> dict[str, dict[str, float]]:
    """Each gold class's recall of the evolved model and of ``other``, averaged over the cells' seeds: where
    the balanced accuracy's gain comes from (a class that few test rows hold, or the common ones)."""
    gold = np.array(list(cells[0]["gold"]))
    pairs = [tuple(np.asarray(a, float) for a in p) for p in control_pairs(cells, other).values()]
    out: dict[str, dict[str, float]] = {"evolved": {}, other: {}}
    for k in sorted(set(gold)):
        for i, model in enumerate(out):
            out[model][k] = float(np.mean([p[i][gold == k].mean() for p in pairs]))
    return out


def balanced(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The evolved model against the compute-matched control and the logistic regression in balanced accuracy,
    with each class's recall, on cells of one task; empty where a cell does not know its test rows' gold."""
    if (pairs := balanced_pairs(cells)) is None:
        return {}
    out = {
        "evolved": stats([float(np.mean(ev)) for ev, _ in pairs.values()]),
        "sft_matched": stats([float(np.mean(m)) for _, m in pairs.values()]),
        "evolved_minus_sft_matched": row_paired(pairs),
        "recall": class_recall(cells, "sft_matched"),
    }
    probe = balanced_pairs(cells, "probe") or {}
    if len(probe) == len(cells):
        out["probe"] = stats([float(np.mean(m)) for _, m in probe.values()])
        out["evolved_minus_probe"] = row_paired(probe)
    return out


def of_seeds(k: int, full: int) -> str:
    """' (k of full seeds)' where a figure was measured on some but not all of a row's seeds, else ''."""
    return f" ({k} of {full} seeds)" if 0 < k < full else ""


def partial(d: dict[str, Any], full: int) -> str:
    """A difference with its interval, saying on how many of the row's seeds it was measured where not all."""
    return delta(d) + of_seeds(d.get("n_seeds", 0), full)


def run_paper(cfg: dict[str, Any], rd: Path) -> None:
    """The paper's SemiEvol: semievol's defaults (4 configurations, justification, entropy percentile, evolve
    from the base model), on the cell's draws."""
    if not (rd / "evaluate" / "metrics.json").exists():
        run_semievol({k: v for k, v in cfg.items() if k != "sft"} | {"evaluate": {"models": ["evolved"]}}, rd)


def run_majority(cfg: dict[str, Any], rd: Path) -> None:
    """The LMSI-style majority vote: the paper's run with no justification (each row's most common vote, kept
    by its confidence), from a copy of the paper's cell (its propagate is reused)."""
    if (rd / "evaluate" / "metrics.json").exists():
        return
    paper = rd.with_name(rd.name.replace("majority_vote", "semievol_paper"))
    run_paper(cfg, paper)
    copy_run(paper, rd)
    plain = {k: v for k, v in cfg.items() if k != "sft"} | {"evaluate": {"models": ["evolved"]}}
    run_semievol(merge(plain, {"select": {"justify": "none", "vote": "majority"}}), rd)


# baseline -> (what runs it on the recipe cell's draws, which of its models answers); each a cell of its own
BASELINES = {
    "sft_default": (run_sft_default, "warm"),
    "sft_cv": (run_sft_cv, "warm"),
    "semievol_paper": (run_paper, "evolved"),
    "majority_vote": (run_majority, "evolved"),  # after semievol_paper: it starts from a copy of that cell
}
NAMES = {
    "sft_default": "SFT at the defaults",
    "sft_cv": "SFT with its epochs by cross-validation",
    "semievol_paper": "the paper's SemiEvol",
    "majority_vote": "the majority vote",
}
SFT_BASELINES = ("sft_matched", "sft_default", "sft_cv")  # 'the best of the SFT baselines' is the best of these
# the ablation: each part of the recipe undone in turn (overrides of the recipe's config)
ABLATIONS: dict[str, dict[str, Any]] = {
    "probe_only": {"propagate": {"configs": ["probe:0:0"]}},  # no LLM vote: the logistic regression teaches
    # the warm model's vote alone (v4: no second view; v5: one warm model teaches, not the five's mean)
    "llm_only": {"propagate": {"configs": ["warm:0:0"]}},
    "short_warm": {"sft": {"epochs": 8}},  # warm trained as in v1 (8 epochs: 64 steps at 64 rows)
    "no_align": {"select": {"align": False}},  # the distributions are not rescaled (v4: class_rank's quotas stay)
    "class_quota": {"select": {"rule": "class_quota"}},  # the quotas filled from each class's argmax rows
    "one_epoch": {"evolve": {"train_epochs": 1}},
    "fresh": {"evolve": {"mode": "fresh"}},  # evolve from the base model, not the warm adapter
    "labeled_once": {"evolve": {"labeled_repeat": 1}},
    "hard_targets": {"evolve": {"targets": "hard"}},  # the aligned mean's argmax instead of its distribution
}


def with_member_steps(cfg: dict[str, Any], n: int) -> dict[str, Any]:
    """``cfg`` with sft.max_steps set to evolve.steps where a members recipe's warm models would otherwise train
    another number of steps at ``n`` labeled rows. Each warm model stands for SFT trained as many steps as the
    evolved model (the compute-matched control), and v5 writes the warm models' budget as epochs for 64 rows
    (48 epochs: 384 steps, evolve's 384), which would be 96 steps at 16 rows and 768 at 128. At 64 rows the
    config is left as it is, so the cells run before this rule keep their fingerprints."""
    sft, evolve = cfg.get("sft", {}), cfg.get("evolve", {})
    if sft.get("members", 1) < 2 or not evolve.get("steps") or evolve.get("mode") != "fresh":
        return cfg
    warm = sft.get("max_steps") or math.ceil(math.ceil(n / sft.get("batch_size", 8)) * sft["epochs"])
    return cfg if warm == evolve["steps"] else {**cfg, "sft": {**sft, "max_steps": evolve["steps"]}}


def cell_dir(root: Path, task: str, n: int, seed: int, variant: str = "") -> Path:
    return root / task / f"l{n}" / (f"seed{seed}_{variant}" if variant else f"seed{seed}")


def run_cell(
    recipe: dict[str, Any], root: Path, data_dir: Path, task: str, n: int, seed: int, variant: str = ""
) -> None:
    rd = cell_dir(root, task, n, seed, variant)
    threads = recipe["model"].get("threads", 1)  # one a cell unless --threads says otherwise
    if variant in BASELINES:  # the labeled draw of the recipe's cell, trained by the baseline
        cfg = {"seed": seed, "model": recipe["model"] | {"threads": threads}, "sft": recipe.get("sft", {})}
        cfg["task"] = {"task": task, "data_dir": str(data_dir), "limit_labeled": n, "limit_unlabeled": N_UNLABELED}
        BASELINES[variant][0](cfg, rd)
        return
    if (rd / "evaluate" / "metrics.json").exists():
        return
    if variant:  # reuse the recipe's stages that the variant leaves unchanged
        base = cell_dir(root, task, n, seed)
        if not (base / "evaluate" / "metrics.json").exists():  # its folder went with an earlier machine
            run_cell(recipe, root, data_dir, task, n, seed)
        copy_run(base, rd)
    cfg = with_member_steps(with_resume_steps(merge(recipe, ABLATIONS.get(variant, {})), n, N_UNLABELED), n)
    cfg["seed"] = seed
    cfg["model"] = cfg["model"] | {"threads": threads}
    cfg["task"] = {"task": task, "data_dir": str(data_dir), "limit_labeled": n, "limit_unlabeled": N_UNLABELED}
    cfg["evaluate"] = {"models": evaluated_models(cfg)}
    run_semievol(cfg, rd)


@functools.cache
def task_vectors(data_dir: Path, task: str) -> dict[str, Any]:
    """The embedder's vectors of a task's labeled and test rows (``teacher.vectors``), read once per process."""
    from teacher import vectors

    return vectors(task, data_dir, RUNS / "vectors", embedder())


def probe_right(data_dir: Path, task: str, n: int, seed: int) -> dict[str, bool]:
    """Test row id -> whether the logistic regression on the run's own draw of labeled rows got it right."""
    vecs = task_vectors(data_dir, task)
    drawn = load_task(TaskConfig(task=task, data_dir=str(data_dir), limit_labeled=n, limit_unlabeled=1), seed=seed)
    probe = fit_probe(vecs["labeled"], vecs["labeled_examples"], drawn.labeled.examples)
    pred = probe.distributions(vecs["test"]).argmax(axis=1)
    return {e.id: LETTERS[int(p)] == e.answer for e, p in zip(vecs["test_examples"], pred, strict=True)}


@functools.cache
def test_answers(data_dir: Path, task: str) -> str:
    """A task's test rows' gold answers in the order of their ids (the order of a cell's ``right``): the
    balanced accuracy of cells stored before cells kept their ``gold``."""
    drawn = load_task(TaskConfig(task=task, data_dir=str(data_dir), limit_labeled=1, limit_unlabeled=1), seed=0)
    assert drawn.test is not None, f"{task}: no test split in {data_dir}"
    return "".join(str(e.answer) for e in sorted(drawn.test.examples, key=lambda e: e.id))


def predictions(rd: Path, model: str) -> list[dict[str, Any]]:
    """The evaluate stage's predictions of ``model`` on the test rows, in the order of the rows' ids."""
    return sorted(map(json.loads, open(rd / "evaluate" / f"predictions_{model}.jsonl")), key=lambda r: r["id"])


def answers_right(rd: Path, model: str) -> list[bool]:
    """Whether ``model`` answered each test row right, in the order of the rows' ids."""
    return [bool(r["correct"]) for r in predictions(rd, model)]


def ensemble_right(rd: Path, members: list[str]) -> list[bool]:
    """Whether the warm models served together (the evaluate stage's ``ensemble_correct``: the mean of their
    option distributions, before select's alignment to the labeled shares) answered each test row right, in the
    order of the rows' ids: the teacher of a recipe with sft.members, and what a user who kept every warm model
    could serve instead of the evolved one."""
    got = ensemble_correct([predictions(rd, m) for m in members])
    assert got is not None, f"{rd}: the warm models' predictions carry no option distributions"
    return got


def baselines_right(root: Path, task: str, n: int, seed: int) -> dict[str, list[bool]]:
    """The answers of the baselines whose runs on a cell's draw have finished."""
    return {
        name: answers_right(cell_dir(root, task, n, seed, name), model)
        for name, (_, model) in BASELINES.items()
        if (cell_dir(root, task, n, seed, name) / "evaluate" / "metrics.json").exists()
    }


def cell_key(c: dict[str, Any]) -> tuple[str, int, int, str]:
    return c["task"], c["labeled"], c["seed"], c.get("variant", "")


def stored_cells(path: Path) -> dict[tuple[str, int, int, str], dict[str, Any]]:
    """The cells a results JSON holds, answers included, so that a later session (whose machine has lost the
    run folders) keeps them in the table and does not run them again. A cell stores each model's answers on
    the test rows as a string of 0s and 1s; a JSON written before cells stored answers gives none."""
    if not path.exists():
        return {}
    cells = json.loads(path.read_text())["cells"]
    return {
        cell_key(c): c | {"right": {m: [b == "1" for b in v] for m, v in c["right"].items()}}
        for c in cells
        if "right" in c
    }


def merge_cells(
    stored: dict[tuple[str, int, int, str], dict[str, Any]], fresh: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Stored cells updated by the ones collected from run folders now; a model answered only in the stored
    cell (a baseline finished in an earlier session) is kept."""
    out = dict(stored)
    for c in fresh:
        old = out.get(cell_key(c), {"right": {}, "accuracy": {}})
        out[cell_key(c)] = c | {"right": old["right"] | c["right"], "accuracy": old["accuracy"] | c["accuracy"]}
    return [out[k] for k in sorted(out)]


def is_done(
    stored: dict[tuple[str, int, int, str], dict[str, Any]], task: str, n: int, seed: int, variant: str
) -> bool:
    """Whether a stored cell already holds this run's answers (a baseline's are in its recipe cell)."""
    if variant in BASELINES:
        return variant in stored.get((task, n, seed, ""), {}).get("right", {})
    return (task, n, seed, variant) in stored


def cell_result(root: Path, data_dir: Path, task: str, n: int, seed: int, variant: str = "") -> dict[str, Any] | None:
    """A recipe or ablation cell's answers, with those of the baselines that finished on its draw."""
    rd = cell_dir(root, task, n, seed, variant)
    if variant in BASELINES or not (rd / "evaluate" / "metrics.json").exists():
        return None
    evaluated = json.loads((rd / "evaluate" / "metrics.json").read_text())["models"]
    right = {m: answers_right(rd, m) for m in evaluated if m in MODELS or m.startswith("member")}
    if "member1" in right:
        right["ensemble"] = ensemble_right(rd, ["warm", *sorted(m for m in right if m.startswith("member"))])
    if not variant:
        right |= baselines_right(root, task, n, seed)
    rows = predictions(rd, "evolved")
    probe = probe_right(data_dir, task, n, seed)
    right["probe"] = [probe[r["id"]] for r in rows]
    pseudo = pseudo_accuracy(rd)
    return {
        "task": task,
        "labeled": n,
        "seed": seed,
        "variant": variant,
        "right": right,
        "gold": "".join(r["gold"] for r in rows),  # the test rows' answers, in the order of ``right``
        "accuracy": {m: float(np.mean(v)) for m, v in right.items()}
        # under sft.members the control's accuracy is the warm models' mean (control_pairs pairs with it)
        | ({"sft_matched": float(np.mean(warm_models_share(right)))} if "member1" in right else {}),
        "pseudo_all": pseudo["all"],
        "pseudo_kept": pseudo["kept"],
        "pseudo_weighted": pseudo["weighted"],
        "kept": pseudo["n_kept"],
        "steps": trained_steps(rd),
        "wall_seconds": wall_seconds(rd),
        "machine": machine(),  # run folders do not outlive their machine: the one collecting is the one that ran
        "precision": training_precision(rd),
    }


def summarise(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    recipe = {(c["task"], c["labeled"], c["seed"]): c for c in cells if not c.get("variant")}
    for task, n, variant in sorted({(c["task"], c["labeled"], c.get("variant", "")) for c in cells}):
        cs = sorted(
            (c for c in cells if (c["task"], c["labeled"], c.get("variant", "")) == (task, n, variant)),
            key=lambda c: c["seed"],
        )
        row: dict[str, Any] = {"task": task, "labeled": n, "variant": variant, "seeds": [c["seed"] for c in cs]}
        for m in (*MODELS, "ensemble", "probe", *BASELINES):  # a baseline counts on the seeds where it finished
            row[m] = stats([c["accuracy"][m] for c in cs if m in c["accuracy"]])
        for other in ("sft_matched", "warm", "ensemble", "probe", *BASELINES):
            pairs = control_pairs(cs, other)
            row[f"evolved_minus_{other}"] = row_paired(pairs) if pairs else {}
        # the strongest SFT baseline by mean accuracy, among those that finished on every seed of the row
        complete = [m for m in SFT_BASELINES if row[m].get("n") == len(cs)]
        row["best_sft"] = max(complete, key=lambda m: row[m]["mean"])
        row["evolved_minus_best_sft"] = row[f"evolved_minus_{row['best_sft']}"]
        if variant:  # the variant's evolved model against the recipe's, on the seeds both ran
            pairs = {
                c["seed"]: (c["right"]["evolved"], recipe[(task, n, c["seed"])]["right"]["evolved"])
                for c in cs
                if (task, n, c["seed"]) in recipe
            }
            row["evolved_minus_recipe"] = row_paired(pairs)
        row["pseudo_all"] = stats([c["pseudo_all"] for c in cs if c["pseudo_all"] is not None])
        row["pseudo_kept"] = stats([c["pseudo_kept"] for c in cs if c["pseudo_kept"] is not None])
        # a cell collected before session 27 has no weighted figure: its run folder went with its machine
        row["pseudo_weighted"] = stats([c["pseudo_weighted"] for c in cs if c.get("pseudo_weighted") is not None])
        row["wall_seconds"] = stats([c["wall_seconds"] for c in cs if c["wall_seconds"]])
        row["balanced"] = balanced(cs)
        out.append(row)
    return out


def disagreement(cells: list[dict[str, Any]], draws: int = 2000) -> dict[str, Any] | None:
    """Whether a cell's gain shows before the student trains. Per recipe cell with warm models: the share of
    test rows its warm models split on (some right, some wrong), the ensemble's accuracy over their mean, and
    the evolved model's over that mean; then Pearson's r of each of the first two with the third across the
    cells, with a 95% interval from resampling the cells. None under 4 such cells."""
    cs = [c for c in cells if not c.get("variant") and "member1" in c["right"] and "ensemble" in c["right"]]
    if len(cs) < 4:
        return None
    per_cell = []
    for c in cs:
        share = np.asarray(warm_models_share(c["right"]))
        per_cell.append(
            {
                "task": c["task"],
                "seed": c["seed"],
                "split": float(np.mean((share > 0) & (share < 1))),
                "ensemble_gain": float(np.mean(c["right"]["ensemble"]) - share.mean()),
                "gain": float(np.mean(c["right"]["evolved"]) - share.mean()),
            }
        )
    x = np.array([[c["split"], c["ensemble_gain"], c["gain"]] for c in per_cell])
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(x), size=(draws, len(x)))
    # within tasks: each task's mean taken out, so that what tells tasks apart does not tell draws apart
    task = np.array([c["task"] for c in per_cell])
    centred = x.copy()
    for t in set(task):
        centred[task == t] -= x[task == t].mean(axis=0)
    out: dict[str, Any] = {"cells": per_cell}
    for i, name in enumerate(("split", "ensemble_gain")):
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample of alike cells has no r
            rs = [np.corrcoef(x[p, i], x[p, 2])[0, 1] for p in picks]
        low, high = np.nanpercentile(rs, [2.5, 97.5])
        out[f"r_{name}"] = {"r": float(np.corrcoef(x[:, i], x[:, 2])[0, 1]), "ci95": [float(low), float(high)]}
        out[f"r_{name}"]["within_tasks"] = float(np.corrcoef(centred[:, i], centred[:, 2])[0, 1])
    return out


def over_tasks(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe's evolved model against each control averaged over the tasks at one label count (each task
    weighted equally, on the seeds it ran): one line where the per-task rows hold a seed or two each."""
    out = []
    recipe = [c for c in cells if not c.get("variant")]
    for n in sorted({c["labeled"] for c in recipe}):
        here = [c for c in recipe if c["labeled"] == n]
        tasks = sorted({c["task"] for c in here})
        if len(tasks) < 2:
            continue
        row: dict[str, Any] = {"labeled": n, "tasks": tasks}
        for other in ("sft_matched", "warm", "ensemble", "probe", *BASELINES):  # a baseline: the cells it ran on
            row[f"evolved_minus_{other}"] = tasks_pooled(
                {t: control_pairs([c for c in here if c["task"] == t], other) for t in tasks}
            )
        fair = {t: balanced_pairs([c for c in here if c["task"] == t]) for t in tasks}
        if all(p is not None for p in fair.values()):
            row["balanced_minus_sft_matched"] = tasks_pooled({t: p for t, p in fair.items() if p is not None})
        if spread := disagreement(here):
            row["disagreement"] = spread
        out.append(row)
    return out


def by_label_count(cells: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task run at several label counts: the evolved model's gain over the row's best SFT baseline at each
    count, and the gain at the fewest labels minus the gain at the most (``gap_pooled``; the issue asks the
    former to be the larger: semi-supervision should matter most where labels are scarcest)."""
    row_of = {(r["task"], r["labeled"]): r for r in rows if not r["variant"]}  # its best SFT and the gain over it
    recipe = [c for c in cells if not c.get("variant")]
    out = []
    for task in sorted({c["task"] for c in recipe}):
        counts = sorted({c["labeled"] for c in recipe if c["task"] == task})
        if len(counts) < 2:
            continue
        pairs = {
            n: control_pairs(
                [c for c in recipe if (c["task"], c["labeled"]) == (task, n)], row_of[(task, n)]["best_sft"]
            )
            for n in counts
        }
        out.append(
            {
                "task": task,
                "counts": [
                    {
                        "labeled": n,
                        "best_sft": row_of[(task, n)]["best_sft"],
                        "gain": row_of[(task, n)]["evolved_minus_best_sft"],
                    }
                    for n in counts
                ],
                "fewest_minus_most": gap_pooled(pairs[counts[0]], pairs[counts[-1]]),
            }
        )
    return out


def pct(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "-"
    return f"{100 * s['mean']:.1f}" + (f" ± {100 * s['sd']:.1f}" if s["n"] > 1 else "")


def pseudo(row: dict[str, Any]) -> str:
    """A row's pseudo-label accuracy: the teacher's on every row, the kept rows', and the kept rows' weighted by
    how far each soft target is from uniform (``soft_weighted_accuracy``), with its seed count where fewer
    cells have it (it is read from run folders, and cells collected before session 27 lost theirs)."""
    w = row.get("pseudo_weighted", {})
    return (
        f"{pct(row['pseudo_all'])} / {pct(row['pseudo_kept'])} / {pct(w)}{of_seeds(w.get('n', 0), len(row['seeds']))}"
    )


def markdown(
    rows: list[dict[str, Any]],
    recipe_path: str,
    machine: str,
    pooled: list[dict[str, Any]] | None = None,
    counts: list[dict[str, Any]] | None = None,
) -> str:
    lines = [
        "# Few labels: the recipe against the SFT baselines and the embedder's logistic regression (issue 22)",
        "",
        f"Command: `python benchmarks/few_labels.py --data-dir ../shared/data ...`; recipe `{recipe_path}`; "
        f"machines: {machine}.",
        "",
        "Accuracy on each task's whole test split, mean ± SD over seeds (each seed its own draw of labeled "
        "rows). Differences: evolved minus the other, the mean over seeds with a 95% two-level bootstrap "
        "interval (seeds, then test rows). warm = SFT on the labeled rows at the recipe's settings; matched = "
        "the labeled rows alone for as many optimizer steps as warm and evolve together (under a recipe with "
        "sft.members: the mean of its warm models, each that control under its own training seed, paired row by "
        "row with the evolved model); default = SFT at "
        "semievol's default settings (lr 1e-4, 2 epochs); CV = SFT at lr 1e-3 with its epochs (8, 24 or 48) "
        "chosen by 2-fold cross-validation on the labeled rows (`sft.cv_epochs`); best SFT = whichever of "
        "matched, default and CV has the highest mean accuracy over the row's seeds (chosen on the test split, "
        "in the baselines' favour); logreg = "
        "logistic regression on all-MiniLM-L6-v2 vectors of the same labeled rows; paper = the paper's SemiEvol "
        "(semievol's defaults), majority = the same without the justification (LMSI-style majority vote). A '-' "
        "baseline did not run on every seed. Pseudo-labels right: all = the teacher's answer on every unlabeled "
        "row; kept = the selected rows' labels; weighted = the kept rows' most likely option under their "
        "training target, each weighted by one minus the target's normalised entropy (how much a soft target "
        "teaches), read from run folders collected since session 27.",
        "",
        "| task | labeled | seeds | warm | matched | default | CV | logreg | paper | majority | evolved | "
        "evolved - best SFT | evolved - paper | evolved - logreg | pseudo-labels right: all / kept / weighted | "
        "wall s per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if not r["variant"]):
        wall = f"{r['wall_seconds']['mean']:.0f}" if r["wall_seconds"].get("n") else "-"
        full = len(r["seeds"])
        base = {m: pct(r[m]) if r[m].get("n") == full else "-" for m in BASELINES}
        lines.append(
            f"| {r['task']} | {r['labeled']} | {full} | {pct(r['warm'])} | {pct(r['sft_matched'])} | "
            f"{base['sft_default']} | {base['sft_cv']} | {pct(r['probe'])} | {base['semievol_paper']} | "
            f"{base['majority_vote']} | {pct(r['evolved'])} | "
            f"{delta(r['evolved_minus_best_sft'])} ({r['best_sft'].removeprefix('sft_')}) | "
            f"{partial(r['evolved_minus_semievol_paper'], full)} | {delta(r['evolved_minus_probe'])} | {pseudo(r)} | "
            f"{wall} |"
        )
    for p in pooled or []:
        lines += [
            "",
            f"Over the tasks at {p['labeled']} labeled rows ({', '.join(p['tasks'])}; each task weighted equally, "
            f"{p['evolved_minus_sft_matched']['n_cells']} cells; the interval redraws seeds and test rows within "
            "each task): evolved minus matched "
            f"{delta(p['evolved_minus_sft_matched'])}, minus warm {delta(p['evolved_minus_warm'])}, "
            f"minus logreg {delta(p['evolved_minus_probe'])}"
            + (
                f", minus the warm models' ensemble {delta(p['evolved_minus_ensemble'])}"
                if p["evolved_minus_ensemble"].get("n_tasks") == len(p["tasks"])
                else ""
            )
            + ".",
        ]
        ran = [(NAMES[b], d) for b in BASELINES if (d := p[f"evolved_minus_{b}"]).get("n_tasks")]
        if ran:
            lines += [
                "",
                "On the draws where each baseline ran (each task weighted equally): evolved minus "
                + "; ".join(f"{name} {delta(d)} ({d['n_cells']} cells, {d['n_tasks']} tasks)" for name, d in ran)
                + ".",
            ]
    for t in counts or []:
        few, most = t["counts"][0]["labeled"], t["counts"][-1]["labeled"]
        gap = t["fewest_minus_most"]
        lines += [
            "",
            f"{t['task']} by label count, evolved minus the best SFT baseline: "
            + "; ".join(
                f"at {c['labeled']} {delta(c['gain'])} ({c['best_sft'].removeprefix('sft_')}, "
                f"{c['gain']['n_seeds']} seed{'s' * (c['gain']['n_seeds'] > 1)})"
                for c in t["counts"]
            )
            + f". The gain at {few} minus the gain at {most}: {delta(gap)} (each side's seeds redrawn on its own, "
            "the test rows together).",
        ]
    fair = [r for r in rows if not r["variant"] and r.get("balanced")]
    if fair:
        lines += [
            "",
            "Balanced accuracy (each class's recall averaged over the classes: FPB's and emotion's test splits are "
            "imbalanced, and a model gains accuracy there by answering their common classes alone), evolved "
            "against matched, with the difference's interval: "
            + "; ".join(
                f"{r['task']} ({r['labeled']}, {len(r['seeds'])} seed{'s' * (len(r['seeds']) > 1)}) "
                f"{pct(r['balanced']['evolved'])} against "
                f"{pct(r['balanced']['sft_matched'])}, {delta(r['balanced']['evolved_minus_sft_matched'])}"
                + (
                    f" (logreg {pct(r['balanced']['probe'])}, evolved minus it "
                    f"{delta(r['balanced']['evolved_minus_probe'])})"
                    if "probe" in r["balanced"]
                    else ""
                )
                for r in fair
            )
            + "".join(
                f"; over the tasks at {p['labeled']} labeled rows {delta(p['balanced_minus_sft_matched'])}"
                for p in pooled or []
                if "balanced_minus_sft_matched" in p
            )
            + ".",
            "",
            "Each class's recall (its option letter in the task's data), matched -> evolved, the mean over seeds: "
            + "; ".join(
                f"{r['task']} ({r['labeled']}) "
                + ", ".join(
                    f"{k} {100 * m:.0f} -> {100 * r['balanced']['recall']['evolved'][k]:.0f}"
                    for k, m in r["balanced"]["recall"]["sft_matched"].items()
                )
                for r in fair
            )
            + ".",
        ]
    for p in pooled or []:
        if spread := p.get("disagreement"):
            lines += [
                "",
                f"Where the gain comes from (the {len(spread['cells'])} cells at {p['labeled']} labeled rows with "
                "warm models): the evolved model's gain over the warm models' mean follows the share of test rows "
                "the warm models split on (some right, some wrong), Pearson's r "
                f"{spread['r_split']['r']:.2f} [{spread['r_split']['ci95'][0]:.2f}, "
                f"{spread['r_split']['ci95'][1]:.2f}] (cells resampled; {spread['r_split']['within_tasks']:.2f} "
                "within tasks, each task's mean taken out: the split tells tasks apart more than draws), and the "
                f"warm models' ensemble's gain over their mean, r {spread['r_ensemble_gain']['r']:.2f} "
                f"[{spread['r_ensemble_gain']['ci95'][0]:.2f}, {spread['r_ensemble_gain']['ci95'][1]:.2f}] "
                f"({spread['r_ensemble_gain']['within_tasks']:.2f} within tasks): "
                + ", ".join(
                    f"{c['task']} {c['seed']} split {100 * c['split']:.0f}% ensemble {100 * c['ensemble_gain']:+.1f} "
                    f"evolved {100 * c['gain']:+.1f}"
                    for c in spread["cells"]
                )
                + ". Warm models that agree leave the unlabeled rows little to teach.",
            ]
    ens = [r for r in rows if not r["variant"] and r["ensemble"].get("n") == len(r["seeds"])]
    if ens:
        lines += [
            "",
            "The warm models' ensemble (the mean of their option distributions on each test row: the recipe's "
            "teacher before alignment, and what a user who trained as many models and served them all would "
            "get, at that many times the inference cost) against the one evolved model: "
            + "; ".join(
                f"{r['task']} ({r['labeled']}) ensemble {pct(r['ensemble'])}, evolved minus it "
                f"{delta(r['evolved_minus_ensemble'])}"
                for r in ens
            )
            + ".",
        ]
    ablation = [r for r in rows if r["variant"]]
    if ablation:
        lines += [
            "",
            "Ablation: one part of the recipe undone at a time, on the same seeds (a variant reuses its seed's "
            "stages that it leaves unchanged). Overrides: "
            + "; ".join(
                f"`{k}` {json.dumps(v)}" for k, v in ABLATIONS.items() if k in {r["variant"] for r in ablation}
            ),
            "",
            "| task | labeled | variant | seeds | evolved | matched | evolved - matched | variant - recipe "
            "| pseudo-labels right: all / kept / weighted |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ablation:
            lines.append(
                f"| {r['task']} | {r['labeled']} | {r['variant']} | {len(r['seeds'])} | {pct(r['evolved'])} | "
                f"{pct(r['sft_matched'])} | {delta(r['evolved_minus_sft_matched'])} | "
                f"{delta(r['evolved_minus_recipe'])} | {pseudo(r)} |"
            )
    return "\n".join(lines) + "\n"


def machines(cells: list[dict[str, Any]]) -> str:
    """Where the cells ran, with how many ran there: sessions get different CPUs, and where bf16 is not faster
    than fp32 the training runs in fp32 (slower, and another numeric path)."""
    where = collections.Counter(
        f"{c['machine']}, training in {c['precision']}"
        if c.get("machine")
        else "not recorded (cells before session 15)"
        for c in cells
    )
    return "; ".join(f"{k} ({n} cell{'s' * (n > 1)})" for k, n in sorted(where.items()))


def write(args: argparse.Namespace, root: Path, cells: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = summarise(cells)
    pooled = over_tasks(cells)
    counts = by_label_count(cells, rows)
    kept = [c | {"right": {m: "".join("01"[b] for b in v) for m, v in c["right"].items()}} for c in cells]
    tmp = RESULTS / f"{root.name}.json.tmp"  # the JSON is the record of every finished cell: never half-written
    tmp.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "machine": machine(),
                "cells": kept,
                "summary": rows,
                "over_tasks": pooled,
                "by_label_count": counts,
            },
            indent=1,
        )
        + "\n"
    )
    tmp.replace(RESULTS / f"{root.name}.json")
    (RESULTS / f"{root.name}.md").write_text(markdown(rows, args.recipe, machines(cells), pooled, counts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--recipe", default="benchmarks/recipes/few_labels_v3.yaml")
    ap.add_argument("--tasks", default="fpb,sst2,agnews,emotion")
    ap.add_argument("--labeled", default="64")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baselines", default="", help=f"comma list of {', '.join(BASELINES)} (after the recipe's cells)")
    ap.add_argument("--ablation", default="", help=f"comma list of {', '.join(ABLATIONS)} (after the baselines)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads a cell (2 with --workers 1 on two cores)")
    ap.add_argument(
        "--baselines-only",
        action="store_true",
        help="run the --baselines alone, not the recipe's cells: they train on the draws, not from the cells, so "
        "they can run beside the process that runs those cells",
    )
    ap.add_argument("--collect-only", action="store_true")
    args = ap.parse_args()
    end_children_on_sigterm()
    data_dir = args.data_dir.resolve()
    recipe = yaml.safe_load((ROOT / args.recipe).read_text())
    recipe["model"]["threads"] = args.threads
    root = RUNS / Path(args.recipe).stem
    grid = [
        (task, int(n), int(s))
        for s in args.seeds.split(",")
        for n in args.labeled.split(",")
        for task in args.tasks.split(",")
    ]
    baselines = [v for v in args.baselines.split(",") if v]
    variants = [v for v in args.ablation.split(",") if v]
    for flag, names, known in (("--baselines", baselines, BASELINES), ("--ablation", variants, ABLATIONS)):
        if unknown := [v for v in names if v not in known]:
            raise SystemExit(f"{flag}: unknown name(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.baselines_only and (variants or not baselines):
        raise SystemExit("--baselines-only runs --baselines and no --ablation (a variant starts from its recipe cell)")
    todo = [(*g, "") for g in grid if not args.baselines_only] + [(*g, v) for v in baselines + variants for g in grid]
    # the recipe's cells first; an ablation variant starts from its seed's recipe cell
    phases = [
        [t for t in todo if not t[3]],
        [t for t in todo if t[3] and t[3] != "majority_vote"],
        [t for t in todo if t[3] == "majority_vote"],
    ]

    # cells of earlier sessions: kept in the table, never run again
    stored = stored_cells(RESULTS / f"{root.name}.json")

    def collect() -> list[dict[str, Any]]:
        # read again: another few_labels process (other seeds, an ablation) may have written cells meanwhile
        on_disk = stored_cells(RESULTS / f"{root.name}.json")
        # the grid's recipe cells too: with --baselines-only, one that finished beside it takes its answers
        read = dict.fromkeys([(*g, "") for g in grid] + todo)
        fresh = [c for t in read if (c := cell_result(root, data_dir, *t)) is not None]
        for key, c in on_disk.items():  # a baseline finished now on the draw of a cell whose run folder is gone
            if not key[3] and not cell_dir(root, *key[:3]).exists() and (new := baselines_right(root, *key[:3])):
                accuracy = {m: float(np.mean(v)) for m, v in new.items()}
                fresh.append(c | {"right": c["right"] | new, "accuracy": c["accuracy"] | accuracy})
        cells = merge_cells(on_disk, fresh)
        for c in cells:  # cells stored before they kept their test rows' answers
            c.setdefault("gold", test_answers(data_dir, c["task"]))
            if len(c["gold"]) != len(c["right"]["evolved"]):
                raise SystemExit(f"{c['task']} seed {c['seed']}: its cell answered another test split than {data_dir}")
        return cells

    if not args.collect_only:
        for phase in phases:
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                todo_now = [t for t in phase if not is_done(stored, *t)]
                for _ in pool.map(lambda t: run_cell(recipe, root, data_dir, *t), todo_now):
                    write(args, root, collect())
    if cells := collect():
        write(args, root, cells)


if __name__ == "__main__":
    main()
