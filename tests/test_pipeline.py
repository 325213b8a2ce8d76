"""Each stage end to end on a tiny random model in a temporary run directory."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config_dict

from semievol.config import build_config
from semievol.jsonio import read_jsonl
from semievol.pipeline import COMMANDS, make_context, run
from semievol.rundir import StageMissing

ADAPTER = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "train_log.jsonl",
    "train_summary.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "manifest.json",
}


def _cfg(tiny_model: Path, task: Path, run_dir: Path, **over):
    d = tiny_config_dict(tiny_model, task, run_dir)
    for k, v in over.items():
        d.setdefault(k, {}).update(v) if isinstance(v, dict) else d.__setitem__(k, v)
    return build_config(d)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _manifest_mtimes(run_dir: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("*/manifest.json")}


def test_full_run_writes_the_expected_files(tiny_model, choice_task, tmp_path):
    cfg = _cfg(tiny_model, choice_task, tmp_path / "run")
    ctx = make_context(cfg, quiet=True, need_test=True)
    res = run(ctx)
    rd = tmp_path / "run"
    assert {"config.yaml", "versions.json", "templates.json", "timings.json", *COMMANDS} <= _files(rd)
    assert _files(rd / "sft") >= ADAPTER - {"chat_template.jinja"}
    assert {"votes.jsonl", "configs.json", "manifest.json"} <= _files(rd / "propagate")
    assert _files(rd / "select") == {"pseudo_labels.jsonl", "selection.json", "manifest.json"}
    assert "train_data.jsonl" in _files(rd / "evolve") and "adapter_config.json" in _files(rd / "evolve")
    assert _files(rd / "evaluate") == {
        "metrics.json",
        "manifest.json",
        "predictions_base.jsonl",
        "predictions_warm.jsonl",
        "predictions_evolved.jsonl",
    }
    assert not list(rd.rglob("*.tmp")) and not list(rd.rglob(".pending"))

    pl = read_jsonl(rd / "select" / "pseudo_labels.jsonl")
    assert [r["id"] for r in pl] == [f"unlabeled-{i}" for i in range(24)]  # one line per unlabeled row, in order
    assert all(len(r["votes"]) == 4 and "gold" in r and "correct" in r for r in pl)
    assert all(abs(sum(v["dist"]) - 1) < 1e-4 for r in pl for v in r["votes"])
    assert sum(r["selected"] for r in pl) == 12  # theta 50 over 24 distinct scores

    m = res["metrics"]
    assert set(m["models"]) == {"base", "warm", "evolved"}
    for rec in m["models"].values():
        assert rec["n"] == 12 and rec["ci95"][0] <= rec["accuracy"] <= rec["ci95"][1]
    assert m["pseudo_labels"]["all"]["n"] == 24 and m["pseudo_labels"]["selected"]["n"] == 12
    assert len(m["pseudo_labels"]["accuracy_vs_coverage"]) == 10
    train = read_jsonl(rd / "evolve" / "train_data.jsonl")
    assert sum(r["source"] == "labeled" for r in train) == 16 and sum(r["source"] == "pseudo" for r in train) == 12


def test_rerun_skips_finished_stages_and_a_change_reruns_only_downstream(tiny_model, choice_task, tmp_path):
    rd = tmp_path / "run"
    run(make_context(_cfg(tiny_model, choice_task, rd), quiet=True))
    before = _manifest_mtimes(rd)
    run(make_context(_cfg(tiny_model, choice_task, rd), quiet=True))
    assert _manifest_mtimes(rd) == before
    # memory settings say how training fits, not what it learns: a run that ran out of memory resumes
    run(
        make_context(
            _cfg(tiny_model, choice_task, rd, sft={"micro_batch_tokens": 64, "gradient_checkpointing": True}),
            quiet=True,
        )
    )
    assert _manifest_mtimes(rd) == before

    run(make_context(_cfg(tiny_model, choice_task, rd, select={"theta": 25}), quiet=True))
    after = _manifest_mtimes(rd)
    assert after["sft"] == before["sft"] and after["propagate"] == before["propagate"]
    assert all(after[s] != before[s] for s in ("select", "evolve", "evaluate"))
    pl = read_jsonl(rd / "select" / "pseudo_labels.jsonl")
    assert sum(r["selected"] for r in pl) == 6


def test_a_stage_before_its_upstream_is_refused(tiny_model, choice_task, tmp_path):
    ctx = make_context(_cfg(tiny_model, choice_task, tmp_path / "run"), quiet=True)
    with pytest.raises(StageMissing, match="semievol sft"):
        run(ctx, ("propagate",))


def _scramble_unlabeled_gold(task: Path, seed: int) -> None:
    path = task / "unlabeled.csv"
    rows = list(csv.reader(open(path, newline="")))
    rng = random.Random(seed)
    for r in rows[1:]:
        r[3] = rng.choice("ABC")
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_unlabeled_gold_answers_never_reach_training_or_selection(tiny_model, tmp_path):
    from conftest import write_choice_task

    outputs = []
    for seed in (1, 2):
        task = write_choice_task(tmp_path / f"task{seed}")
        _scramble_unlabeled_gold(task, seed)
        rd = tmp_path / f"run{seed}"
        run(
            make_context(_cfg(tiny_model, task, rd, evaluate={"models": ["base"]}), quiet=True),
            ("sft", "propagate", "select", "evolve"),
        )
        pl = read_jsonl(rd / "select" / "pseudo_labels.jsonl")
        outputs.append(
            {
                "votes": (rd / "propagate" / "votes.jsonl").read_bytes(),
                "selection": [(r["id"], r["answer"], r["score"], r["selected"]) for r in pl],
                "train": (rd / "evolve" / "train_data.jsonl").read_bytes(),
                "adapter": (rd / "evolve" / "adapter_model.safetensors").read_bytes(),
                "gold": [r["gold"] for r in pl],
            }
        )
    a, b = outputs
    assert a["gold"] != b["gold"]  # the scramble did change the column
    for key in ("votes", "selection", "train", "adapter"):
        assert a[key] == b[key], key


def test_killed_propagate_resumes_without_losing_or_repeating_rows(tiny_model, choice_task, tmp_path):
    rd = tmp_path / "run"
    full = tmp_path / "full"
    run(make_context(_cfg(tiny_model, choice_task, full), quiet=True), ("sft", "propagate"))
    run(make_context(_cfg(tiny_model, choice_task, rd), quiet=True), ("sft", "propagate"))
    votes = rd / "propagate" / "votes.jsonl"
    lines = votes.read_bytes().splitlines(keepends=True)
    # as if killed in the middle of writing the second chunk: the manifest is gone and the last line torn
    (rd / "propagate" / "manifest.json").unlink()
    (rd / "propagate" / ".pending").write_text(
        json.loads((full / "propagate" / "manifest.json").read_text())["fingerprint"]
    )
    votes.write_bytes(b"".join(lines[:13]) + lines[13][:20])
    ctx = make_context(_cfg(tiny_model, choice_task, rd), quiet=True)
    scored = []
    engine = ctx.get_engine()
    inner = engine.score_options
    engine.score_options = lambda prompts, n, adapter: scored.extend(prompts) or inner(prompts, n, adapter)
    run(ctx, ("propagate",))
    assert votes.read_bytes() == (full / "propagate" / "votes.jsonl").read_bytes()
    assert len(scored) == (24 - 13) * 4  # only the rows after the last whole line were voted again


def test_free_form_task_runs_every_stage(tiny_model, tmp_path):
    """GSM8K-shaped JSONL (number answers, rationales): sampling, extraction, NLL confidence, evolve.

    The fake engine answers (a random tiny model extracts no number, and selection then rightly refuses);
    training still runs on the tiny model."""
    from semievol.engines.fake import FakeEngine

    task = tmp_path / "free"
    task.mkdir()
    for split, n in (("labeled", 8), ("unlabeled", 10), ("test", 4)):
        with open(task / f"{split}.jsonl", "w") as f:
            for i in range(n):
                f.write(
                    json.dumps(
                        {
                            "id": f"{split}-{i}",
                            "question": f"What is {i} plus {i + 1}?",
                            "answer": str(2 * i + 1),
                            "rationale": f"{i} + {i + 1} = {2 * i + 1}.",
                        }
                    )
                    + "\n"
                )
    cfg = build_config(
        {
            "run_dir": str(tmp_path / "run"),
            "model": {"model": str(tiny_model), "dtype": "fp32", "embedder": "hash", "max_new_tokens": 8},
            "task": {
                "labeled": str(task / "labeled.jsonl"),
                "unlabeled": str(task / "unlabeled.jsonl"),
                "test": str(task / "test.jsonl"),
            },
            "sft": {"lr": 5e-3, "epochs": 1, "batch_size": 4, "micro_batch_size": 4, "max_length": 256},
            "propagate": {"k": 2, "configs": ["warm:0:1.0", "base:2:1.0"]},
            "select": {"confidence": "nll", "rule": "all"},
        }
    )
    res = run(make_context(cfg, quiet=True, need_test=True, engine=FakeEngine()))
    pl = read_jsonl(tmp_path / "run" / "select" / "pseudo_labels.jsonl")
    assert all(r["answer"] is not None and r["selected"] for r in pl)
    train = read_jsonl(tmp_path / "run" / "evolve" / "train_data.jsonl")
    assert len(train) == 18 and all(r["rationale"] for r in train if r["source"] == "labeled")
    assert len(pl) == 10 and all(len(r["votes"]) == 2 and "text" in r["votes"][0] for r in pl)
    assert all(r["gold"] == str(2 * int(r["id"].split("-")[1]) + 1) for r in pl)
    sel = json.loads((tmp_path / "run" / "select" / "selection.json").read_text())
    assert sel["confidence"] == "nll"
    assert set(res["metrics"]["models"]) == {"base", "warm", "evolved"}
    assert res["metrics"]["kind"] == "free"


def test_compute_matched_sft_trains_as_many_steps_as_evolve(tiny_model, choice_task, tmp_path):
    rd = tmp_path / "run"
    cfg = _cfg(tiny_model, choice_task, rd, evaluate={"models": ["base", "warm", "evolved", "sft_matched"]})
    res = run(make_context(cfg, quiet=True, need_test=True))
    evolve = json.loads((rd / "evolve" / "train_summary.json").read_text())
    matched = json.loads((rd / "sft_matched" / "train_summary.json").read_text())
    sft = json.loads((rd / "sft" / "train_summary.json").read_text())
    assert matched["steps"] == evolve["steps"] > sft["steps"]
    assert matched["examples"] == sft["examples"] == 16
    assert set(res["metrics"]["models"]) == {"base", "warm", "evolved", "sft_matched"}
    assert "sft_matched" in (rd / "report.html").read_text()


def test_each_stage_command_runs_alone_with_the_compute_matched_control_asked_for(tiny_model, choice_task, tmp_path):
    """`semievol sft`, then `propagate`, ... one command at a time: the control's fingerprint counts the evolve
    steps, which do not exist while the earlier stages run, so it must not be asked for until evaluate."""
    rd = tmp_path / "run"
    cfg = _cfg(tiny_model, choice_task, rd, evaluate={"models": ["base", "warm", "evolved", "sft_matched"]})
    for command in COMMANDS:
        run(make_context(cfg, quiet=True, need_test=command == "evaluate"), (command,))
        assert (rd / command / "manifest.json").exists()
    assert not (rd / "sft_matched").exists() or (rd / "sft_matched" / "manifest.json").exists()
    metrics = json.loads((rd / "evaluate" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "warm", "evolved", "sft_matched"}


def test_eval_reports_gold_option_nll_and_letter_counts(tiny_model, choice_task, tmp_path, capsys):
    """`semievol eval` on a choice task: accuracy plus what breaks its ties (gold NLL) and shows a collapse."""
    import math

    from semievol.cli import main
    from semievol.stages.evaluate import gold_nll
    from semievol.tasks import Example

    exs = [Example(id=str(i), question="q", options=["x", "y"], answer=a) for i, a in enumerate("AAB")]
    preds = [{"pred": "A", "dist": [0.8, 0.2]}, {"pred": "A", "dist": [0.6, 0.4]}, {"pred": "A", "dist": [0.9, 0.1]}]
    assert gold_nll(exs, preds) == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.1)) / 3)

    out = tmp_path / "val.json"
    rc = main(
        [
            "--quiet",
            "eval",
            "--model",
            str(tiny_model),
            "--dtype",
            "fp32",
            "--embedder",
            "hash",
            "--labeled",
            str(choice_task / "labeled.csv"),
            "--unlabeled",
            str(choice_task / "unlabeled.csv"),
            "--test",
            str(choice_task / "test.csv"),
            "--run-dir",
            str(tmp_path / "run"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    val = json.loads(out.read_text())
    assert val["gold_nll"] > 0 and sum(val["prediction_counts"].values()) == val["n"] == sum(
        val["gold_counts"].values()
    )
    # the evaluate stage writes the same record format
    assert {"accuracy", "ci95", "seconds", "prediction_counts", "gold_counts", "gold_nll", "recall"} <= set(val)
    # each gold class's recall, weighted by its rows, gives back the rows answered right; their mean is balanced
    assert set(val["recall"]) == set(val["gold_counts"])
    assert round(sum(val["recall"][c] * n for c, n in val["gold_counts"].items())) == val["correct"]
    assert abs(val["balanced_accuracy"] - sum(val["recall"].values()) / len(val["recall"])) < 1e-12


def test_calibrated_justification_reruns_select_only_and_answers_from_candidates(tiny_model, choice_task, tmp_path):
    from semievol.stages.scoring import decide

    rd = tmp_path / "run"
    run(make_context(_cfg(tiny_model, choice_task, rd), quiet=True))
    before = _manifest_mtimes(rd)
    raw = read_jsonl(rd / "select" / "pseudo_labels.jsonl")
    assert not json.loads((rd / "select" / "selection.json").read_text())["calibrated"]

    run(
        make_context(_cfg(tiny_model, choice_task, rd, select={"calibrate": True, "candidates_only": True}), quiet=True)
    )
    after = _manifest_mtimes(rd)
    assert after["sft"] == before["sft"] and after["propagate"] == before["propagate"]
    assert after["select"] != before["select"]
    sel = json.loads((rd / "select" / "selection.json").read_text())
    assert sel["calibrated"] and sel["candidates_only"]
    from test_selection import justifier_lean

    assert "lean" in sel and sel["lean"] == justifier_lean(read_jsonl(rd / "select" / "pseudo_labels.jsonl"))
    pl = read_jsonl(rd / "select" / "pseudo_labels.jsonl")
    dists = [np.asarray(r["justify_dist"]) / sum(r["justify_dist"]) for r in pl]
    assert {len(d) for d in dists} == {3}
    prior = np.mean(dists, axis=0)
    assert sel["prior"]["3"] == pytest.approx(prior, abs=1e-5)
    assert [r["justify_dist"] for r in pl] == [r["justify_dist"] for r in raw]  # the same calls, from the cache
    for r in pl:
        votes = [v["answer"] for v in r["votes"]]
        answer, score = decide(r["justify_dist"], votes, prior, "entropy")
        assert r["answer"] == answer and r["score"] == pytest.approx(score, abs=1e-5)
        assert r["answer"] in votes
    # the selection follows the calibrated scores: the kept rows are the lower half of them
    kept = sorted(r["score"] for r in pl if r["selected"])
    assert len(kept) == 12 and kept[-1] <= min(r["score"] for r in pl if not r["selected"])


def test_a_second_round_trains_each_unlabeled_row_once_with_its_newest_label(tiny_model, choice_task, tmp_path):
    rd = tmp_path / "run"
    cfg = _cfg(tiny_model, choice_task, rd, evolve={"rounds": 2}, evaluate={"models": ["evolved"]})
    run(make_context(cfg, quiet=True))
    assert {"propagate_r2", "select_r2", "evolve_r2"} <= _files(rd)
    r1 = {r["id"]: r["answer"] for r in read_jsonl(rd / "select" / "pseudo_labels.jsonl") if r["selected"]}
    r2 = {r["id"]: r["answer"] for r in read_jsonl(rd / "select_r2" / "pseudo_labels.jsonl") if r["selected"]}
    assert set(r1) & set(r2)  # theta 50 twice over 24 rows: some rows are selected in both rounds
    train = read_jsonl(rd / "evolve_r2" / "train_data.jsonl")
    ids = [r["id"] for r in train]
    assert len(ids) == len(set(ids)) == 16 + len(set(r1) | set(r2))
    pseudo = {r["id"]: r["answer"] for r in train if r["source"] == "pseudo"}
    assert pseudo == r1 | r2  # a row selected in both rounds carries round 2's label
    assert sum(r["source"] == "labeled" for r in train) == 16


def test_with_pseudo_keeps_gold_rows_and_replaces_a_reselected_row():
    from semievol.stages.evolve import with_pseudo
    from semievol.tasks import Example

    gold = [Example(id="x", question="q", options=["a", "b"], answer="A")]
    old = [
        Example(id="u1", question="q1", options=["a", "b"], answer="A"),
        Example(id="u2", question="q2", options=["a", "b"], answer="A"),
    ]
    new = [
        Example(id="u2", question="q2", options=["a", "b"], answer="B"),
        Example(id="x", question="unlabeled row with a labeled row's id", options=["a", "b"], answer="B"),
    ]
    out = with_pseudo(gold + old, new, 1)
    assert [(e.id, e.answer) for e in out] == [("x", "A"), ("u1", "A"), ("u2", "B"), ("x", "B")]
