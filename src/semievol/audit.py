"""Labeled rows whose given answer the models doubt: confident learning on out-of-fold predictions.

Each labeled row is scored by a model that never saw it. The labeled rows are split into seeded folds
(stratified by answer), and a softmax regression on the run's question embeddings, fit on the other folds,
gives the row's probability for each class (the option texts of a closed label set, as in FPB or SST-2).
Where the run has finished a select stage, the regression of every fold also trains on the unlabeled rows
that selection kept, with their pseudo-labels (``--pseudo kept``, the default; ``--pseudo none`` leaves
them out): they carry what the LLM learned into a classifier that otherwise sees only the other folds.
Those pseudo-labels come from a warm model trained on every labeled row, the audited one too, so a wrong
label can echo back through its neighbours' pseudo-labels; a kept row whose question is a labeled row's
is left out. On SST-2 they made the flagged rows more precise (41% to 46% of them wrong, as many wrong
labels found) and found about as many of the wrong labels in the top 10% (docs/results/label_next.md).

Confident learning (Northcutt, Jiang and Chuang 2021, the idea behind cleanlab), written here from the
paper's definitions: the threshold of class j is the mean predicted probability of j over the rows labeled
j (its mean self-confidence); a row's confident label is its likeliest class among those whose probability
reaches their threshold; a row is flagged when that label is not the given answer. The ranking puts the
flagged rows first, by the margin between the confident label's probability and the given answer's
(largest first), then the others by the given answer's probability (lowest first).

``RUN_DIR/audit/audit.jsonl`` holds every labeled row in that order, ``audit.json`` the method, the
thresholds and the counts; the report's audit section shows the top rows. No model calls: the embeddings
are propagate's cached ones where present, else computed by the run's embedder and cached in ``audit/``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .answers import LETTERS
from .config import ConfigError
from .jsonio import atomic_write_json, atomic_write_jsonl
from .rundir import StageMissing, load_pseudo_labels
from .suggest import LazyEmbedder, label_names, run_config, run_embeddings
from .tasks import load_task

FOLDS = 5
PSEUDO = ("kept", "none")  # which of the run's pseudo-labelled rows each fold's classifier also trains on


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, iters: int = 300) -> np.ndarray:
    """Weights (features + 1, classes) of a multinomial logistic regression: mean cross-entropy plus
    ``l2 / 2`` times the squared weights (bias not penalised), by Nesterov's accelerated gradient descent.
    Rows of ``x`` are unit vectors, so a step of 1 / (1 + l2) is safe."""
    xb = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    onehot = np.eye(n_classes)[y]
    w = np.zeros((xb.shape[1], n_classes))
    prev, step = w, 1.0 / (1.0 + l2)
    for t in range(1, iters + 1):
        v = w + (t - 2) / (t + 1) * (w - prev) if t > 1 else w
        p = softmax(xb @ v)
        grad = xb.T @ (p - onehot) / len(xb)
        grad[:-1] += l2 * v[:-1]
        prev, w = w, v - step * grad
    return w


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return softmax(np.hstack([x.astype(np.float64), np.ones((len(x), 1))]) @ w)


def fold_of(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row: each class's rows shuffled (seeded) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(y), dtype=np.int64)
    start = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        out[idx] = (start + np.arange(len(idx))) % folds
        start += len(idx)
    return out


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    folds: int,
    seed: int,
    l2: float | None = None,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Class probabilities of every row from a model fit on the other folds, plus the ``extra`` rows
    (vectors, classes) in every fold's training. ``l2`` defaults to 1 / (training rows), the scale of
    scikit-learn's C = 1."""
    fold = fold_of(y, folds, seed)
    probs = np.zeros((len(y), n_classes))
    x_extra, y_extra = extra if extra is not None else (x[:0], y[:0])
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        xt, yt = np.vstack([x[~test], x_extra]), np.concatenate([y[~test], y_extra])
        w = fit_softmax(xt, yt, n_classes, l2 if l2 is not None else 1.0 / max(len(yt), 1))
        probs[test] = predict_proba(x[test], w)
    return probs


def kept_pseudo_labels(run_dir: Path, names: list[str], labeled_questions: set[str]) -> list[tuple[str, int]]:
    """(question, class) of the unlabeled rows the run's last select stage kept, on the labeled rows'
    option list; none where select has not finished. Rows whose question is a labeled one are skipped."""
    try:
        _, rows, _ = load_pseudo_labels(run_dir)
    except StageMissing:
        return []
    letters = list(LETTERS[: len(names)])
    return [
        (r["question"], letters.index(r["answer"]))
        for r in rows
        if r.get("selected")
        and r.get("answer") in letters
        and r.get("options") == names
        and r["question"] not in labeled_questions
    ]


