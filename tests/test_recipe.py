"""Options beyond the paper: the embedder's view as a configuration, mean votes, distribution alignment,
class quotas, soft targets, confidence weights and a warm start for evolve."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import padded_batch, tiny_config_dict

from semievol.config import ConfigError, RunConfig, SelectConfig, build_config, parse_answer_config
from semievol.stages.scoring import class_rank, class_shares, decide, select_mask
from semievol.tasks import Example
from semievol.views import Probe, ViewError, knn_distributions, shared_options

SENTIMENT = ["negative", "neutral", "positive"]


def write_sentiment_task(folder: Path, n_labeled: int = 18, n_unlabeled: int = 30, n_test: int = 9) -> Path:
    """A classification task in the FPB shape: one option list for every row, a skewed class balance."""
    rng = random.Random(1)
    words = {"A": ["loss", "fell", "weak"], "B": ["flat", "steady", "held"], "C": ["gain", "rose", "strong"]}
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("labeled", n_labeled), ("unlabeled", n_unlabeled), ("test", n_test)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "question", "options", "answer"])
            for i in range(n):
                a = rng.choice("AABBBBCCC")
                w.writerow(
                    [
                        f"{split}-{i}",
                        f"Sentiment of ({split}): profits {rng.choice(words[a])} {i}",
                        json.dumps(SENTIMENT),
                        a,
                    ]
                )
    return folder


def unit(v: list[list[float]]) -> np.ndarray:
    x = np.asarray(v, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- the embedder's view


def test_knn_weights_the_nearest_labels_by_similarity():
    keys = unit([[1, 0], [0.9, 0.1], [0, 1]])
    labels = np.array([0, 0, 1])
    d = knn_distributions(keys, labels, unit([[1, 0.05], [0.05, 1]]), k=2, n_options=3)
    assert d.shape == (2, 3)
    assert np.allclose(d.sum(axis=1), 1)
    assert d[0].argmax() == 0 and d[0, 0] > 0.99
    # the second query's two neighbours are label 1 (close) and label 0 (far): label 1 dominates
    assert d[1].argmax() == 1 and d[1, 1] > d[1, 0] > d[1, 2]


def test_probe_separates_labeled_clusters_and_gives_absent_classes_little_mass():
    rng = np.random.default_rng(0)
    keys = unit(np.vstack([rng.normal([3, 0, 0], 0.3, (10, 3)), rng.normal([0, 3, 0], 0.3, (10, 3))]).tolist())
    labels = np.array([0] * 10 + [2] * 10)
    d = Probe(keys, labels, n_options=3).distributions(unit([[1, 0.1, 0], [0.1, 1, 0]]))
    assert d[0].argmax() == 0 and d[1].argmax() == 2
    assert d[:, 1].max() < 0.01
    assert Probe(keys[:3], labels[:3], 3).distributions(keys[:1]).argmax() == 0  # one class: that class


def test_the_view_needs_one_shared_option_list():
    same = [Example(id=str(i), question="q", options=SENTIMENT, answer="A") for i in range(3)]
    assert shared_options(same) == SENTIMENT
    mixed = same + [Example(id="x", question="q", options=["yes", "no"], answer="A")]
    with pytest.raises(ViewError, match="share one option list"):
        shared_options(mixed)


@pytest.mark.parametrize(
    "text,ok", [("knn:8:0", True), ("probe:0:0.5", True), ("knn:0:0", False), ("probe:2:0", False), ("tree:1:0", False)]
)
def test_view_configurations_parse(text, ok):
    if ok:
        assert parse_answer_config(text).is_view
    else:
        with pytest.raises(ConfigError):
            parse_answer_config(text)


# ---------------------------------------------------------------- selection


def test_class_quota_shares_the_budget_by_the_labeled_class_shares():
    scores = [0.1, 0.2, 0.3, 0.4, 0.05, 0.5, 0.6, 0.15]
    groups = ["A", "A", "A", "A", "B", "B", "B", "C"]
    keep, info = select_mask(
        scores, SelectConfig(rule="class_quota", theta=50), groups=groups, shares={"A": 0.25, "B": 0.5, "C": 0.25}
    )
    # 4 of 8 rows: 1 A, 2 B, 1 C, each the most confident of its class
    assert info["quota_per_class"] == {"A": 1, "B": 2, "C": 1}
    assert keep == [True, False, False, False, True, True, False, True]


def test_class_rank_gives_a_class_no_row_favours_its_share_from_the_rows_likeliest_for_it():
    # every row's likeliest option is B or C; A is never the argmax, but rows 0 and 3 lean to it most
    dists = np.asarray(
        [[0.30, 0.60, 0.10], [0.05, 0.90, 0.05], [0.05, 0.15, 0.80], [0.25, 0.15, 0.60], [0.02, 0.08, 0.90],
         [0.10, 0.50, 0.40], [0.01, 0.97, 0.02], [0.04, 0.06, 0.90]]
    )  # fmt: skip
    label = class_rank(dists, np.asarray([0.25, 0.5, 0.25]), theta=50)
    # budget 4: quotas 1 A, 2 B, 1 C. Relative to each class's mean (A 0.1025, B 0.426, C 0.471) the pairs
    # come as row 0 for A (2.9), row 3 for A (2.4, A full), rows 6 and 1 for B (2.3, 2.1), rows 4 and 7 for
    # C (1.9 each; the first wins the tie)
    assert label.tolist() == [0, 1, -1, -1, 2, -1, 1, -1]


def test_class_rank_takes_each_row_once_and_fills_every_quota():
    rng = np.random.default_rng(0)
    dists = rng.dirichlet([0.5, 0.5, 0.5, 0.5], size=200)
    dists[:, 0] *= 0.05  # class A is never likely in absolute terms
    dists /= dists.sum(axis=1, keepdims=True)
    shares = np.asarray([0.1, 0.2, 0.3, 0.4])
    label = class_rank(dists, shares, theta=60)
    assert np.bincount(label[label >= 0], minlength=4).tolist() == [12, 24, 36, 48]
    # class A's rows are those where A stands out most, relative to its mean
    rel = dists[:, 0] / dists[:, 0].mean()
    assert rel[label == 0].min() >= np.sort(rel)[-40]


def test_alignment_divisor_moves_answers_toward_the_labeled_shares():
    # the rows lean to B; the labeled rows are mostly A: aligned, the doubtful row goes to A
    dists = [[0.45, 0.55], [0.1, 0.9], [0.2, 0.8]]
    mean = np.mean(dists, axis=0)
    shares = class_shares(
        [Example(id=str(i), question="q", options=["x", "y"], answer="A" if i < 3 else "B") for i in range(4)]
    )[2]
    assert shares[0] > shares[1]
    assert decide(dists[0], None, None, "entropy")[0] == "B"
    assert decide(dists[0], None, mean / shares, "entropy")[0] == "A"
    assert decide(dists[1], None, mean / shares, "entropy")[0] == "B"


def test_which_settings_count_toward_a_fingerprint_is_declared_on_the_field():
    from dataclasses import replace

    from semievol.config import fingerprint_settings

    cfg = RunConfig()
    model = fingerprint_settings(cfg.model)
    assert {"model", "dtype", "embedder", "engine", "max_new_tokens"} <= set(model)
    assert not {"batch_size", "batch_tokens", "threads", "api_base", "timeout", "served_model", "api"} & set(model)
    openai = fingerprint_settings(replace(cfg.model, engine="openai"))
    assert {"served_model", "api", "top_logprobs"} <= set(openai) and "api_base" not in openai
    assert fingerprint_settings(replace(cfg.model, engine="ray"))["engine"] == "hf"  # the same results as hf
    sft = fingerprint_settings(cfg.sft)
    assert {"lr", "epochs", "lora_r", "max_steps"} <= set(sft)
    assert not {"launcher", "micro_batch_tokens", "gradient_checkpointing", "report_to", "num_processes"} & set(sft)
    assert "rounds" not in fingerprint_settings(cfg.evolve) and "targets" in fingerprint_settings(cfg.evolve)
    assert set(fingerprint_settings(cfg.select)) == {f for f in vars(cfg.select)}


# ---------------------------------------------------------------- training


def test_a_one_hot_soft_target_is_the_hard_loss_and_weights_scale_rows(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from semievol.losses import response_loss, row_targets
    from semievol.prompts import Prompt
    from semievol.training import tokenize_pairs

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    pairs = [
        (Prompt([("user", "Which? A, B or C")], ""), "Answer: B"),
        (Prompt([("user", "Another one, longer than the first")], ""), "Answer: C"),
    ]
    data = tokenize_pairs(tok, pairs, 64)
    ids, mask, labels = padded_batch(data, tok.pad_token_id)
    with torch.no_grad():
        for head_select in (True, False):
            hard = response_loss(model, ids, mask, labels, False, head_select)
            one_hot = row_targets(tok, data, None, [[0, 1, 0], [0, 0, 1]], "t")
            assert torch.allclose(response_loss(model, ids, mask, labels, False, head_select, one_hot), hard)
            spread = row_targets(tok, data, None, [[1 / 3] * 3, [1 / 3] * 3], "t")
            assert not torch.allclose(response_loss(model, ids, mask, labels, False, head_select, spread), hard)
            first = response_loss(model, ids[:1], mask[:1], labels[:1], False, head_select)
            only_first = row_targets(tok, data, [1.0, 0.0], None, "t")
            assert torch.allclose(response_loss(model, ids, mask, labels, False, head_select, only_first), first)
            doubled = row_targets(tok, data, [2.0, 2.0], None, "t")
            assert torch.allclose(response_loss(model, ids, mask, labels, False, head_select, doubled), 2 * hard)


# ---------------------------------------------------------------- the whole recipe on the tiny model


def recipe_config(tiny_model: Path, task: Path, run_dir: Path, **select) -> RunConfig:
    d = tiny_config_dict(tiny_model, task, run_dir)
    d["propagate"]["configs"] = ["warm:0:0", "knn:4:0", "probe:0:0"]
    d["select"] = {"justify": "none", "vote": "mean", "align": True, "rule": "class_quota", "theta": 60} | select
    d["evolve"] = {
        "mode": "warm_start",
        "targets": "soft",
        "sharpen": 0.5,
        "weighting": "confidence",
        "labeled_repeat": 2,
        "train_epochs": 1,
    }
    d["evaluate"] = {"models": ["warm", "evolved"]}
    return build_config(d)


def test_the_recipe_runs_every_stage_on_a_classification_task(tiny_model, tmp_path):
    from semievol.pipeline import make_context, run

    task = write_sentiment_task(tmp_path / "task")
    cfg = recipe_config(tiny_model, task, tmp_path / "run")
    run(make_context(cfg, quiet=True, need_test=True))
    run_dir = tmp_path / "run"
    votes = [json.loads(x) for x in (run_dir / "propagate" / "votes.jsonl").read_text().splitlines()]
    assert [v["config"] for v in votes[0]["votes"]] == ["warm:0:0", "knn:4:0", "probe:0:0"]
    for row in votes:
        for v in row["votes"]:
            assert len(v["dist"]) == 3 and v["answer"] == "ABC"[int(np.argmax(v["dist"]))]
    pseudo = [json.loads(x) for x in (run_dir / "select" / "pseudo_labels.jsonl").read_text().splitlines()]
    assert all(len(r["target_dist"]) == 3 and r["answer"] == "ABC"[int(np.argmax(r["target_dist"]))] for r in pseudo)
    selection = json.loads((run_dir / "select" / "selection.json").read_text())
    assert selection["aligned"] and selection["vote"] == "mean"
    own = [r for r in pseudo if r["selected"]]
    new = sum(r["answer"] != r["votes"][0]["answer"] for r in own)  # votes[0] is warm:0:0, the warm model's own
    assert {k: selection["new_to_warm"][k] for k in ("kept", "new")} == {"kept": len(own), "new": new}
    kept = Counter(r["answer"] for r in pseudo if r["selected"])
    assert sum(kept.values()) <= round(0.6 * len(pseudo))
    assert all(kept[c] <= q for c, q in selection["quota_per_class"].items())
    train = [json.loads(x) for x in (run_dir / "evolve" / "train_data.jsonl").read_text().splitlines()]
    labeled = [r for r in train if r["source"] == "labeled"]
    assert len(labeled) == 2 * 18 and all(r["weight"] == 1.0 and "soft_target" not in r for r in labeled)
    pseudo_rows = [r for r in train if r["source"] == "pseudo"]
    assert len(pseudo_rows) == sum(kept.values())
    assert all(0 < r["weight"] <= 1 and abs(sum(r["soft_target"]) - 1) < 1e-5 for r in pseudo_rows)
    summary = json.loads((run_dir / "evolve" / "train_summary.json").read_text())
    assert summary["init_adapter"] and summary["init_adapter"].endswith("sft")
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"warm", "evolved"}


def test_class_rank_selection_labels_rows_by_the_class_they_were_kept_for_and_trains_them_hard(tiny_model, tmp_path):
    from semievol.pipeline import make_context, run

    task = write_sentiment_task(tmp_path / "task")
    cfg = recipe_config(tiny_model, task, tmp_path / "run", rule="class_rank")
    run(make_context(cfg, quiet=True, need_test=True))
    run_dir = tmp_path / "run"
    selection = json.loads((run_dir / "select" / "selection.json").read_text())
    labeled = Counter(r["answer"] for r in csv.DictReader(open(task / "labeled.csv")))
    budget = round(0.6 * 30)
    expected = {c: int(np.floor(budget * (labeled[c] + 1) / (18 + 3) + 0.5)) for c in "ABC"}
    assert selection["rule"] == "class_rank" and selection["quota_per_class"] == expected
    pseudo = [json.loads(x) for x in (run_dir / "select" / "pseudo_labels.jsonl").read_text().splitlines()]
    kept = [r for r in pseudo if r["selected"]]
    assert Counter(r["answer"] for r in kept) == Counter({c: n for c, n in expected.items() if n})
    relabeled = [r for r in kept if r["answer"] != "ABC"[int(np.argmax(r["target_dist"]))]]
    assert selection["relabeled"] == len(relabeled)
    train = {r["id"]: r for r in map(json.loads, (run_dir / "evolve" / "train_data.jsonl").read_text().splitlines())}
    for r in kept:  # a soft target only where it favours the row's label
        t = train[r["id"]]
        assert t["answer"] == r["answer"]
        if "soft_target" in t:
            assert "ABC"[int(np.argmax(t["soft_target"]))] == r["answer"]
    assert all("soft_target" not in train[r["id"]] for r in relabeled)


def test_the_view_refuses_a_task_whose_rows_have_different_options(tiny_model, choice_task, tmp_path):
    from semievol.pipeline import make_context, run

    d = tiny_config_dict(tiny_model, choice_task, tmp_path / "run")
    d["propagate"]["configs"] = ["knn:4:0"]
    with pytest.raises(ViewError, match="option list"):
        run(make_context(build_config(d), quiet=True), stages=("sft", "propagate"))


def test_reversed_justification_keeps_each_candidate_on_its_option():
    from semievol.stages.select import justification

    ex = Example(id="1", question="Sentiment?", options=SENTIMENT, answer="C")
    row = {"votes": [{"answer": "A"}, {"answer": "C"}, {"answer": None}]}
    straight = justification(row, ex, "choice", reverse=False)
    flipped = justification(row, ex, "choice", reverse=True)
    assert "Attempt 1: A. negative" in straight.messages[0][1]
    assert "Attempt 1: C. negative" in flipped.messages[0][1] and "Attempt 2: A. positive" in flipped.messages[0][1]
    assert "Attempt 3: (no answer)" in flipped.messages[0][1]
    assert "A. positive\nB. neutral\nC. negative" in flipped.messages[1][1]


def test_paired_difference_and_the_verdict_in_words():
    from semievol.stages.evaluate import paired_difference, verdict

    a = [True] * 60 + [False] * 40
    b = [True] * 40 + [False] * 60
    d = paired_difference(a, b)
    assert d["difference"] == pytest.approx(0.2) and d["ci95"][0] > 0 and d["only_a"] == 20
    said = verdict({"evolved": a, "warm": b, "sft_matched": a})
    assert said["lines"][0].startswith("The evolved model is better than the warm model")
    assert "not distinguishable from SFT trained as many steps" in said["lines"][1]
    assert len(said["lines"]) == 2
    without = verdict({"evolved": b, "warm": a})["lines"]
    assert without[0].startswith("The evolved model is worse than")
    assert without[1].startswith("Not compared with SFT trained as many steps") and "sft_matched" in without[1]
    assert verdict({"warm": a}) is None


def test_fair_order_justification_reruns_select_and_scores_both_orders(tiny_model, tmp_path):
    from semievol.pipeline import make_context, run

    task = write_sentiment_task(tmp_path / "task")
    d = tiny_config_dict(tiny_model, task, tmp_path / "run")
    d["propagate"]["configs"] = ["warm:0:0", "probe:0:0"]
    d["evaluate"] = {"models": ["warm", "evolved"]}
    run(make_context(build_config(d), quiet=True, need_test=True))
    plain = [json.loads(x) for x in (tmp_path / "run" / "select" / "pseudo_labels.jsonl").read_text().splitlines()]
    d["select"] = {"fair_order": True}
    run(make_context(build_config(d), quiet=True, need_test=True), stages=("sft", "propagate", "select"))
    fair = [json.loads(x) for x in (tmp_path / "run" / "select" / "pseudo_labels.jsonl").read_text().splitlines()]
    assert [r["id"] for r in fair] == [r["id"] for r in plain]
    assert any(f["justify_dist"] != p["justify_dist"] for f, p in zip(fair, plain, strict=True))
    report = (tmp_path / "run" / "report.html").read_text()
    assert report.index("The evolved model is") < report.index("Test accuracy</h2>")


def test_compute_matched_sft_counts_the_warm_steps_when_evolve_starts_from_them(tiny_model, tmp_path):
    from semievol.pipeline import make_context, run

    task = write_sentiment_task(tmp_path / "task")
    d = tiny_config_dict(tiny_model, task, tmp_path / "run")
    d["propagate"]["configs"] = ["probe:0:0"]
    d["select"] = {"justify": "none"}
    d["evolve"] = {"mode": "warm_start"}
    d["evaluate"] = {"models": ["evolved", "sft_matched"]}
    run(make_context(build_config(d), quiet=True, need_test=True))
    steps = {
        name: json.loads((tmp_path / "run" / name / "train_summary.json").read_text())["steps"]
        for name in ("sft", "evolve", "sft_matched")
    }
    assert steps["sft_matched"] == steps["sft"] + steps["evolve"]


def test_resume_mode_finishes_one_schedule_two_ways(tiny_model, tmp_path):
    """evolve.mode 'resume': warm is the first part of one schedule; evolve and the matched control go on from
    it (no restart of the learning rate), so the control is the same as SFT trained from the base model for
    all the steps, and the two finished models differ in the data of their last steps only."""
    from semievol.pipeline import make_context, run

    task = write_sentiment_task(tmp_path / "task")
    d = tiny_config_dict(tiny_model, task, tmp_path / "run")
    d["propagate"]["configs"] = ["probe:0:0"]
    d["select"] = {"justify": "none"}
    d["evolve"] = {"mode": "resume", "steps": 3}
    d["evaluate"] = {"models": ["warm", "evolved", "sft_matched"]}
    run(make_context(build_config(d), quiet=True, need_test=True))
    run_dir = tmp_path / "run"
    summary = {
        n: json.loads((run_dir / n / "train_summary.json").read_text()) for n in ("sft", "evolve", "sft_matched")
    }
    warm_steps = summary["sft"]["steps"]
    whole = warm_steps + 3
    assert summary["sft"]["schedule"] == {"from_step": 0, "to_step": warm_steps, "planned_steps": whole}
    for name in ("evolve", "sft_matched"):
        assert summary[name]["steps"] == 3
        assert summary[name]["schedule"] == {"from_step": warm_steps, "to_step": whole, "planned_steps": whole}
    assert (run_dir / "sft" / "resume_state.pt").is_file()
    # the control is SFT from the base model for every step, in one run
    from semievol.stages.sft import run_sft

    ctx = make_context(build_config(d), quiet=True, need_test=True)
    one_run = run_sft(ctx, tmp_path / "one_run", max_steps=whole, desc="one run")
    control = [json.loads(x)["loss"] for x in (run_dir / "sft_matched" / "train_log.jsonl").read_text().splitlines()]
    alone = [json.loads(x)["loss"] for x in (one_run / "train_log.jsonl").read_text().splitlines()]
    assert control == pytest.approx(alone[warm_steps:], abs=1e-6)
    evolved = [json.loads(x)["lr"] for x in (run_dir / "evolve" / "train_log.jsonl").read_text().splitlines()]
    assert evolved == pytest.approx(
        [json.loads(x)["lr"] for x in (one_run / "train_log.jsonl").read_text().splitlines()][warm_steps:]
    )
    # changing evolve.steps re-plans the warm model's schedule, so sft reruns
    d["evolve"]["steps"] = 4
    run(make_context(build_config(d), quiet=True, need_test=True), stages=("sft",))
    assert (
        json.loads((run_dir / "sft" / "train_summary.json").read_text())["schedule"]["planned_steps"] == warm_steps + 4
    )


def test_resume_mode_needs_evolve_steps():
    with pytest.raises(ConfigError, match="evolve.steps"):
        build_config({"evolve": {"mode": "resume"}})
