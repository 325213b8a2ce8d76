"""How good a teacher the embedder's view is, before any language model runs.

For each classification task, labeled-row count and seed, the labeled rows are drawn as `semievol run` draws
them (``task.limit_labeled`` with the run seed). On the embedder's vectors (all-MiniLM-L6-v2, the embedded
one) it measures, with semievol's own code (``semievol.views``, ``semievol.stages.select``):

- the test accuracy of a logistic regression on the labeled rows (the five-second baseline a user could run
  instead of any fine-tuning) and of similarity-weighted kNN;
- the accuracy of the probe's pseudo-labels on the unlabeled split: all of them, the theta-50 percentile of
  their entropy, and class quotas after distribution alignment (``select.align``, ``select.rule
  class_quota``), with the kept rows' class counts.

    python benchmarks/teacher.py --data-dir ../shared/data --out benchmarks/results/teacher

Writes teacher.json and teacher.md; the vectors are cached under --cache (runs/teacher by default).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from semievol.answers import LETTERS
from semievol.config import SelectConfig, TaskConfig
from semievol.models import load_embedder
from semievol.retrieval import cached_embeddings, embed
from semievol.stages.scoring import adjusted, class_shares, normalized_entropy, select_mask
from semievol.tasks import load_task
from semievol.views import Probe, knn_distributions, label_indices

TASKS = ("fpb", "sst2", "agnews", "emotion")


def mean_ci(xs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a t-based 95% interval over seeds."""
    a = np.asarray(xs, dtype=np.float64)
    if len(a) < 2:
        return float(a.mean()), float("nan")
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57}.get(len(a), 2.26)
    return float(a.mean()), float(t * a.std(ddof=1) / np.sqrt(len(a)))


def gold(examples) -> np.ndarray:
    return np.asarray([LETTERS.index(e.answer) for e in examples])


def selection_accuracy(dists: np.ndarray, y: np.ndarray, cfg: SelectConfig, shares: dict | None) -> dict:
    answers = dists.argmax(axis=1)
    scores = [normalized_entropy(d) for d in dists]
    keep, _ = select_mask(scores, cfg, groups=[LETTERS[a] for a in answers], shares=shares)
    k = np.asarray(keep)
    return {
        "kept": int(k.sum()),
        "accuracy": float((answers[k] == y[k]).mean()) if k.any() else float("nan"),
        "kept_per_class": dict(sorted(Counter(LETTERS[a] for a in answers[k]).items())),
    }


def one(task: str, vecs: dict, n_labeled: int, seed: int, data_dir: Path) -> dict:
    split = load_task(
        TaskConfig(
            labeled=str(data_dir / task / "labeled.csv"),
            unlabeled=str(data_dir / task / "unlabeled.csv"),
            test=str(data_dir / task / "test.csv"),
            limit_labeled=n_labeled,
        ),
        seed=seed,
    )
    pos = {e.id: i for i, e in enumerate(vecs["labeled_examples"])}
    lab = split.labeled.examples
    keys = vecs["labeled"][[pos[e.id] for e in lab]]
    n_opt = len(lab[0].options)
    y_lab = label_indices(lab, n_opt)
    t = time.time()
    probe = Probe(keys, y_lab, n_opt)
    test_p = probe.distributions(vecs["test"])
    fit_seconds = time.time() - t
    y_test, y_unl = gold(vecs["test_examples"]), gold(vecs["unlabeled_examples"])
    knn_test = knn_distributions(keys, y_lab, vecs["test"], min(16, len(lab)), n_opt)
    unl = probe.distributions(vecs["unlabeled"])
    mean = unl.mean(axis=0)
    target = class_shares(lab)[n_opt]
    aligned = np.stack([adjusted(d, mean / target) for d in unl])
    shares = {LETTERS[j]: float(x) for j, x in enumerate(target)}
    return {
        "task": task,
        "labeled": len(lab),
        "seed": seed,
        "fit_seconds": round(fit_seconds, 3),
        "probe_test": float((test_p.argmax(1) == y_test).mean()),
        "knn_test": float((knn_test.argmax(1) == y_test).mean()),
        "pseudo_all": float((unl.argmax(1) == y_unl).mean()),
        "pseudo_aligned_all": float((aligned.argmax(1) == y_unl).mean()),
        "percentile50": selection_accuracy(unl, y_unl, SelectConfig(rule="percentile", theta=50), None),
        "aligned_quota50": selection_accuracy(aligned, y_unl, SelectConfig(rule="class_quota", theta=50), shares),
        "gold_unlabeled_per_class": dict(sorted(Counter(LETTERS[a] for a in y_unl).items())),
    }


def vectors(task: str, data_dir: Path, cache: Path, embedder) -> dict:
    whole = load_task(
        TaskConfig(
            labeled=str(data_dir / task / "labeled.csv"),
            unlabeled=str(data_dir / task / "unlabeled.csv"),
            test=str(data_dir / task / "test.csv"),
        )
    )
    out = {}
    for name, split in (("labeled", whole.labeled), ("unlabeled", whole.unlabeled), ("test", whole.test)):
        examples = list(split.iter_examples())
        out[name] = cached_embeddings(
            cache / f"{task}_{name}", [e.question for e in examples], lambda texts: embed(texts, embedder)
        )
        out[f"{name}_examples"] = examples
    return out


def markdown(rows: list[dict], command: str, machine: str) -> str:
    lines = [
        "# The embedder's view as a teacher",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}",
        "",
        "Mean over seeds with a t-based 95% interval, in %. probe = logistic regression on the labeled rows' "
        "vectors (test accuracy); pseudo = the probe's labels of the unlabeled split (all, the entropy "
        "percentile 50, aligned class quotas 50).",
        "",
        "| task | labeled | seeds | probe test | kNN test | pseudo all | pseudo kept, percentile 50 | "
        "pseudo kept, aligned quota 50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["task"], r["labeled"]) for r in rows}, key=lambda k: (TASKS.index(k[0]), k[1]))
    for task, n in keys:
        rs = [r for r in rows if r["task"] == task and r["labeled"] == n]

        def cell(vals: list[float]) -> str:
            m, h = mean_ci([100 * v for v in vals])
            return f"{m:.1f} ± {h:.1f}"

        lines.append(
            f"| {task} | {n} | {len(rs)} | {cell([r['probe_test'] for r in rs])} | "
            f"{cell([r['knn_test'] for r in rs])} | {cell([r['pseudo_all'] for r in rs])} | "
            f"{cell([r['percentile50']['accuracy'] for r in rs])} | "
            f"{cell([r['aligned_quota50']['accuracy'] for r in rs])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher"))
    ap.add_argument("--cache", type=Path, default=Path("runs/teacher"))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--labeled", default="16,32,64,128")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--machine", default="2-core AMD EPYC (AVX2, no AVX-512), no GPU")
    a = ap.parse_args()
    embedder = load_embedder("embedded")
    a.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in a.tasks.split(","):
        v = vectors(task, a.data_dir, a.cache, embedder)
        for n in map(int, a.labeled.split(",")):
            for s in map(int, a.seeds.split(",")):
                rows.append(one(task, v, n, s, a.data_dir))
                print(json.dumps({k: rows[-1][k] for k in ("task", "labeled", "seed", "probe_test", "pseudo_all")}))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "teacher.json").write_text(json.dumps(rows, indent=1) + "\n")
    cmd = "python benchmarks/teacher.py --data-dir ../shared/data --out benchmarks/results/teacher"
    (a.out / "teacher.md").write_text(markdown(rows, cmd, a.machine))
    print((a.out / "teacher.md").read_text())


if __name__ == "__main__":
    main()
