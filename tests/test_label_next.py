"""benchmarks/label_next.py end to end on a small generated task: the embedder runs and a full semievol run."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import yaml
from test_audit import _sentiment_task

from semievol.config import build_config, to_dict
from semievol.rundir import finish_stage
from semievol.tasks import load_task

_spec = importlib.util.spec_from_file_location(
    "label_next", Path(__file__).resolve().parents[1] / "benchmarks" / "label_next.py"
)
assert _spec and _spec.loader
label_next = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(label_next)


def _data(tmp_path: Path) -> Path:
    """DATA/senti/{labeled,unlabeled,test}.csv: 60 rows each, other sentences in each split."""
    d = tmp_path / "data"
    task = _sentiment_task(d / "senti", n=60, flips=())
    for split, seed in (("test", 1), ("unlabeled", 2)):
        other = _sentiment_task(tmp_path / f"gen-{split}", n=60, flips=(), seed=seed)
        (task / f"{split}.csv").write_text((other / "labeled.csv").read_text().replace("labeled-", f"{split}-"))
    return d


def test_embedder_loop_and_audit_write_their_tables(tmp_path):
    d = _data(tmp_path)
    res = label_next.main(
        [
            "--data-dir",
            str(d),
            "--task",
            "senti",
            "--embedder",
            "hash",
            "--seeds",
            "0,1",
            "--start",
            "6",
            "--per-round",
            "4",
            "--rounds",
            "2",
            "--strategies",
            "mix,uncertainty",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(tmp_path / "out"),
            "--threads",
            "0",
        ]
    )
    arms = res["loop"]["arms"]
    assert set(arms) == {"random", "suggest:mix", "suggest:uncertainty"}
    for rec in arms.values():
        assert len(rec["mean_per_round"]) == 3
        for seed in (0, 1):
            assert sum(rec["labels_per_class_after"][seed].values()) == 6 + 2 * 4
    assert arms["random"]["mean_per_round"][0] == arms["suggest:mix"]["mean_per_round"][0]  # one shared start
    delta = arms["suggest:mix"]["minus_random_last_round"]
    assert delta["n_seeds"] == 2 and delta["ci95"][0] <= delta["mean"] <= delta["ci95"][1]
    # the suggested rows went through task.add_labels: the last run's config names every round's file
    cfg = yaml.safe_load((tmp_path / "work" / "s1" / "suggest_mix" / "r2" / "config.yaml").read_text())
    assert [Path(p).name for p in cfg["task"]["add_labels"]] == ["add_r1.csv", "add_r2.csv"]
    au = res["audit"]["per_seed"]
    assert au[0]["rows"] == 60 and au[0]["flipped"] == 6 and 0 <= au[0]["precision_top"] <= 1
    saved = json.loads((tmp_path / "out" / "label_next.json").read_text())
    assert saved["loop"]["arms"]["random"]["mean_per_round"] == arms["random"]["mean_per_round"]
    md = (tmp_path / "out" / "label_next.md").read_text()
    assert "| suggest:mix |" in md and "## Label audit" in md


def test_full_semievol_rounds_on_the_fake_engine(tmp_path, tiny_model):
    d = _data(tmp_path)
    res = label_next.main(
        [
            "--data-dir",
            str(d),
            "--task",
            "senti",
            "--engine",
            "fake",
            "--model",
            str(tiny_model),
            "--embedder",
            "hash",
            "--seeds",
            "0",
            "--start",
            "8",
            "--per-round",
            "4",
            "--rounds",
            "1",
            "--strategies",
            "mix",
            "--parts",
            "loop",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(tmp_path / "out"),
            "--threads",
            "0",
            "--set",
            "sft.epochs=1",
            "--set",
            "sft.batch_size=4",
            "--set",
            "sft.micro_batch_size=4",
            "--set",
            "propagate.k=2",
        ]
    )
    rec = res["loop"]["arms"]["suggest:mix"]
    assert len(rec["mean_per_round"]) == 2 and sum(rec["labels_per_class_after"][0].values()) == 12
    run = tmp_path / "work" / "s0" / "suggest_mix" / "r1"
    train = [json.loads(x) for x in (run / "evolve" / "train_data.jsonl").read_text().splitlines()]
    assert Counter(r["source"] for r in train)["labeled"] == 12


def test_audit_with_an_llm_runs_kept_pseudo_labels(tmp_path):
    d = _data(tmp_path)
    llm = tmp_path / "llm"  # stands in for an LLM run: its config and a finished select stage
    files = {s: str(d / "senti" / f"{s}.csv") for s in ("labeled", "unlabeled", "test")}
    cfg = build_config(
        {"run_dir": str(llm), "seed": 3, "model": {"embedder": "hash"}, "task": {**files, "limit_labeled": 12}}
    )
    llm.mkdir()
    (llm / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    trained = {e.question for e in load_task(cfg.task, seed=3).labeled.examples}
    unlabeled = list(csv.DictReader(open(files["unlabeled"])))
    rows = [
        {
            "id": r["id"],
            "question": r["question"],
            "options": json.loads(r["options"]),
            "answer": r["answer"],
            "selected": i % 4 != 0,
        }
        for i, r in enumerate(unlabeled)
    ]
    (llm / "select").mkdir()
    (llm / "select" / "pseudo_labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    finish_stage(llm / "select", "select", "test")
    argv = ["--data-dir", str(d), "--task", "senti", "--embedder", "hash", "--seeds", "0,1", "--parts", "audit"]
    argv += ["--work", str(tmp_path / "work"), "--results", str(tmp_path / "out"), "--threads", "0"]
    res = label_next.main([*argv, "--audit-run", str(llm)])["audit"]
    assert set(res["arms"]) == {"none", "kept"} and res["default_arm"] == "kept" and res["llm_run"] == str(llm)
    for seed in (0, 1):
        assert (
            res["arms"]["none"]["per_seed"][seed]["pseudo_labels"] == 0
            and res["arms"]["kept"]["per_seed"][seed]["pseudo_labels"] == 45
        )
        assert res["arms"]["none"]["per_seed"][seed]["flipped"] == res["arms"]["kept"]["per_seed"][seed]["flipped"] == 6
        # the flips avoid the 12 rows the LLM run trained on
        flipped = list(csv.DictReader(open(tmp_path / "work" / f"audit_s{seed}" / "labeled_flipped.csv")))
        given = {r["question"]: r["answer"] for r in csv.DictReader(open(files["labeled"]))}
        moved = {r["question"] for r in flipped if r["answer"] != given[r["question"]]}
        assert len(moved) == 6 and not moved & trained
    assert res["per_seed"] == res["arms"]["kept"]["per_seed"]
    # the kept rows' vectors came from the benchmark's cache, where propagate keeps them, not from the embedder
    seed_dir = tmp_path / "work" / "audit_s0"
    assert len(list((seed_dir / "propagate").glob("emb_kept*"))) == 1 and not list(
        (seed_dir / "audit").glob("emb_kept*")
    )
    md = (tmp_path / "out" / "label_next.md").read_text()
    assert "| kept | mean |" in md and "| none | mean |" in md and "`--pseudo kept`" in md