def confident_learning(probs: np.ndarray, given: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class thresholds, each row's confident label (-1: none reaches its threshold), whether it is
    flagged, its margin, and the ranking (indices, most doubtful first)."""
    n, k = probs.shape
    thresholds = np.array([probs[given == j, j].mean() if (given == j).any() else 1.0 for j in range(k)])
    above = probs >= thresholds[None, :]
    confident = np.where(above.any(axis=1), np.argmax(np.where(above, probs, -1.0), axis=1), -1)
    self_conf = probs[np.arange(n), given]
    flagged = (confident >= 0) & (confident != given)
    margin = np.where(flagged, probs[np.arange(n), np.maximum(confident, 0)] - self_conf, 0.0)
    # flagged rows by margin (largest first), then the rest by self-confidence (lowest first); ties by row
    key = np.where(flagged, -margin - 2.0, self_conf)
    order = np.lexsort((np.arange(n), key))
    return {
        "thresholds": thresholds,
        "confident": confident,
        "flagged": flagged,
        "margin": margin,
        "self_confidence": self_conf,
        "order": order,
    }


def audit(run_dir: Path, folds: int = FOLDS, seed: int | None = None, pseudo: str = "kept") -> Path:
    """Write ``RUN_DIR/audit/audit.jsonl`` (every labeled row, most doubtful first) and ``audit.json``."""
    if pseudo not in PSEUDO:
        raise ConfigError(f"--pseudo: must be one of {', '.join(PSEUDO)}; got {pseudo!r}")
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    task = load_task(cfg.task, seed=cfg.seed)
    names = label_names(task)
    if names is None:
        raise ConfigError(
            "audit: needs a multiple-choice task whose rows all share one option list (a closed "
            "label set such as FPB's sentiments): the out-of-fold classifier predicts those classes"
        )
    labeled = task.labeled.examples
    y = np.array([LETTERS.index(e.answer) for e in labeled if e.answer is not None])
    if folds < 2:
        raise ConfigError(f"--folds: must be at least 2, got {folds}")
    if len(labeled) < folds:
        raise ConfigError(f"--folds: {folds} folds need at least {folds} labeled rows; the split has {len(labeled)}")
    make = LazyEmbedder(cfg.model.embedder)
    x = run_embeddings(run_dir, make, [e.question for e in labeled], "emb_labeled", "audit")
    kept = kept_pseudo_labels(run_dir, names, {e.question for e in labeled}) if pseudo == "kept" else []
    extra = None
    if kept:
        x_kept = run_embeddings(run_dir, make, [q for q, _ in kept], "emb_kept", "audit")
        extra = (x_kept, np.array([c for _, c in kept], dtype=np.int64))
    seed = cfg.seed if seed is None else seed
    probs = out_of_fold(x, y, len(names), folds, seed, extra=extra)
    cl = confident_learning(probs, y)
    rows: list[dict[str, Any]] = []
    for rank, i in enumerate(cl["order"], start=1):
        e, c = labeled[i], int(cl["confident"][i])
        rows.append(
            {
                "rank": rank,
                "id": e.id,
                "row": e.row,
                "question": e.question,
                "options": e.options,
                "given": e.answer,
                "given_text": names[y[i]],
                "p_given": round(float(cl["self_confidence"][i]), 4),
                "confident": LETTERS[c] if c >= 0 else None,
                "confident_text": names[c] if c >= 0 else None,
                "p_confident": round(float(probs[i, c]), 4) if c >= 0 else None,
                "margin": round(float(cl["margin"][i]), 4),
                "flagged": bool(cl["flagged"][i]),
                "probs": {n: round(float(p), 4) for n, p in zip(names, probs[i], strict=True)},
            }
        )
    out = run_dir / "audit"
    atomic_write_jsonl(out / "audit.jsonl", rows)
    atomic_write_json(
        out / "audit.json",
        {
            "method": "confident learning (per-class thresholds = mean self-confidence) on out-of-fold probabilities "
            "of a softmax regression on question embeddings"
            + (", each fold also trained on the run's kept pseudo-labels" if kept else ""),
            "pseudo": pseudo,
            "pseudo_labels": len(kept),
            "embedder": cfg.model.embedder,
            "folds": folds,
            "seed": seed,
            "rows": len(labeled),
            "flagged": int(cl["flagged"].sum()),
            "classes": names,
            "thresholds": {n: round(float(t), 4) for n, t in zip(names, cl["thresholds"], strict=True)},
            "given_per_class": {names[j]: int(k) for j, k in sorted(Counter(y.tolist()).items())},
            "out_of_fold_accuracy": round(float((probs.argmax(axis=1) == y).mean()), 4),
        },
    )
    return out / "audit.jsonl"


def audit_command(args: Any) -> int:
    """``semievol audit RUN_DIR [--folds K] [--pseudo kept|none]``; a report already in the run folder is
    rewritten, since its audit section changes."""
    print(audit(args.run_dir, args.folds, pseudo=args.pseudo))
    if (args.run_dir / "report.html").exists():
        from .report import write_report

        write_report(args.run_dir)
    return 0
