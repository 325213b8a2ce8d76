"""semievol audit: confident learning on out-of-fold predictions finds labeled rows whose answer is wrong."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_choice_task

from semievol.audit import confident_learning, fit_softmax, fold_of, out_of_fold, predict_proba
from semievol.cli import main
from semievol.config import build_config, to_dict
from semievol.report import section_audit, write_report
from semievol.rundir import finish_stage

SENTIMENTS = ["negative", "neutral", "positive"]
CUES = {"A": "fell slumped dropped", "B": "unchanged steady flat", "C": "rose soared jumped"}


def test_confident_learning_thresholds_flags_and_ranking():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.75, 0.25], [0.45, 0.55]])
    given = np.array([0, 0, 1, 1, 1, 0])
    cl = confident_learning(probs, given)
    # mean self-confidence: class 0 over rows 0, 1, 5; class 1 over rows 2, 3, 4
    assert cl["thresholds"] == pytest.approx([(0.9 + 0.8 + 0.45) / 3, (0.7 + 0.8 + 0.25) / 3])
    assert cl["confident"].tolist() == [0, 0, 1, 1, 0, -1]  # row 5 reaches neither threshold
    assert cl["flagged"].tolist() == [False, False, False, False, True, False]
    assert cl["margin"][4] == pytest.approx(0.5)
    # the flagged row first, then the rest by the given answer's probability, lowest first
    assert cl["order"].tolist() == [4, 5, 2, 1, 3, 0]  # ties by row


def test_softmax_regression_fits_and_folds_are_stratified():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    y = np.repeat([0, 1, 2], 20)
    x = centres[y] + 0.2 * rng.normal(size=(60, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = fit_softmax(x, y, 3, l2=1e-3)
    assert (predict_proba(x, w).argmax(axis=1) == y).mean() == 1.0
    folds = fold_of(y, 5, seed=1)
    for c in range(3):
        assert sorted(np.bincount(folds[y == c], minlength=5).tolist()) == [4] * 5
    noisy = y.copy()
    noisy[[3, 25, 47]] = [1, 2, 0]
    cl = confident_learning(out_of_fold(x, noisy, 3, 5, seed=0), noisy)
    assert set(cl["order"][:3].tolist()) == {3, 25, 47}


def _sentiment_task(folder: Path, n: int = 60, flips: tuple[int, ...] = (4, 17, 33), seed: int = 0) -> Path:
    """A closed-label task whose answer a bag-of-words embedding can learn; the rows in ``flips`` carry a
    wrong answer."""
    rng = random.Random(seed)
    filler = "the company said its quarterly sales in the region".split()
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("labeled", n), ("unlabeled", 12)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "question", "options", "answer"])
            for i in range(rows):
                a = "ABC"[i % 3]
                words = rng.sample(filler, 5) + CUES[a].split()[:2]
                given = "ABC"[("ABC".index(a) + 1) % 3] if split == "labeled" and i in flips else a
                w.writerow([f"{split}-{i}", " ".join(words), json.dumps(SENTIMENTS), given])
    return folder


def _run_dir(root: Path, task: Path) -> Path:
    rd = root / "run"
    rd.mkdir(parents=True)
    cfg = build_config(
        {
            "run_dir": str(rd),
            "model": {"embedder": "hash"},
            "task": {"labeled": str(task / "labeled.csv"), "unlabeled": str(task / "unlabeled.csv")},
        }
    )
    (rd / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return rd


def test_audit_ranks_the_flipped_labels_first_and_the_report_shows_them(tmp_path, capsys):
    rd = _run_dir(tmp_path, _sentiment_task(tmp_path / "task"))
    assert "No label audit yet" in write_report(rd).read_text()
    assert main(["--quiet", "audit", str(rd)]) == 0
    assert capsys.readouterr().out.strip() == str(rd / "audit" / "audit.jsonl")
    rows = [json.loads(x) for x in (rd / "audit" / "audit.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and [r["rank"] for r in rows] == list(range(1, 61))
    assert {r["id"] for r in rows[:3]} == {"labeled-4", "labeled-17", "labeled-33"}
    top = rows[0]
    assert top["flagged"] and top["confident"] != top["given"] and top["p_confident"] > top["p_given"]
    summary = json.loads((rd / "audit" / "audit.json").read_text())
    assert summary["rows"] == 60 and summary["folds"] == 5 and summary["classes"] == SENTIMENTS
    assert summary["flagged"] == sum(r["flagged"] for r in rows) >= 3
    page = (rd / "report.html").read_text()  # the audit rewrote the report it found
    section = page[page.index('<section id="audit">') :]
    section = section[: section.index("</section>")]
    assert f"{summary['flagged']} of 60 labeled rows flagged" in section and "labeled-17" in section


def test_audit_refuses_tasks_without_a_shared_label_set(tmp_path, capsys):
    rd = _run_dir(tmp_path, write_choice_task(tmp_path / "task"))  # each row has its own options
    assert main(["audit", str(rd)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "audit: needs a multiple-choice task whose rows all share one option list" in err
    assert not (rd / "audit").exists()
    assert main(["audit", str(_run_dir(tmp_path / "b", _sentiment_task(tmp_path / "t2"))), "--folds", "1"]) == 2
    assert "--folds: must be at least 2" in capsys.readouterr().err


def _select_stage(rd: Path, rows: list[dict]) -> None:
    out = rd / "select"
    out.mkdir()
    (out / "pseudo_labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    finish_stage(out, "select", "test")


def test_out_of_fold_trains_every_fold_on_the_extra_rows():
    # two classes the labeled rows cannot tell apart on the second axis; the extra rows teach it
    x = np.array([[1.0, 0.0]] * 10 + [[0.0, 1.0]] * 10)
    y = np.array([0] * 10 + [1] * 10)
    alone = out_of_fold(x, y, 2, 5, seed=0)
    extra = (np.array([[0.0, 1.0]] * 40), np.ones(40, dtype=np.int64))
    helped = out_of_fold(x, y, 2, 5, seed=0, extra=extra)
    assert (helped[y == 1, 1] > alone[y == 1, 1]).all() and (helped[y == 0, 0] < alone[y == 0, 0]).all()


def test_audit_also_trains_on_the_runs_kept_pseudo_labels(tmp_path, capsys):
    task = _sentiment_task(tmp_path / "task", n=30, flips=(4,))
    rd = _run_dir(tmp_path, task)
    labeled = list(csv.DictReader(open(task / "labeled.csv")))
    rng = random.Random(1)
    filler = "the company said its quarterly sales in the region".split()
    kept = [
        {"question": " ".join(rng.sample(filler, 5) + CUES[a].split()[1:3]), "answer": a, "options": SENTIMENTS}
        for a in "ABC" * 10
    ]
    rows = [{**r, "id": f"unlabeled-{i}", "selected": True} for i, r in enumerate(kept)]
    rows.append({**rows[0], "id": "unlabeled-dropped", "selected": False})  # selection did not keep it
    rows.append({**rows[0], "id": "unlabeled-other", "options": ["up", "down", "flat"]})  # another label set
    rows.append(
        {
            "id": "unlabeled-dup",
            "question": labeled[4]["question"],
            "answer": "B",
            "options": SENTIMENTS,
            "selected": True,
        }
    )
    _select_stage(rd, rows)
    assert main(["--quiet", "audit", str(rd), "--pseudo", "none"]) == 0
    alone = json.loads((rd / "audit" / "audit.json").read_text())
    assert alone["pseudo_labels"] == 0 and alone["pseudo"] == "none"
    p_alone = {r["id"]: r["probs"] for r in map(json.loads, (rd / "audit" / "audit.jsonl").read_text().splitlines())}
    assert main(["--quiet", "audit", str(rd)]) == 0
    summary = json.loads((rd / "audit" / "audit.json").read_text())
    # the 30 kept rows; not the one selection dropped, the other label set, or the labeled row's question
    assert summary["pseudo_labels"] == 30 and "kept pseudo-labels" in summary["method"]
    assert len(list((rd / "audit").glob("emb_kept*"))) == 1
    assert "also trained on 30 kept pseudo-labels" in section_audit(rd)
    ranked = [json.loads(x) for x in (rd / "audit" / "audit.jsonl").read_text().splitlines()]
    assert ranked[0]["id"] == "labeled-4"
    # the kept rows use the cue's other words, so the classifier is surer of the rows' true class
    gold = {r["id"]: SENTIMENTS["ABC".index(r["answer"])] for r in labeled if r["id"] != "labeled-4"}
    with_kept = np.mean([r["probs"][gold[r["id"]]] for r in ranked if r["id"] in gold])
    without = np.mean([p_alone[i][c] for i, c in gold.items()])
    assert with_kept > without + 0.05, (with_kept, without)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # argparse
        main(["audit", str(rd), "--pseudo", "all"])
    assert e.value.code == 2 and "--pseudo" in capsys.readouterr().err
