"""Which unlabeled rows a person should label next, chosen from what a run stored (no model calls).

The signals are those of the last finished select stage (``pseudo_labels.jsonl``: every vote, the
justified option distribution, the answer) and embeddings of the questions by the run's embedder (the
labeled ones as propagate cached them; the unlabeled ones are cached in ``RUN_DIR/suggest/``). Per row:

- *uncertainty* in [0, 1]: the mean of one minus the margin between the run's answer and the runner-up
  (justified distribution, else the mean of the votes' distributions; free-form: one minus the mean token
  probability of the justified response) and the vote split (0 unanimous, 1 every vote different);
- *distance*: one minus the cosine similarity to the nearest labeled row or row already chosen;
- *class need* in [0, 1]: how far the class of the run's answer or of the runner-up falls short of an even
  share of the labels (labeled rows plus rows already chosen, counted by their guess); multiple choice.

Strategies (``Strategy``): ``uncertainty`` takes the most uncertain rows; ``diversity`` is greedy
farthest-point (k-center) over every unlabeled row, starting from the labeled ones; ``coverage`` serves the
class with the fewest labels at each step, with its most uncertain row; ``mix`` (default) takes, among the
``POOL_FACTOR * n`` most uncertain rows, at each step the one with the largest uncertainty x (1 + class
need) x distance, the distance counted only up to the pool's median distance to the labeled rows: a row
close to one already labeled or chosen is worth less, but a row far from everything is worth no more than
a typical one (farthest-point alone chases outliers; docs/results/label_next.md). Every strategy skips a row
at cosine similarity ``DUP_SIM`` or more to a row already chosen, so no two suggestions are near-duplicates.

The output is in the task's own input shape (id, question, options, and the answer column left empty) plus
the run's guess, its confidence and why the row was chosen, with the strategy on every row, so that the
file, once filled in, goes straight back through ``task.add_labels``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from .answers import LETTERS, canonical_vote
from .config import ConfigError, RunConfig, TaskConfig, build_config, load_yaml
from .jsonio import atomic_write_json, atomic_write_jsonl, atomic_write_text
from .retrieval import cached_embeddings, embedding_file, nearest, text_embedder
from .rundir import StageMissing, load_pseudo_labels, need_run_dir
from .tasks import Example, Task, load_task

Strategy = Literal["mix", "uncertainty", "diversity", "coverage"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DUP_SIM = 0.95  # cosine similarity at which two questions count as near-duplicates
POOL_FACTOR = 4  # mix: candidates are the POOL_FACTOR * n most uncertain rows


@dataclass
class Signal:
    """What the run says about one unlabeled row."""

    guess: str | None
    runner_up: str | None
    confidence: float
    """Probability of the guess (multiple choice), mean token probability of the justified response (free-form)."""
    margin: float
    split: float
    uncertainty: float


def vote_split(answers: list[str | None]) -> float:
    """0 when every vote agrees, 1 when every vote differs (a missing answer counts as its own vote)."""
    n = len(answers)
    if n < 2:
        return 0.0
    top = max(Counter(map(str, answers)).values())
    return (1 - top / n) / (1 - 1 / n)


def row_signal(r: dict[str, Any], kind: str) -> Signal:
    """The guess, runner-up, confidence and uncertainty of one ``pseudo_labels.jsonl`` row."""
    votes = canonical_vote([v["answer"] for v in r["votes"]], kind)
    split = vote_split(votes)
    guess = r.get("answer")
    if kind == "choice":
        dist = r.get("justify_dist") or np.mean([v["dist"] for v in r["votes"]], axis=0)
        p = np.asarray(dist, dtype=np.float64)
        p = p / p.sum()
        g = LETTERS.index(guess) if guess is not None and guess in LETTERS[: len(p)] else int(np.argmax(p))
        others = [i for i in np.argsort(-p, kind="stable") if i != g]
        runner = int(others[0]) if others else None
        conf = float(p[g])
        margin = max(0.0, conf - (float(p[runner]) if runner is not None else 0.0))
        return Signal(
            guess,
            LETTERS[runner] if runner is not None else None,
            conf,
            margin,
            split,
            0.5 * (1 - margin) + 0.5 * split,
        )
    score = r.get("score")
    conf = math.exp(-score) if isinstance(score, int | float) and math.isfinite(score) else 0.0
    counts = Counter(a for a in votes if a is not None and a != guess)
    runner_free = counts.most_common(1)[0][0] if counts else None
    return Signal(guess, runner_free, conf, conf, split, 0.5 * (1 - conf) + 0.5 * split)


@dataclass
class Pick:
    index: int
    distance: float
    need: float


def choose(
    signals: list[Signal],
    classes: list[tuple[str | None, str | None]],
    emb_unlabeled: np.ndarray,
    emb_labeled: np.ndarray,
    labeled_counts: Counter[str],
    n: int,
    strategy: str,
    dup_sim: float = DUP_SIM,
    pool_factor: int = POOL_FACTOR,
) -> list[Pick]:
    """Up to ``n`` rows by ``strategy`` (see the module docstring), in the order they were chosen.

    ``classes``: per row, the class of its guess and of its runner-up (None where classes do not apply);
    ``labeled_counts``: labels per class so far, every class of the task present (zero where unlabeled).
    """
    m = len(signals)
    u = np.array([s.uncertainty for s in signals], dtype=np.float64)
    if len(emb_labeled):
        dist = 1.0 - nearest(emb_labeled, emb_unlabeled, 1)[1][:, 0].astype(np.float64)
    else:
        dist = np.full(m, 2.0)
    near_pick = np.full(m, -np.inf)  # largest similarity to a row already chosen
    eligible = np.ones(m, dtype=bool)
    d_ref = 1.0
    if strategy == "mix":
        pool = np.argsort(-u, kind="stable")[: max(n, pool_factor * n)]
        eligible[:] = False
        eligible[pool] = True
        d_ref = max(float(np.median(dist[pool])), 1e-6)
    counts = Counter(labeled_counts)
    picks: list[Pick] = []
    while len(picks) < n:
        ok = eligible & (near_pick < dup_sim)
        if not ok.any():
            break
        need = _need(classes, counts)
        if strategy == "uncertainty":
            gain = u
        elif strategy == "diversity":
            gain = dist
        elif strategy == "coverage":
            gain = u + 2.0 * _serves_neediest(classes, counts, ok)  # the neediest class first, then uncertainty
        else:
            gain = u * np.clip(dist / d_ref, 0.0, 1.0) * (1.0 + need)
        j = int(np.argmax(np.where(ok, gain, -np.inf)))
        picks.append(Pick(j, float(dist[j]), float(need[j])))
        eligible[j] = False
        sim = emb_unlabeled @ emb_unlabeled[j]
        near_pick = np.maximum(near_pick, sim)
        dist = np.minimum(dist, 1.0 - sim)
        if (c := classes[j][0]) is not None:
            counts[c] += 1
    return picks


def _need(classes: list[tuple[str | None, str | None]], counts: Counter[str]) -> np.ndarray:
    """Per row: how far the class of its guess or runner-up falls short of an even share of the labels."""
    if not counts:
        return np.zeros(len(classes))
    share = sum(counts.values()) / len(counts)
    need_of = {c: max(0.0, 1.0 - k / share) if share else 1.0 for c, k in counts.items()}
    return np.array([max(need_of.get(g, 0.0) if g else 0.0, need_of.get(r, 0.0) if r else 0.0) for g, r in classes])


def _serves_neediest(classes: list[tuple[str | None, str | None]], counts: Counter[str], ok: np.ndarray) -> np.ndarray:
    """1 for rows whose guess or runner-up is the class with the fewest labels among those rows can serve."""
    served = {c for i in np.flatnonzero(ok) for c in classes[i] if c is not None and c in counts}
    if not served:
        return np.zeros(len(classes))
    neediest = min(served, key=lambda c: (counts[c], c))
    return np.array([float(neediest in pair) for pair in classes])


# ---------------------------------------------------------------- the command


def run_config(run_dir: Path) -> RunConfig:
    """The resolved config a run directory was made with."""
    need_run_dir(run_dir)
    return build_config(load_yaml(run_dir / "config.yaml"))


def label_names(task: Task) -> list[str] | None:
    """The option texts when every labeled and unlabeled row has the same options (a closed label set)."""
    if task.kind != "choice":
        return None
    first = task.labeled.examples[0].options
    if all(e.options == first for e in task.labeled.examples) and all(
        e.options == first for e in task.unlabeled.iter_examples()
    ):
        return list(first or [])
    return None


def class_of(letter: str | None, names: list[str] | None) -> str | None:
    """A letter's class: its option text in a closed label set, the letter itself otherwise."""
    if letter is None or names is None:
        return letter
    i = LETTERS.index(letter) if letter in LETTERS else -1
    return names[i] if 0 <= i < len(names) else letter


