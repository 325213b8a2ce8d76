"""task.add_labels: newly labeled rows move from the unlabeled to the labeled split, and bad rows are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_choice_task

from semievol.cli import main
from semievol.config import TaskConfig
from semievol.tasks import DataError, load_task

OPTS = json.dumps(["apple", "river", "neither"])


def _task_cfg(task: Path, *files: Path, **over) -> TaskConfig:
    return TaskConfig(
        labeled=str(task / "labeled.csv"),
        unlabeled=str(task / "unlabeled.csv"),
        add_labels=[str(f) for f in files],
        **over,
    )


def _unlabeled_question(task: Path, i: int) -> str:
    t = load_task(TaskConfig(labeled=str(task / "labeled.csv"), unlabeled=str(task / "unlabeled.csv")))
    return next(e for e in t.unlabeled.iter_examples() if e.id == f"unlabeled-{i}").question


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_added_rows_join_the_labeled_split_and_leave_the_unlabeled_one(tmp_path):
    task = write_choice_task(tmp_path / "task")
    before = load_task(_task_cfg(task))
    opts = {e.id: e.options for e in before.unlabeled.iter_examples()}
    by_id = _write(
        tmp_path / "a.jsonl",
        [
            {
                "id": "unlabeled-3",
                "question": _unlabeled_question(task, 3),
                "options": opts["unlabeled-3"],
                "answer": "C",
            },
            {
                "id": "unlabeled-5",
                "question": _unlabeled_question(task, 5),
                "options": opts["unlabeled-5"],
                "answer": None,
            },
        ],
    )
    # a row without an id is matched by its question; the answer may be the option text
    by_question = _write(
        tmp_path / "b.jsonl",
        [{"question": _unlabeled_question(task, 7), "options": opts["unlabeled-7"], "answer": "neither"}],
    )
    files = [by_id, by_question]
    t = load_task(_task_cfg(task, *files))
    added = {e.id: e.answer for e in t.labeled.examples[16:]}
    assert added == {"unlabeled-3": "C", "unlabeled-7": "C"}
    assert len(t.labeled) == 18 and len(t.unlabeled) == 22
    left = [e.id for e in t.unlabeled.iter_examples()]
    assert "unlabeled-3" not in left and "unlabeled-7" not in left and "unlabeled-5" in left
    assert any("1 of 2 rows have no answer" in w for w in t.warnings)
    assert [json.loads(x) for x in by_id.read_text().splitlines()][0]["answer"] == "C"  # files untouched


def test_added_rows_respect_the_unlabeled_subsample(tmp_path):
    task = write_choice_task(tmp_path / "task")
    sub = load_task(_task_cfg(task, limit_unlabeled=10), seed=3)
    e = next(iter(sub.unlabeled.iter_examples()))
    f = _write(tmp_path / "a.jsonl", [{"id": e.id, "question": e.question, "options": e.options, "answer": "A"}])
    t = load_task(_task_cfg(task, f, limit_unlabeled=10), seed=3)
    assert len(t.unlabeled) == 9 and e.id not in {x.id for x in t.unlabeled.iter_examples()}
    assert t.labeled.examples[-1].id == e.id


def _bad_cases(task: Path) -> list[tuple[list[dict], str]]:
    q3, q4 = _unlabeled_question(task, 3), _unlabeled_question(task, 4)
    t = load_task(_task_cfg(task))
    opts = {e.id: e.options for e in t.unlabeled.iter_examples()}
    o3 = opts["unlabeled-3"]
    return [
        (
            [{"id": "unlabeled-99", "question": q3, "options": o3, "answer": "A"}],
            "a.jsonl, row 1, column 'id': no unlabeled row has id 'unlabeled-99'",
        ),
        (
            [{"id": "labeled-2", "question": q3, "options": o3, "answer": "A"}],
            "no unlabeled row has id 'labeled-2'; it is row",
        ),
        (
            [{"id": "unlabeled-3", "question": q4, "options": o3, "answer": "A"}],
            "row 1, column 'question': the question differs from that of unlabeled row 'unlabeled-3'",
        ),
        (
            [{"id": "unlabeled-3", "question": q3, "options": list(reversed(o3)), "answer": "A"}],
            "row 1, column 'options': the options differ from those of unlabeled row 'unlabeled-3'",
        ),
        (
            [{"question": "a question nobody asked", "options": o3, "answer": "A"}],
            "row 1, column 'question': matches no unlabeled question",
        ),
        (
            [
                {"id": "unlabeled-3", "question": q3, "options": o3, "answer": "A"},
                {"question": q3, "options": o3, "answer": "B"},
            ],
            "row 2, column 'question': unlabeled row 'unlabeled-3' is labeled twice (also ",
        ),
        (
            [{"id": "unlabeled-3", "question": q3, "options": o3, "answer": "D"}],
            "row 1, column 'answer': answer 'D' is outside the options A-C",
        ),
    ]


def test_rows_that_match_no_unlabeled_row_are_refused(tmp_path):
    task = write_choice_task(tmp_path / "task")
    for rows, expect in _bad_cases(task):
        f = _write(tmp_path / "a.jsonl", rows)
        with pytest.raises(DataError) as err:
            load_task(_task_cfg(task, f))
        assert expect in str(err.value) and "\n" not in str(err.value), (rows, str(err.value))


def test_a_question_shared_by_two_unlabeled_rows_needs_the_id(tmp_path):
    task = write_choice_task(tmp_path / "task")
    lines = (task / "unlabeled.csv").read_text().splitlines(keepends=True)
    lines.append(lines[1].replace("unlabeled-0", "unlabeled-copy", 1))
    (task / "unlabeled.csv").write_text("".join(lines))
    q = _unlabeled_question(task, 0)
    opts = next(e.options for e in load_task(_task_cfg(task)).unlabeled.iter_examples())
    f = _write(tmp_path / "a.jsonl", [{"question": q, "options": opts, "answer": "A"}])
    with pytest.raises(DataError, match="matches 2 unlabeled rows .*give the row's id in column 'id'"):
        load_task(_task_cfg(task, f))


def test_the_command_line_refuses_a_bad_row_in_one_line_exit_2(tmp_path, capsys, monkeypatch):
    task = write_choice_task(tmp_path / "task")
    f = _write(tmp_path / "a.jsonl", [{"id": "unlabeled-99", "question": "q", "options": ["x", "y"], "answer": "A"}])
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "data",
            "check",
            "--engine",
            "fake",
            "--labeled",
            str(task / "labeled.csv"),
            "--unlabeled",
            str(task / "unlabeled.csv"),
            "--test",
            str(task / "test.csv"),
            "--add-labels",
            str(f),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"{f}, row 1, column 'id': no unlabeled row has id 'unlabeled-99'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "task"]  # nothing written
