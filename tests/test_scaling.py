"""Beyond one machine, the parts that run here in seconds: sharded propagate and the streamed unlabeled split.

Shards run through the real command line with the deterministic fake engine answering (the warm adapter is
trained once on the tiny random Llama and copied); the merged votes, pseudo-labels and selection must be
byte-identical to a single worker's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import tiny_config_dict, write_choice_task

from semievol.cli import main
from semievol.config import TaskConfig
from semievol.stages.propagate import shard_rows
from semievol.tasks import (
    PARQUET_BATCH,
    DataError,
    load_task,
    read_records,
    subsample,
    to_examples,
)

COMPARED = ["propagate/votes.jsonl", "select/pseudo_labels.jsonl", "select/selection.json"]


def _config(tiny_model: Path, task: Path, run_dir: Path) -> str:
    cfg = tiny_config_dict(tiny_model, task, run_dir)
    cfg["model"]["engine"] = "fake"
    cfg["propagate"]["chunk_size"] = 5  # chunks and shard boundaries fall in different places
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_shard_rows_cover_every_row_once():
    for n_rows in (0, 1, 7, 24, 1000):
        for n in (1, 2, 3, 8):
            parts = [shard_rows(n_rows, (i, n)) for i in range(1, n + 1)]
            assert [p for r in parts for p in r] == list(range(n_rows))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_three_shards_merge_into_the_single_worker_files(tiny_model, tmp_path, capsys):
    task = write_choice_task(tmp_path / "task", n_unlabeled=24)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    one, many = _config(tiny_model, task, single), _config(tiny_model, task, sharded)
    for command in ("sft", "propagate", "select"):
        assert main(["--quiet", command, one]) == 0
    shutil.copytree(single / "sft", sharded / "sft")

    assert main(["--quiet", "propagate", many, "--shard", "3/3"]) == 0
    assert main(["--quiet", "propagate", many, "--shard", "1/3"]) == 0
    capsys.readouterr()
    assert main(["--quiet", "select", many]) == 2  # shard 2 never ran
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shard 2 of 3 is missing" in err and "--shard 2/3" in err
    assert not (sharded / "select").exists()

    # shard 2 killed part way: its file holds two rows and no .done marker
    single_votes = (single / "propagate" / "votes.jsonl").read_bytes().splitlines(keepends=True)
    (sharded / "propagate" / "votes.shard-2-of-3.jsonl").write_bytes(b"".join(single_votes[8:10]))
    assert main(["--quiet", "select", many]) == 2
    assert "shard 2 of 3 is unfinished" in capsys.readouterr().err

    assert main(["--quiet", "propagate", many, "--shard", "2/3"]) == 0  # resumes after the two rows
    assert main(["--quiet", "select", many]) == 0
    for name in COMPARED:
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    left = {p.name for p in (sharded / "propagate").iterdir()}
    assert not any("shard" in name for name in left) and "manifest.json" in left


def test_a_shard_made_for_other_settings_is_refused(tiny_model, tmp_path, capsys):
    task = write_choice_task(tmp_path / "task", n_unlabeled=12)
    rd = tmp_path / "run"
    cfg = _config(tiny_model, task, rd)
    assert main(["--quiet", "sft", cfg]) == 0
    for i in (1, 2):
        assert main(["--quiet", "propagate", cfg, "--shard", f"{i}/2"]) == 0
    done = rd / "propagate" / "votes.shard-2-of-2.jsonl.done"
    done.write_text(json.dumps(json.loads(done.read_text()) | {"fingerprint": "0000000000000000"}))
    capsys.readouterr()
    assert main(["--quiet", "select", cfg]) == 2
    assert "shard 2 of 2 is made for other settings" in capsys.readouterr().err
    assert main(["--quiet", "propagate", cfg, "--shard", "2/2"]) == 0  # redone from scratch
    assert main(["--quiet", "select", cfg]) == 0
    assert sum(1 for _ in open(rd / "select" / "pseudo_labels.jsonl")) == 12


@pytest.mark.parametrize("bad", ["0/3", "4/3", "x/3", "3"])
def test_a_bad_shard_flag_is_refused(bad, capsys):
    with pytest.raises(SystemExit) as e:
        main(["propagate", "--shard", bad])
    assert e.value.code == 2 and "--shard" in capsys.readouterr().err


# ---------------------------------------------------------------- the streamed unlabeled split


def _write_parquet(path: Path, n: int, empty_at: int | None = None) -> None:
    rows = [
        {"id": f"u{i}", "question": "" if i == empty_at else f"question {i}?", "options": json.dumps(["yes", "no"])}
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=PARQUET_BATCH // 2)


def test_parquet_is_read_in_batches_and_errors_name_the_row_past_the_first_batch(tmp_path):
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_text(
        "".join(
            json.dumps({"id": f"l{i}", "question": f"l {i}", "options": ["yes", "no"], "answer": "A"}) + "\n"
            for i in range(4)
        )
    )
    n = 2 * PARQUET_BATCH + 5
    good = tmp_path / "unlabeled.parquet"
    _write_parquet(good, n)
    task = load_task(TaskConfig(labeled=str(labeled), unlabeled=str(good)))
    assert callable(task.unlabeled.rows) and len(task.unlabeled) == n  # streamed, not held as a list
    chunks = list(task.unlabeled.chunks(1000))
    assert [len(c) for c in chunks] == [1000] * (n // 1000) + [n % 1000]
    assert [e.row for c in chunks for e in c] == list(range(1, n + 1))

    bad = tmp_path / "bad.parquet"
    _write_parquet(bad, n, empty_at=PARQUET_BATCH + 3)
    with pytest.raises(DataError) as e:
        load_task(TaskConfig(labeled=str(labeled), unlabeled=str(bad)))
    assert str(e.value) == f"{bad}, row {PARQUET_BATCH + 4}, column 'question': empty question"


def test_a_streamed_split_gives_the_rows_and_subsample_of_a_whole_read(tmp_path):
    task = write_choice_task(tmp_path / "task", n_labeled=4, n_unlabeled=50, n_test=2)
    source = str(task / "unlabeled.csv")
    cfg = TaskConfig(labeled=str(task / "labeled.csv"), unlabeled=source)
    whole = to_examples(read_records(source), source, "unlabeled", "choice", cfg, require_answer=False)
    assert load_task(cfg).unlabeled.examples == whole
    for limit in (1, 17, 49):
        streamed = load_task(TaskConfig(labeled=cfg.labeled, unlabeled=source, limit_unlabeled=limit), seed=3)
        assert streamed.unlabeled.examples == subsample(whole, limit, 3)
        assert len(streamed.unlabeled) == limit