def run_embeddings(run_dir: Path, make: Any, texts: list[str], stem: str, folder: str) -> np.ndarray:
    """The run's embeddings of ``texts``: from propagate's cache where it holds them (``emb_labeled``), else
    cached in ``RUN_DIR/folder/``."""
    if embedding_file(run_dir / "propagate" / stem, texts).exists():
        return cached_embeddings(run_dir / "propagate" / stem, texts, make)
    return cached_embeddings(run_dir / folder / stem, texts, make)


class LazyEmbedder:
    """The run's embedder, loaded on the first call only (cache hits need no model)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fn: Any = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.fn is None:
            self.fn = text_embedder(self.name)
        return self.fn(texts)


def suggest(run_dir: Path, n: int = 50, strategy: str = "mix", out: Path | None = None) -> Path:
    """Write the ``n`` rows to label next into ``out`` (default ``RUN_DIR/suggest/suggest.csv`` or ``.jsonl``,
    after the labeled split's format) and ``RUN_DIR/suggest/suggest.json``; return the rows file."""
    if n < 1:
        raise ConfigError(f"--n: must be at least 1, got {n}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy: must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    s_dir, rows, _ = load_pseudo_labels(run_dir)
    task = load_task(cfg.task, seed=cfg.seed)
    if task.kind != "choice" and strategy == "coverage":
        raise ConfigError("--strategy: 'coverage' needs a multiple-choice task (free-form answers have no classes)")
    examples = {e.id: e for e in task.unlabeled.iter_examples()}
    if len(rows) != len(examples) or any(r["id"] not in examples for r in rows):
        raise StageMissing(
            f"{s_dir}: the pseudo-labels are not those of the task's unlabeled split as it loads now "
            "(task.add_labels or the data changed since); run `semievol run` first"
        )
    names = label_names(task)
    signals = [row_signal(r, task.kind) for r in rows]
    classes = [
        (class_of(s.guess, names), class_of(s.runner_up, names)) if task.kind == "choice" else (None, None)
        for s in signals
    ]
    if task.kind == "choice":
        counts: Counter[str] = Counter({c: 0 for c in names} if names else {})
        counts.update(c for e in task.labeled.examples if (c := class_of(e.answer, names)) is not None)
    else:
        counts = Counter()
    make = LazyEmbedder(cfg.model.embedder)
    emb_u = run_embeddings(run_dir, make, [r["question"] for r in rows], "emb_unlabeled", "suggest")
    emb_l = run_embeddings(run_dir, make, [e.question for e in task.labeled.examples], "emb_labeled", "suggest")
    picks = choose(signals, classes, emb_u, emb_l, counts, min(n, len(rows)), strategy)
    dest = Path(out) if out else run_dir / "suggest" / f"suggest.{_format_of(task.labeled.source)}"
    fmt = _format_of(str(dest))
    if fmt not in ("csv", "jsonl"):
        raise ConfigError(f"--out: {dest}: write a .csv or a .jsonl file")
    if any(Path(f).resolve() == dest.resolve() for f in cfg.task.add_labels):
        raise ConfigError(
            f"--out: {dest} holds labels this run was given (task.add_labels); write the new "
            "suggestions to another file"
        )
    chosen = []
    for rank, p in enumerate(picks, start=1):
        r, s = rows[p.index], signals[p.index]
        extra: dict[str, Any] = {
            "suggest_rank": rank,
            "suggest_guess": s.guess,
            "suggest_guess_text": class_of(s.guess, examples[r["id"]].options) if task.kind == "choice" else s.guess,
            "suggest_confidence": round(s.confidence, 4),
            "suggest_uncertainty": round(s.uncertainty, 4),
            "suggest_votes": ",".join(str(v["answer"]) for v in r["votes"]),
            "suggest_distance": round(p.distance, 4),
            "suggest_class_need": round(p.need, 4),
            "suggest_strategy": strategy,
        }
        chosen.append((examples[r["id"]], extra))
    write_task_rows(dest, chosen, cfg.task, fmt)
    atomic_write_json(
        run_dir / "suggest" / "suggest.json",
        {
            "strategy": strategy,
            "asked": n,
            "written": len(chosen),
            "file": str(dest),
            "select_dir": s_dir.name,
            "unlabeled_rows": len(rows),
            "embedder": cfg.model.embedder,
            "dup_sim": DUP_SIM,
            "pool_factor": POOL_FACTOR,
            "labels_per_class": dict(counts),
            "guesses": dict(Counter(str(x["suggest_guess_text"]) for _, x in chosen)),
            "mean_uncertainty": {
                "suggested": _mean([x["suggest_uncertainty"] for _, x in chosen]),
                "all": _mean([s.uncertainty for s in signals]),
            },
        },
    )
    return dest


def _mean(xs: list[float]) -> float | None:
    return round(float(np.mean(xs)), 4) if xs else None


def _format_of(path: str) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    return "csv" if suffix == "csv" else "jsonl" if suffix in ("jsonl", "json", "parquet", "pq", "") else suffix


def task_record(e: Example, cfg: TaskConfig, fmt: str, answer: str | None = None) -> dict[str, Any]:
    """One row in the task's own columns (the answer as a letter for multiple choice, or empty)."""
    rec: dict[str, Any] = {cfg.id_col: e.id, cfg.question_col: e.question}
    if e.options is not None:
        if cfg.option_cols:
            rec.update({c: (e.options[i] if i < len(e.options) else "") for i, c in enumerate(cfg.option_cols)})
        else:
            rec[cfg.options_col] = json.dumps(e.options, ensure_ascii=False) if fmt == "csv" else e.options
    rec[cfg.answer_col] = answer if answer is not None else ("" if fmt == "csv" else None)
    if e.subject is not None:
        rec[cfg.subject_col] = e.subject
    return rec


def write_task_rows(
    dest: Path,
    rows: list[tuple[Example, dict[str, Any]]],
    cfg: TaskConfig,
    fmt: str,
    answers: list[str | None] | None = None,
) -> None:
    """Rows in the task's input shape plus extra columns, as CSV or JSONL, written atomically."""
    recs = [task_record(e, cfg, fmt, answers[i] if answers else None) | extra for i, (e, extra) in enumerate(rows)]
    if fmt == "jsonl":
        atomic_write_jsonl(dest, recs)
        return
    header: list[str] = []
    for r in recs:
        header += [k for k in r if k not in header]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header or [cfg.id_col, cfg.question_col, cfg.answer_col], lineterminator="\n")
    w.writeheader()
    for r in recs:
        w.writerow({k: "" if v is None else v for k, v in r.items()})
    atomic_write_text(dest, buf.getvalue())


def suggest_command(args: Any) -> int:
    """``semievol suggest RUN_DIR [--n N] [--strategy S] [--out FILE]``."""
    print(suggest(args.run_dir, args.n, args.strategy, args.out))
    return 0
