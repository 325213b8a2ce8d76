"""benchmarks/select_rules.py: the kept pseudo-labels graded against the unlabeled rows' gold answers, per class
they were kept for, and a class with none kept named on the page."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "select_rules", Path(__file__).resolve().parents[1] / "benchmarks" / "select_rules.py"
)
select_rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(select_rules)


def _row(answer: str, gold: str | None, selected: bool) -> dict:
    return {"answer": answer, "gold": gold, "selected": selected}


def test_grade_counts_all_kept_and_each_kept_class():
    rows = [
        _row("A", "A", True),
        _row("A", "B", True),
        _row("B", "B", True),
        _row("B", "C", False),
        _row("C", "C", False),
        _row("A", None, True),  # no gold: not graded
    ]
    g = select_rules.grade(rows)
    assert g["rows"] == 5 and g["kept"] == 3
    assert g["all_right"] == 3 / 5 and g["kept_right"] == 2 / 3
    assert g["per_class"] == {"A": {"kept": 2, "right": 0.5}, "B": {"kept": 1, "right": 1.0}}
    assert g["gold_classes"] == ["A", "B", "C"]
    page = select_rules.markdown({"fpb/l64/seed2": {"class_rank_50": g}})
    assert "| fpb/l64/seed2 | class_rank_50 | 3 | 60.0 / 66.7 | +6.7 | A 2@50, B 1@100 (none kept: C) |" in page


def test_a_rule_that_keeps_nothing_is_a_row_not_a_crash():
    g = select_rules.grade([_row("A", "B", False)])
    assert g["kept"] == 0 and g["kept_right"] is None
    assert "| t | percentile_25 | 0 | - | - | - |" in select_rules.markdown({"t": {"percentile_25": g}})


def test_a_run_is_named_by_task_labels_seed_and_variant_where_it_has_one(tmp_path):
    assert select_rules.cell_name(tmp_path / "few_labels_v3" / "fpb" / "l64" / "seed2") == "fpb/l64/seed2"
    assert select_rules.cell_name(tmp_path / "fpb" / "l64" / "seed0" / "v4_resume") == "fpb/l64/seed0/v4_resume"
