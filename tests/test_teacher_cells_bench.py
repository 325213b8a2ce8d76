"""benchmarks/teacher_cells.py: the v5 teacher's accuracy on a finished cell's unlabeled rows, under the
alignment prior semievol uses and under shares shrunk toward uniform."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import yaml

from semievol.stages.scoring import class_shares

_spec = importlib.util.spec_from_file_location(
    "teacher_cells", Path(__file__).resolve().parents[1] / "benchmarks" / "teacher_cells.py"
)
teacher_cells = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(teacher_cells)

OPTIONS = '"[""negative"", ""positive""]"'


def _csv(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("question,options,answer\n" + "".join(f"{q},{OPTIONS},{a}\n" for q, a in rows))
    return str(path)


def _cell(tmp_path: Path) -> Path:
    """A finished cell: three of four labeled rows 'negative', four unlabeled rows with gold A, A, B, B."""
    labeled = _csv(tmp_path / "labeled.csv", [("good", "B"), ("bad", "A"), ("awful", "A"), ("poor", "A")])
    unlabeled = _csv(tmp_path / "unlabeled.csv", [("dull", "A"), ("grim", "A"), ("fine", "B"), ("great", "B")])
    test = _csv(tmp_path / "test.csv", [("bleak", "A"), ("nice", "B")])
    cell = tmp_path / "fpb" / "l4" / "seed0"
    (cell / "propagate").mkdir(parents=True)
    config = {"seed": 0, "task": {"task": "fpb", "labeled": labeled, "unlabeled": unlabeled, "test": test}}
    (cell / "config.yaml").write_text(yaml.safe_dump(config))
    dists = [[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8]]
    members = ["AAAAA", "AABAA", "AAAAB", "BBBBB"]
    votes = [
        {"id": f"unlabeled-{i + 2}", "votes": [{"config": "members:0:0", "dist": d, "members": m}]}
        for i, (d, m) in enumerate(zip(dists, members, strict=True))
    ]
    (cell / "propagate" / "votes.jsonl").write_text("".join(json.dumps(v) + "\n" for v in votes))
    return cell


def test_add_one_shares_are_the_shares_semievol_aligns_to():
    counts = np.array([10.0, 6.0])
    assert np.allclose(teacher_cells.shrunk_shares(counts, 1.0), [11 / 18, 7 / 18])
    assert np.allclose(teacher_cells.shrunk_shares(counts, float("inf")), [0.5, 0.5])
    assert np.allclose(teacher_cells.shrunk_shares(counts, 4.0), [14 / 24, 10 / 24])


def test_a_cell_reports_its_warm_models_and_each_aligned_target_against_the_unlabeled_gold(tmp_path):
    cell = _cell(tmp_path)
    out = teacher_cells.one_cell(cell)
    task = teacher_cells.load_task(teacher_cells.build_config(yaml.safe_load((cell / "config.yaml").read_text())).task)
    assert {e.id for e in task.unlabeled.iter_examples()} == {f"unlabeled-{i}" for i in range(2, 6)}  # rows by CSV line
    assert out["draw_counts"] == [3, 1] and out["unlabeled_gold_counts"] == [2, 2]
    assert out["members"] == [0.75, 0.75, 0.5, 0.75, 1.0]
    assert out["members_split"] == 0.5
    assert out["unaligned"]["accuracy"] == 0.75  # the third row's 0.55 on the wrong answer
    assert np.allclose(teacher_cells.shrunk_shares(np.array([3.0, 1.0]), 1.0), class_shares(task.labeled.examples)[2])
    # a=1 pulls toward the draw's 3:1 'negative' share: the third row stays wrong; uniform shares fix it
    assert out["aligned"]["a=1"]["accuracy"] == 0.75
    assert out["aligned"]["uniform"]["accuracy"] == 1.0
    assert out["aligned"]["uniform"]["nll"] < out["aligned"]["a=1"]["nll"]
    page = teacher_cells.markdown([out], "cmd", "machine")
    assert "| fpb 4 rows, seed 0 | 3:1 | 75.0, 75.0, 50.0, 75.0, 100.0 | 50% | 75.0" in page
