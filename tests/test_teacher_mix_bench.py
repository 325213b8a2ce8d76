"""benchmarks/teacher_mix.py: ranks that ties share, and kept labels counted against the warm model's answers."""

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "teacher_mix", Path(__file__).resolve().parents[1] / "benchmarks" / "teacher_mix.py"
)
teacher_mix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(teacher_mix)


def test_ranks_are_scale_free_and_ties_share_their_mean_rank():
    d = np.array([[0.999999, 1e-6], [0.999999, 1e-6], [0.6, 0.4], [0.1, 0.9]])
    r = teacher_mix.ranks(d)
    assert r[:, 0].tolist() == [0.875, 0.875, 0.5, 0.25]  # the two saturated rows tie at ranks 3 and 4
    assert np.array_equal(teacher_mix.ranks(d**3), r)  # a monotone change of scale changes no rank


def test_an_overconfident_teacher_outvotes_the_other_in_the_mean_but_not_in_ranks():
    # the warm model says A for every row, near one-hot; the probe says B, confidently, for rows 2 and 3
    warm = np.array([[0.999999, 1e-6]] * 4)
    probe = np.array([[0.9, 0.1], [0.8, 0.2], [0.05, 0.95], [0.1, 0.9]])
    gold = np.array([0, 0, 1, 1])
    shares = np.array([0.5, 0.5])
    mean = teacher_mix.grade(teacher_mix.MIXES["mean"](warm, probe), warm, gold, shares, 100)
    ranked = teacher_mix.grade(teacher_mix.MIXES["rank_mean"](warm, probe), warm, gold, shares, 100)
    # class_rank fills B's quota either way, but only rows the warm model called A exist: both are 'new'
    assert mean["kept"] == ranked["kept"] == 4 and mean["new"] == ranked["new"] == 2
    assert ranked["new_right"] == 1.0 and ranked["kept_right"] == 1.0
    assert mean["argmax_right"] == 0.5 and ranked["argmax_right"] == 1.0
