"""Selection rules and confidence on hand-made score lists."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from semievol.config import SelectConfig
from semievol.stages.scoring import (
    decide,
    lean_from_counts,
    lean_warning,
    majority,
    mean_distributions,
    new_to_warm,
    normalized_entropy,
    row_counts,
    select_mask,
    split_share,
    warm_agreement,
)
from semievol.stages.voting import draw_vote, row_rng


def test_percentile_keeps_scores_at_or_below_the_median():
    scores = [0.9, 0.1, 0.5, 0.3, 0.7]
    keep, info = select_mask(scores, SelectConfig(rule="percentile", theta=50))
    assert keep == [False, True, True, True, False]
    assert info["tau"] == pytest.approx(0.5)


def test_percentile_grows_with_theta():
    rng = np.random.default_rng(0)
    scores = list(rng.random(200))
    previous: set[int] = set()
    for theta in (0, 10, 25, 50, 75, 100):
        keep, _ = select_mask(scores, SelectConfig(rule="percentile", theta=theta))
        now = {i for i, k in enumerate(keep) if k}
        assert previous <= now
        previous = now
    assert len(previous) == 200


def test_fixed_threshold():
    keep, _ = select_mask([0.2, 0.6, 0.4], SelectConfig(rule="fixed", threshold=0.4))
    assert keep == [True, False, True]


def test_released_rule_keeps_unanimous_and_the_most_confident_disagreeing():
    scores = [0.9, 0.8, 0.1, 0.2, 0.3, 0.4, 0.5]
    unanimous = [True, True, False, False, False, False, False]
    keep, info = select_mask(scores, SelectConfig(rule="released", released_theta=30), unanimous=unanimous)
    # disagreeing scores 0.1..0.5: the 30th percentile is 0.22, so 0.1 and 0.2 stay
    assert keep == [True, True, True, True, False, False, False]
    assert info["tau_disagreeing"] == pytest.approx(0.22)


def test_class_percentile_is_per_group():
    scores = [0.1, 0.2, 0.3, 0.4, 0.8, 0.9]
    groups = ["A", "A", "A", "A", "B", "B"]
    keep, info = select_mask(scores, SelectConfig(rule="class_percentile", theta=50), groups=groups)
    # a global median (0.35) would drop all of class B; per class, B keeps its better half
    assert keep == [True, True, False, False, True, False]
    assert set(info["tau_per_group"]) == {"A", "B"}


def test_invalid_rows_never_selected():
    keep, _ = select_mask([0.1, float("nan"), 0.2], SelectConfig(rule="all"), valid=[True, True, False])
    assert keep == [True, False, False]


def test_normalized_entropy_bounds():
    assert normalized_entropy(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.0)
    assert normalized_entropy(np.array([0.25] * 4)) == pytest.approx(1.0)
    assert 0 < normalized_entropy(np.array([0.7, 0.2, 0.1])) < 1
    p = np.array([0.5, 0.5])
    assert normalized_entropy(p) == pytest.approx(-(2 * 0.5 * math.log(0.5)) / math.log(2))


def test_majority_ties_go_to_the_first_seen():
    assert majority(["B", "A", "A", "B"]) == "B"
    assert majority([None, "C", None]) == "C"
    assert majority([None, None]) is None


def test_votes_are_argmax_at_zero_temperature_and_seeded_otherwise():
    d = np.array([0.2, 0.5, 0.3])
    assert draw_vote(d, 0.0, row_rng(0, 0, "x")) == 1
    a = [draw_vote(d, 1.0, row_rng(7, 1, f"r{i}")) for i in range(300)]
    b = [draw_vote(d, 1.0, row_rng(7, 1, f"r{i}")) for i in range(300)]
    assert a == b
    share = np.bincount(a, minlength=3) / 300
    assert abs(share[1] - 0.5) < 0.1 and abs(share[0] - 0.2) < 0.1


def test_decide_takes_the_likeliest_option_and_its_entropy():
    a, s = decide([0.1, 0.6, 0.3], None, None, "entropy")
    assert a == "B" and s == pytest.approx(normalized_entropy([0.1, 0.6, 0.3]))
    a, s = decide([0.1, 0.6, 0.3], None, None, "nll")
    assert a == "B" and s == pytest.approx(-math.log(0.6))
    assert decide([0.4, 0.2, 0.4], None, None, "entropy")[0] == "A"  # a tie goes to the first letter


def test_decide_keeps_to_the_candidates_unless_none_is_an_option():
    assert decide([0.1, 0.6, 0.3], ["A", "C", "C"], None, "entropy")[0] == "C"
    assert decide([0.1, 0.6, 0.3], ["A", None, "A"], None, "entropy")[0] == "A"
    assert decide([0.1, 0.6, 0.3], [None, "E", "AB"], None, "entropy")[0] == "B"  # no usable candidate: any option


def test_batch_calibration_undoes_a_lean_to_the_last_option():
    # a justifier that puts most mass on C whatever the question; the questions' own signal is the rest
    dists = [[0.25, 0.05, 0.70], [0.05, 0.25, 0.70], [0.02, 0.08, 0.90], [0.15, 0.05, 0.80]]
    raw = [decide(d, None, None, "entropy")[0] for d in dists]
    assert raw == ["C", "C", "C", "C"]
    prior = mean_distributions(dists)[3]
    assert prior == pytest.approx(np.mean(dists, axis=0))
    calibrated = [decide(d, None, prior, "entropy")[0] for d in dists]
    assert calibrated == ["A", "B", "C", "A"]
    # the score is the entropy of the calibrated distribution, not the raw one
    p = np.asarray(dists[0]) / prior
    assert decide(dists[0], None, prior, "entropy")[1] == pytest.approx(normalized_entropy(p / p.sum()))


def test_mean_distributions_keep_option_counts_apart():
    pri = mean_distributions([[0.5, 0.5], [2.0, 0.0], [0.2, 0.3, 0.5]])  # [2, 0] is not normalised: counted as [1, 0]
    assert pri[2] == pytest.approx([0.75, 0.25]) and pri[3] == pytest.approx([0.2, 0.3, 0.5])


def _justified(answer, votes, options=("x", "y", "z")):
    return {"justified": True, "answer": answer, "options": list(options), "votes": [{"answer": v} for v in votes]}


def justifier_lean(rows):
    """``lean_from_counts`` over pseudo-label rows as the select stage counts them: justified multiple-choice
    rows, their answers against their votes."""
    answers, votes = Counter(), Counter()
    for r in rows:
        if r.get("justified") and r.get("answer") is not None and r.get("options"):
            answers[str(r["answer"])] += 1
            votes.update(str(v["answer"]) for v in r["votes"] if v.get("answer") is not None)
    return lean_from_counts(answers, votes)


def test_justifier_lean_flags_one_option_the_votes_do_not_back():
    # the demo's pattern: the justifier says C for 93 of 100 rows, the configurations voted C a third of the time
    rows = [_justified("C", ["A", "B", "C"]) for _ in range(93)] + [_justified("A", ["A", "A", "B"]) for _ in range(7)]
    lean = justifier_lean(rows)
    assert lean == {"answer": "C", "share": 0.93, "vote_share": pytest.approx(0.31, abs=0.01), "rows": 100}
    # the same share of C backed by the votes (a majority class, not a lean): nothing flagged
    backed = [_justified("C", ["C", "C", "C"]) for _ in range(93)] + [
        _justified("A", ["A", "A", "B"]) for _ in range(7)
    ]
    assert justifier_lean(backed) is None
    assert justifier_lean(rows[:19]) is None  # too few rows to say
    # rows not justified (majority vote) and free-form rows do not count
    assert justifier_lean([dict(r, justified=False) for r in rows]) is None
    assert justifier_lean([dict(r, options=None) for r in rows]) is None
    assert lean_from_counts(Counter({"B": 79, "A": 21}), Counter({"B": 100, "A": 200})) is None  # under 80%
    said = lean_warning(lean, calibrated=False)
    assert "answered C for 93% of the 100 rows" in said and "voted C 31% of the time" in said
    assert said.endswith("--select.calibrate true --select.candidates_only true")
    assert "--select.calibrate" not in lean_warning(lean, calibrated=True)  # the fix is applied already


def test_kept_labels_are_counted_against_the_warm_models_own_vote():
    def votes(warm: str, probe: str) -> list[dict[str, str]]:
        return [{"config": "warm:0:0", "answer": warm}, {"config": "probe:0:0", "answer": probe}]

    assert warm_agreement(votes("B", "A"), "B", "choice") == ("kept",)
    assert warm_agreement(votes("B", "A"), "A", "choice") == ("kept", "new")
    assert warm_agreement([{"config": "warm:3:0.7", "answer": "B"}], "A", "choice") == ()  # demos: not its own
    assert warm_agreement([{"config": "warm:0:0", "answer": "12"}], "12.0", "free") == ("kept",)
    counts: Counter[str] = Counter()
    for warm, label in [("B", "B")] * 7 + [("B", "A")] * 3:
        counts.update(warm_agreement(votes(warm, "A"), label, "choice"))
    assert new_to_warm(counts) == {"kept": 10, "new": 3, "share": 0.3, "note": None, "student": False}
    # every kept label is the warm model's own answer: said in words, with the count
    same = new_to_warm(Counter({"kept": 350}))
    assert same is not None and same["new"] == 0 and "all 350 kept pseudo-labels" in same["note"]
    assert "can only repeat" in same["note"]
    # a student trained from the base model learns those answers anew: the note does not say nothing can come of it
    taught = new_to_warm(Counter({"kept": 350}), student=True)
    assert taught is not None and taught["student"] and "all 350 kept pseudo-labels" in taught["note"]
    assert "can only repeat" not in taught["note"] and "trained from the base model" in taught["note"]
    assert new_to_warm(Counter()) is None  # no configuration gave the warm model's own answer


def test_rows_the_warm_members_split_on_are_counted_over_every_row_kept_or_not():
    def votes(members: str | None) -> list[dict[str, str]]:
        own = {"config": "warm:0:0", "answer": "B"}
        return [own] + ([{"config": "members:0:0", "answer": "B", "members": members}] if members else [])

    counts: Counter[str] = Counter()
    for members, kept in [("BBB", True), ("BAB", False), ("ABB", True), ("CCC", False)]:
        counts.update(row_counts(votes(members), "B", "choice", kept))
    assert split_share(counts) == {"rows": 4, "split": 2, "share": 0.5}
    assert new_to_warm(counts) == {
        "kept": 2,
        "new": 0,
        "share": 0.0,
        "note": new_to_warm(counts)["note"],
        "student": False,
    }
    # votes written before the members' answers were recorded, or no 'members' configuration: nothing to say
    assert split_share(Counter(row_counts(votes(None), "B", "choice", True))) is None
