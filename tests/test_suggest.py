"""semievol suggest: which unlabeled rows to label next, and the round trip back through task.add_labels."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config_dict

from semievol.cli import main
from semievol.config import build_config
from semievol.engines.fake import FakeEngine
from semievol.pipeline import make_context, run
from semievol.suggest import Signal, choose, row_signal, vote_split


def _sig(u: float) -> Signal:
    return Signal("A", "B", 1 - u, 1 - u, 0.0, u)


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


@pytest.mark.parametrize(
    ("answers", "split"),
    [
        (["A", "A", "A", "A"], 0.0),
        (["A", "A", "A", "B"], 1 / 3),
        (["A", "A", "B", "B"], 2 / 3),
        (["A", "B", "C", "D"], 1.0),
        (["A"], 0.0),
        (["A", None, None, "A"], 2 / 3),
    ],
)
def test_vote_split(answers, split):
    assert vote_split(answers) == pytest.approx(split)


def test_row_signal_reads_the_justified_distribution_and_the_votes():
    votes = [{"answer": a, "dist": [0.6, 0.3, 0.1]} for a in "AAAA"]
    sure = row_signal({"answer": "A", "votes": votes, "justify_dist": [0.9, 0.08, 0.02]}, "choice")
    assert (sure.guess, sure.runner_up) == ("A", "B") and sure.confidence == pytest.approx(0.9)
    assert sure.uncertainty == pytest.approx(0.5 * (1 - 0.82))
    torn = row_signal(
        {
            "answer": "C",
            "votes": [dict(v, answer=a) for v, a in zip(votes, "ABCC", strict=True)],
            "justify_dist": [0.3, 0.3, 0.4],
        },
        "choice",
    )
    assert torn.guess == "C" and torn.runner_up == "A" and torn.uncertainty > 0.7
    no_justification = row_signal({"answer": "A", "votes": votes}, "choice")  # the votes' mean distribution
    assert no_justification.confidence == pytest.approx(0.6)
    free = row_signal({"answer": "12", "score": 0.5, "votes": [{"answer": a} for a in ["12", "12", "7", None]]}, "free")
    assert free.runner_up == "7" and free.confidence == pytest.approx(np.exp(-0.5))


def test_uncertainty_takes_the_least_confident_rows_and_no_near_duplicates():
    emb = np.stack([_unit([1, 0, 0]), _unit([1, 0, 0]), _unit([1, 0.01, 0]), _unit([0, 1, 0]), _unit([0, 0, 1])])
    sig = [_sig(u) for u in (0.9, 0.9, 0.85, 0.5, 0.1)]
    picks = choose(sig, [(None, None)] * 5, emb, np.zeros((0, 3), np.float32), Counter(), 3, "uncertainty")
    assert [p.index for p in picks] == [0, 3, 4]  # rows 1 and 2 are near-copies of row 0


def test_diversity_is_farthest_point_from_the_labeled_rows():
    labeled = np.stack([_unit([1, 0, 0])])
    emb = np.stack([_unit([1, 0.1, 0]), _unit([1, 0.2, 0]), _unit([0.2, 1, 0]), _unit([0, 0.1, 1]), _unit([1, 0, 0.1])])
    picks = choose([_sig(0.5)] * 5, [(None, None)] * 5, emb, labeled, Counter(), 2, "diversity")
    assert sorted(p.index for p in picks) == [2, 3]
    assert all(p.distance > 0.5 for p in picks)


def test_coverage_and_mix_reach_for_a_class_with_no_labels():
    emb = np.eye(4, dtype=np.float32)
    sig = [_sig(u) for u in (0.8, 0.78, 0.76, 0.7)]
    classes = [("neutral", "positive"), ("neutral", "positive"), ("positive", "neutral"), ("neutral", "negative")]
    counts = Counter({"neutral": 10, "positive": 6, "negative": 0})
    for strategy in ("coverage", "mix"):
        picks = choose(sig, classes, emb, np.zeros((0, 4), np.float32), counts, 2, strategy)
        assert picks[0].index == 3, strategy  # its runner-up is the class nobody labeled
        assert picks[0].need == pytest.approx(1.0)
    assert [p.index for p in choose(sig, classes, emb, np.zeros((0, 4), np.float32), counts, 2, "uncertainty")] == [
        0,
        1,
    ]


def _run(tiny_model: Path, task: Path, rd: Path, add: list[str] | None = None):
    d = tiny_config_dict(tiny_model, task, rd)
    d["model"]["engine"] = "fake"
    if add:
        d["task"]["add_labels"] = add
    ctx = make_context(build_config(d), quiet=True, need_test=True, engine=FakeEngine())
    run(ctx)
    return ctx


def _manifests(rd: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in rd.glob("*/manifest.json")}


def test_suggest_then_add_labels_round_trip(tiny_model, choice_task, tmp_path, capsys):
    rd = tmp_path / "run"
    _run(tiny_model, choice_task, rd)
    assert main(["--quiet", "suggest", str(rd), "--n", "5"]) == 0
    out = rd / "suggest" / "suggest.csv"
    assert capsys.readouterr().out.strip() == str(out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and len({r["id"] for r in rows}) == 5
    assert list(rows[0])[:4] == ["id", "question", "options", "answer"]  # the task's own columns first
    assert all(r["answer"] == "" and r["suggest_strategy"] == "mix" for r in rows)
    assert all(r["suggest_guess"] in "ABC" and 0 < float(r["suggest_confidence"]) <= 1 for r in rows)
    assert [int(r["suggest_rank"]) for r in rows] == [1, 2, 3, 4, 5]
    summary = json.loads((rd / "suggest" / "suggest.json").read_text())
    assert summary["strategy"] == "mix" and summary["written"] == 5
    assert summary["mean_uncertainty"]["suggested"] >= summary["mean_uncertainty"]["all"]

    # a person fills in the answers; the next run trains on them and no longer pseudo-labels them
    gold = {r["id"]: r["answer"] for r in csv.DictReader(open(choice_task / "unlabeled.csv", newline=""))}
    for r in rows:
        r["answer"] = gold[r["id"]]
    filled = tmp_path / "filled.csv"
    with open(filled, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    before = _manifests(rd)
    ctx = _run(tiny_model, choice_task, rd, [str(filled)])
    after = _manifests(rd)
    assert all(after[s] != before[s] for s in before)  # every stage reads the labeled split (or the warm model)
    # ... but the base model's answers to unchanged prompts (the test split) come from the call cache
    assert ctx.cached_engine().cache.hits == 12
    votes = [json.loads(x)["id"] for x in (rd / "propagate" / "votes.jsonl").read_text().splitlines()]
    assert len(votes) == 19 and not {r["id"] for r in rows} & set(votes)
    evolve = [json.loads(x) for x in (rd / "evolve" / "train_data.jsonl").read_text().splitlines()]
    labeled = {r["id"]: r["answer"] for r in evolve if r["source"] == "labeled"}
    assert len(labeled) == 21 and {r["id"]: labeled[r["id"]] for r in rows} == {r["id"]: r["answer"] for r in rows}
    _run(tiny_model, choice_task, rd, [str(filled)])
    assert _manifests(rd) == after  # the same labels again: nothing re-runs

    # the labels given to the run are never overwritten by the next suggestions
    kept = filled.read_text()
    assert main(["suggest", str(rd), "--out", str(filled)]) == 2
    assert "holds labels this run was given (task.add_labels)" in capsys.readouterr().err
    assert filled.read_text() == kept
    # suggesting again from the new run never proposes a row already labeled
    assert (
        main(
            [
                "--quiet",
                "suggest",
                str(rd),
                "--n",
                "5",
                "--strategy",
                "diversity",
                "--out",
                str(tmp_path / "next.jsonl"),
            ]
        )
        == 0
    )
    nxt = [json.loads(x) for x in (tmp_path / "next.jsonl").read_text().splitlines()]
    assert len(nxt) == 5 and not {r["id"] for r in nxt} & {r["id"] for r in rows}
    assert all(
        r["answer"] is None and isinstance(r["options"], list) and r["suggest_strategy"] == "diversity" for r in nxt
    )


def test_suggest_refuses_a_run_without_pseudo_labels_and_bad_flags(tmp_path, capsys):
    assert main(["suggest", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["suggest", str(tmp_path), "--n", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_mix_caps_the_distance_so_an_outlier_does_not_win():
    labeled = np.stack([_unit([1, 0, 0, 0, 0])])
    emb = np.stack(
        [
            _unit([0, 1, 0, 0, 0]),
            _unit([0.7, 0, 0.714, 0, 0]),
            _unit([0.7, 0, 0, 0.714, 0]),
            _unit([0.7, 0, 0, 0, 0.714]),
        ]
    )
    sig = [_sig(u) for u in (0.6, 0.7, 0.65, 0.62)]
    picks = choose(sig, [(None, None)] * 4, emb, labeled, Counter(), 1, "mix")
    assert picks[0].index == 1  # as far as a typical candidate is far enough; the outlier (row 0) is not preferred
    assert choose(sig, [(None, None)] * 4, emb, labeled, Counter(), 1, "diversity")[0].index == 0
