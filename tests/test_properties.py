"""Properties of the selection rules (``select_mask``) over generated score lists.

Whatever the scores (ties, infinities, NaN), every rule keeps only valid rows with a finite score; the
percentile rules keep more as theta grows, the fixed rule more as the threshold grows, and the released
rule keeps every unanimous valid row.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from semievol.config import SelectConfig
from semievol.stages.scoring import select_mask

RULES = ["percentile", "released", "fixed", "class_percentile", "subject_percentile", "all"]

score = st.one_of(
    st.floats(min_value=0.0, max_value=5.0),
    st.sampled_from([0.0, 0.25, 0.5, 1.0]),  # ties
    st.sampled_from([math.inf, -math.inf, math.nan]),
)
row = st.tuples(score, st.booleans(), st.booleans(), st.sampled_from(["A", "B", "C", None]))
rows = st.lists(row, min_size=0, max_size=40)
theta = st.floats(min_value=0.0, max_value=100.0)


def _mask(rs, **cfg):
    scores = [r[0] for r in rs]
    valid = [r[1] for r in rs]
    unanimous = [r[2] for r in rs]
    groups = [r[3] for r in rs]
    keep, _ = select_mask(scores, SelectConfig(**cfg), unanimous=unanimous, groups=groups, valid=valid)
    assert len(keep) == len(rs)
    return keep


def _subset(a: list[bool], b: list[bool]) -> bool:
    return all(y or not x for x, y in zip(a, b, strict=True))


@given(rows, st.sampled_from(RULES), theta, st.floats(min_value=-1.0, max_value=6.0), theta)
def test_selected_rows_are_valid_and_finite(rs, rule, th, threshold, released):
    keep = _mask(rs, rule=rule, theta=th, threshold=threshold, released_theta=released)
    for k, (s, v, _, _) in zip(keep, rs, strict=True):
        if k:
            assert v and math.isfinite(s)


@given(rows)
def test_all_keeps_exactly_the_valid_finite_rows(rs):
    assert _mask(rs, rule="all") == [v and math.isfinite(s) for s, v, _, _ in rs]


@given(rows, st.sampled_from(["percentile", "class_percentile", "subject_percentile"]), theta, theta)
def test_percentile_rules_grow_with_theta(rs, rule, t1, t2):
    lo, hi = sorted((t1, t2))
    assert _subset(_mask(rs, rule=rule, theta=lo), _mask(rs, rule=rule, theta=hi))


@given(rows, st.sampled_from(["percentile", "class_percentile", "subject_percentile"]))
def test_theta_100_keeps_every_valid_finite_row(rs, rule):
    assert _mask(rs, rule=rule, theta=100) == [v and math.isfinite(s) for s, v, _, _ in rs]


@given(rows, st.floats(min_value=-1.0, max_value=6.0), st.floats(min_value=-1.0, max_value=6.0))
def test_fixed_threshold_is_monotone(rs, a, b):
    lo, hi = sorted((a, b))
    low, high = _mask(rs, rule="fixed", threshold=lo), _mask(rs, rule="fixed", threshold=hi)
    assert _subset(low, high)
    assert low == [v and math.isfinite(s) and s <= lo for s, v, _, _ in rs]


@given(rows, theta, theta)
def test_released_keeps_unanimous_valid_rows_and_grows_with_its_theta(rs, t1, t2):
    lo, hi = sorted((t1, t2))
    low, high = _mask(rs, rule="released", released_theta=lo), _mask(rs, rule="released", released_theta=hi)
    for k, (s, v, u, _) in zip(low, rs, strict=True):
        if u and v and math.isfinite(s):
            assert k
    assert _subset(low, high)


@given(rows, theta)
def test_class_percentile_keeps_something_in_every_group_that_has_valid_rows(rs, th):
    keep = _mask(rs, rule="class_percentile", theta=th)
    for g in {r[3] for r in rs}:
        members = [k for k, r in zip(keep, rs, strict=True) if r[3] == g and r[1] and math.isfinite(r[0])]
        if members:
            assert any(members)  # the group's own minimum is always at or below its percentile
