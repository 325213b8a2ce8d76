"""benchmarks/ensemble_student.py: the student's targets and its comparison with the compute-matched members."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "ensemble_student.py"
sys.path.insert(0, str(_path.parent))
_spec = importlib.util.spec_from_file_location("ensemble_student", _path)
ensemble_student = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ensemble_student)


def rec(dists: list[list[float]], gold: list[str], seconds: float = 1.0) -> dict:
    split = {"gold": gold, "dist": dists}
    return {"seconds": seconds, "dev": split, "unlabeled": split}


def test_soft_targets_are_the_members_mean_and_hard_ones_its_argmax():
    m0 = rec([[0.9, 0.1], [0.2, 0.8]], ["A", "B"])
    m1 = rec([[0.3, 0.7], [0.4, 0.6]], ["A", "B"])
    soft = ensemble_student.student_targets([m0, m1], "soft")
    assert np.allclose(soft, [[0.6, 0.4], [0.3, 0.7]])
    assert ensemble_student.student_targets([m0, m1], "hard") == [[1.0, 0.0], [0.0, 1.0]]


def test_the_student_is_compared_with_every_member_row_by_row():
    gold = ["A", "B", "A", "B"]
    right = [0.9, 0.1]
    members = [
        rec([right, [0.9, 0.1], right, [0.9, 0.1]], gold),  # 50%: answers A everywhere
        rec([right, [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]], gold),  # 75%
    ]
    students = [rec([right, [0.1, 0.9], right, [0.1, 0.9]], gold, seconds=7.4)]  # 100%
    r = ensemble_student.compare(members, students)
    assert r["member_acc"] == [50.0, 75.0] and r["student_acc"] == [100.0]
    assert r["student_minus_mean_member"] == pytest.approx(37.5)
    assert r["students_above_best_member"] == 1 and r["student_seconds"] == [7]
    lo, hi = r["interval_rows"]
    assert 0 <= lo <= 37.5 <= hi <= 100


def test_a_student_no_better_than_the_members_has_an_interval_around_zero():
    rng = np.random.default_rng(0)
    gold = ["A"] * 400
    same = [[0.9, 0.1] if x else [0.1, 0.9] for x in rng.random(400) < 0.7]
    r = ensemble_student.compare([rec(same, gold)], [rec(same, gold)])
    assert r["student_minus_mean_member"] == 0.0 and r["interval_rows"] == [0.0, 0.0]
    assert r["students_above_best_member"] == 0


def test_alignment_moves_the_mean_towards_the_labeled_draws_class_shares():
    # the members lean on 'A' (mean share 0.7) where the labels are balanced: the aligned targets lean less
    m = rec([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.5, 0.5]], ["A", "B", "A", "B"])
    plain = np.asarray(ensemble_student.student_targets([m], "soft"))
    aligned = np.asarray(ensemble_student.student_targets([m], "soft", prior=[0.5, 0.5]))
    assert np.allclose(aligned.sum(-1), 1.0)
    assert (aligned[:, 0] < plain[:, 0]).all()
    assert aligned.argmax(-1).tolist() == [0, 1, 0, 1]  # rows 1 and 3 now go to 'B'


def test_a_rebuilt_page_keeps_the_variants_of_run_folders_an_earlier_machine_took(tmp_path, monkeypatch):
    import json

    gold = ["A", "B"]
    results, runs, teachers = tmp_path / "results", tmp_path / "runs", tmp_path / "teachers"
    results.mkdir()
    old = {"rows": 500, "student_minus_mean_member": 4.3}  # a session-22 variant: its folder is gone
    (results / "ensemble_student.json").write_text(json.dumps({"results": {"fpb/l64/seed0/soft_k5_rep2": old}}))
    (teachers / "fpb" / "l64" / "seed0" / "member0").mkdir(parents=True)
    (teachers / "fpb" / "l64" / "seed0" / "member0" / "predictions.json").write_text(
        json.dumps(rec([[0.9, 0.1], [0.9, 0.1]], gold))
    )
    (runs / "fpb" / "l64" / "seed0" / "soft_aligned_k1_rep2" / "student0").mkdir(parents=True)
    (runs / "fpb" / "l64" / "seed0" / "soft_aligned_k1_rep2" / "student0" / "predictions.json").write_text(
        json.dumps(rec([[0.9, 0.1], [0.1, 0.9]], gold))
    )
    monkeypatch.setattr(ensemble_student, "RESULTS", results)
    monkeypatch.setattr(ensemble_student, "RUNS", runs)
    monkeypatch.setattr(ensemble_student, "TEACHERS", teachers)
    found = ensemble_student.collect()
    assert found["fpb/l64/seed0/soft_k5_rep2"] == old
    assert found["fpb/l64/seed0/soft_aligned_k1_rep2"]["student_minus_mean_member"] == 50.0
