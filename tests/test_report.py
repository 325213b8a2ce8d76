"""The HTML report and the pseudo-label browser, on run directories written by the test (no model)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import stub_manifest, write_jsonl

from semievol.browse import PseudoFilter, common_prefix, filter_rows
from semievol.cli import main
from semievol.config import build_config, to_dict
from semievol.report import SECTIONS, write_report
from semievol.report_sections import accuracy_coverage_curve
from semievol.rundir import StageMissing
from semievol.stages.evaluate import accuracy_record, pseudo_label_metrics, verdict

OPTIONS = ["negative", "neutral", "positive"]
CONFIGS = ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1"]


def pseudo_rows(n: int = 40, gold: bool = True, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        votes = [str(rng.choice(list("ABC"))) for _ in CONFIGS]
        answer = max(set(votes), key=votes.count)
        score = round(float(rng.uniform(0, 1)), 6)
        r = {
            "id": f"unlabeled-{i}",
            "row": i,
            "question": f"Sentence {i}: the quarter went {'well' if i % 2 else 'badly'}.",
            "options": OPTIONS,
            "unanimous": len(set(votes)) == 1,
            "justified": True,
            "answer": answer,
            "score": score,
            "selected": score <= 0.5,
            "votes": [{"config": c, "answer": v, "dist": [0.2, 0.3, 0.5]} for c, v in zip(CONFIGS, votes, strict=True)],
        }
        if gold:
            r["gold"] = answer if rng.uniform() > score else "ABC"[(("ABC".index(answer)) + 1) % 3]
            r["correct"] = r["gold"] == answer
        rows.append(r)
    return rows


def make_run(root: Path, gold: bool = True, stages: tuple[str, ...] = ("sft", "select", "evolve", "evaluate")) -> Path:
    """A run directory with the files the pipeline writes, filled with made-up numbers."""
    run = root / "run"
    run.mkdir(parents=True)
    cfg = build_config({"run_dir": str(run), "task": {"task": "fpb"}})
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    (run / "templates.json").write_text(json.dumps({"choice": "choice-v1"}))
    (run / "versions.json").write_text(json.dumps({"semievol": "0.1.0"}))
    rows = pseudo_rows(gold=gold)
    if "sft" in stages or "evolve" in stages:
        for name, start in (("sft", 2.3), ("evolve", 2.0)):
            if name not in stages:
                continue
            d = run / name
            write_jsonl(
                d / "train_log.jsonl",
                [{"step": s, "loss": start / s, "lr": 1e-4, "tokens": 100, "seconds": s} for s in range(1, 6)],
            )
            (d / "train_summary.json").write_text(
                json.dumps({"steps": 5, "examples": 40, "final_loss": start / 5, "seconds": 12.5, "lr": 1e-4})
            )
            stub_manifest(d, name)
    if "select" in stages:
        d = run / "select"
        write_jsonl(d / "pseudo_labels.jsonl", rows)
        (d / "selection.json").write_text(
            json.dumps(
                {
                    "rule": "percentile",
                    "tau": 0.5,
                    "theta": 50.0,
                    "confidence": "entropy",
                    "confidence_note": "normalised option entropy",
                    "rows": len(rows),
                    "selected": sum(r["selected"] for r in rows),
                }
            )
        )
        stub_manifest(d, "select")
    if "select" in stages:  # and a label audit (`semievol audit`), two labeled rows flagged
        write_jsonl(
            run / "audit" / "audit.jsonl",
            [
                {
                    "rank": i + 1,
                    "id": f"labeled-{i}",
                    "question": f"Sentence {i}.",
                    "given_text": "neutral",
                    "confident_text": "positive" if i < 2 else None,
                    "p_given": 0.1,
                    "p_confident": 0.8 if i < 2 else None,
                    "flagged": i < 2,
                }
                for i in range(5)
            ],
        )
        (run / "audit" / "audit.json").write_text(
            json.dumps(
                {
                    "rows": 5,
                    "flagged": 2,
                    "folds": 5,
                    "embedder": "embedded",
                    "out_of_fold_accuracy": 0.6,
                    "thresholds": {"negative": 0.4, "neutral": 0.5, "positive": 0.45},
                }
            )
        )
    if "evaluate" in stages:
        d = run / "evaluate"
        d.mkdir()
        rng = np.random.default_rng(1)
        right = {
            m: [bool(x) for x in rng.uniform(size=30) < p] for m, p in (("base", 0.3), ("warm", 0.5), ("evolved", 0.6))
        }
        metrics = {
            "task": "fpb",
            "kind": "choice",
            "models": {m: accuracy_record(c) for m, c in right.items()},
            "verdict": verdict(right),
        }  # as the evaluate stage writes it
        if gold:
            metrics["pseudo_labels"] = pseudo_label_metrics(rows)
        (d / "metrics.json").write_text(json.dumps(metrics))
        stub_manifest(d, "evaluate")
        (run / "timings.json").write_text(json.dumps({s: 1.5 for s in stages}))
    return run


def _section(page: str, key: str) -> str:
    m = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert m, key
    return m.group(1)


def test_report_has_every_section_with_plots(tmp_path):
    run = make_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.html"
    page = out.read_text()
    for key in SECTIONS:
        assert 'class="note"' not in _section(page, key), key
    for key in ("accuracy", "confidence", "coverage", "agreement", "classes", "training"):
        assert "data:image/png;base64," in _section(page, key), key
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    assert "A negative" in _section(page, "classes")
    assert "Vote agreement rate" in _section(page, "agreement")
    assert "2 of 5 labeled rows flagged" in _section(page, "audit") and "labeled-1" in _section(page, "audit")
    assert not list(run.glob(".*.tmp"))


def test_report_points_out_a_justifier_that_leans_to_one_option(tmp_path):
    run = make_run(tmp_path)
    assert "The justification answered" not in _section(write_report(run).read_text(), "classes")
    # the select stage found the justifier saying 'positive' whatever the votes said, and recorded it
    selection = run / "select" / "selection.json"
    record = json.loads(selection.read_text()) | {"lean": {"answer": "C", "share": 1.0, "vote_share": 0.3, "rows": 40}}
    selection.write_text(json.dumps(record))
    classes = _section(write_report(run).read_text(), "classes")
    assert "The justification answered C positive for 100% of the 40 rows" in classes
    assert "--select.calibrate true" in classes


def test_report_says_when_the_kept_labels_only_repeat_the_warm_model(tmp_path):
    run = make_run(tmp_path)
    assert "kept pseudo-labels differ" not in _section(write_report(run).read_text(), "classes")
    selection = run / "select" / "selection.json"
    record = json.loads(selection.read_text())
    selection.write_text(json.dumps(record | {"new_to_warm": {"kept": 350, "new": 0, "share": 0.0, "note": "x"}}))
    classes = _section(write_report(run).read_text(), "classes")
    assert "0 of the 350 kept pseudo-labels differ" in classes and "(none: evolve was shown only" in classes
    student = {"kept": 350, "new": 0, "share": 0.0, "note": "x", "student": True}  # evolve.mode 'fresh'
    selection.write_text(json.dumps(record | {"new_to_warm": student}))
    classes = _section(write_report(run).read_text(), "classes")
    assert "(none: the evolved model, trained from the base model, learns" in classes and "shown only" not in classes
    selection.write_text(json.dumps(record | {"new_to_warm": {"kept": 10, "new": 3, "share": 0.3, "note": None}}))
    assert "3 of the 10 kept pseudo-labels differ from the warm model&#x27;s own answer (30%)" in _section(
        write_report(run).read_text(), "classes"
    )


def test_report_notes_missing_pieces_instead_of_failing(tmp_path):
    run = make_run(tmp_path, gold=False, stages=("sft",))
    page = write_report(run).read_text()
    for key in ("accuracy", "confidence", "coverage", "agreement", "classes", "audit", "timings"):
        assert 'class="note"' in _section(page, key), key
    assert "data:image/png" in _section(page, "training")
    assert "run_dir:" in _section(page, "config")


def test_report_without_gold_answers(tmp_path):
    run = make_run(tmp_path, gold=False)
    page = write_report(run).read_text()
    assert "no gold answers" in _section(page, "coverage")
    assert "data:image/png" in _section(page, "confidence")  # one unsplit histogram
    assert "no gold answers" in _section(page, "confidence")


def test_report_free_form_task(tmp_path):
    run = make_run(tmp_path)
    rng = np.random.default_rng(3)
    rows = []
    for i in range(30):
        votes = [str(int(x)) if i > 0 else None for x in rng.integers(0, 28, size=3)]  # row 0: no answer
        answer = next((v for v in votes if v is not None), None)
        score = float("inf") if answer is None else round(float(rng.exponential(0.5)), 6)
        rows.append(
            {
                "id": f"u{i}",
                "row": i,
                "question": f"What is {i} + {i}?",
                "options": None,
                "unanimous": False,
                "justified": True,
                "answer": answer,
                "score": score,
                "selected": score < 0.4,
                "votes": [
                    {"config": c, "answer": v, "text": f"Answer: {v}", "mean_nll": 0.3}
                    for c, v in zip(CONFIGS, votes, strict=False)
                ],
                "gold": str(2 * i),
                "correct": answer == str(2 * i),
            }
        )
    write_jsonl(run / "select" / "pseudo_labels.jsonl", rows)
    (run / "select" / "selection.json").write_text(json.dumps({"rule": "fixed", "tau": 0.4, "confidence": "nll"}))
    page = write_report(run).read_text()
    for key in ("confidence", "coverage", "agreement", "classes"):
        assert "data:image/png" in _section(page, key), key
    assert "without an answer" in _section(page, "confidence")


def test_accuracy_coverage_curve_ranks_by_score():
    rows = [
        {"score": 0.1, "correct": True},
        {"score": 0.9, "correct": False},
        {"score": 0.5, "correct": True},
        {"score": 0.7, "correct": False},
    ]
    assert accuracy_coverage_curve(rows) == [(0.25, 1.0), (0.5, 1.0), (0.75, 2 / 3), (1.0, 0.5)]


def test_report_command_and_one_line_errors(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run directory" in err[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageMissing, match="not a run directory"):
        write_report(tmp_path / "empty")


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  var out = {errors: window.__errors, sections: {}, images: [0, document.images.length]};
  document.querySelectorAll('section[id]').forEach(function (s) {
    var r = s.getBoundingClientRect(), h = s.querySelector('h2');
    out.sections[s.id] = r.height > 0 && r.width > 0 && getComputedStyle(s).display !== 'none'
      && !!h && h.textContent.length > 0;
  });
  for (var i = 0; i < document.images.length; i++) {
    if (document.images[i].complete && document.images[i].naturalWidth > 0) out.images[0]++;
  }
  var p = document.createElement('pre'); p.id = 'probe'; p.textContent = JSON.stringify(out);
  document.body.appendChild(p);
});
</script>"""


@pytest.mark.skipif(
    shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(),
    reason="needs Chromium: apt-get install -y chromium",
)
def test_report_renders_in_headless_chromium(tmp_path):
    run = make_run(tmp_path)
    page = write_report(run).read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))  # the listener sits before any other script
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, "the page did not finish loading:\n" + res.stdout[-2000:]
    result = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert "Uncaught" not in res.stderr
    assert result["sections"] == {k: True for k in SECTIONS}
    assert result["images"][0] == result["images"][1] >= 6


# ---------------------------------------------------------------- pseudo-label browser


def test_filter_rows():
    rows = pseudo_rows()
    dis = filter_rows(rows, PseudoFilter(disagree=True, limit=0))
    assert dis and all(not r["unanimous"] for r in dis)
    sel = filter_rows(rows, PseudoFilter(selected=True, sort="score", limit=5))
    assert len(sel) == 5 and all(r["selected"] for r in sel)
    assert [r["score"] for r in sel] == sorted(r["score"] for r in rows if r["selected"])[:5]
    rej = filter_rows(rows, PseudoFilter(selected=False, answer="B", limit=0))
    assert all(not r["selected"] and r["answer"] == "B" for r in rej)
    assert len(rej) == sum(1 for r in rows if not r["selected"] and r["answer"] == "B")


def test_common_prefix():
    assert (
        common_prefix(["Judge the sentiment of this:\nProfit rose.", "Judge the sentiment of this:\nSales fell."])
        == "Judge the sentiment of this:\n"
    )
    assert (
        common_prefix(["Judge the sentiment of the quarter", "Judge the sentiment of the quota"])
        == "Judge the sentiment of the "
    )
    assert common_prefix(["What is 2+2?", "What is 3+3?"]) == ""  # too short to be an instruction
    assert common_prefix(["only one question here, long enough"]) == ""


def test_pseudo_command_prints_a_table(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["pseudo", str(run), "--rejected", "--sort", "score", "--reverse", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 shown of" in out and "gold" in out
    worst = max((r for r in pseudo_rows() if not r["selected"]), key=lambda r: r["score"])
    assert f"{worst['score']:.4f}" in out
    with pytest.raises(SystemExit):
        main(["pseudo", str(run), "--selected", "--rejected"])  # argparse: not allowed together
    no_select = make_run(tmp_path / "partial", stages=("sft",))
    assert main(["pseudo", str(no_select)]) == 2
    assert "select stage has not finished" in capsys.readouterr().err


def test_a_model_right_on_every_test_row_still_plots(tmp_path):
    run = make_run(tmp_path)
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    metrics["models"]["evolved"] = accuracy_record([True] * 120)  # Wilson's upper bound: 0.9999999999999999
    (run / "evaluate" / "metrics.json").write_text(json.dumps(metrics))
    assert "data:image/png;base64," in _section(write_report(run).read_text(), "accuracy")


def test_the_training_section_says_which_epochs_cross_validation_chose(tmp_path):
    run = make_run(tmp_path)
    (run / "sft" / "cv.json").write_text(
        json.dumps({"folds": 2, "held_out": {}, "mean": {"8": 0.5, "24": 0.625}, "chosen_epochs": 24.0})
    )
    training = _section(write_report(run).read_text(), "training")
    assert "trained 24 epochs, chosen by 2-fold cross-validation" in training
    assert "8: 50.0%, 24: 62.5%" in training and 'class="note"' not in training


def test_report_shows_balanced_accuracy_and_names_a_class_a_model_never_answers(tmp_path):
    """Few labels and few steps collapse a model onto the common classes: its accuracy hides that, so the
    accuracy table gives each model's balanced accuracy (recall averaged over the gold classes) and a note
    names each class a model never answered. On 3 'A' rows and 1 'B': always 'A' is 75% right, 50% balanced."""
    from semievol.stages.evaluate import class_recall, summary_table

    gold = ["A", "A", "A", "B"]
    answers = {"warm": ["A", "A", "A", "A"], "evolved": ["A", "B", "A", "B"]}
    models = {}
    for name, pred in answers.items():
        preds = [{"gold": g, "pred": p, "correct": g == p} for g, p in zip(gold, pred, strict=True)]
        rec = accuracy_record([p["correct"] for p in preds])
        rec |= class_recall(preds)
        rec["prediction_counts"], rec["gold_counts"] = dict(Counter(pred)), {"A": 3, "B": 1}
        models[name] = rec
    assert models["warm"]["recall"] == {"A": 1.0, "B": 0.0} and models["warm"]["balanced_accuracy"] == 0.5
    assert models["evolved"]["recall"] == {"A": 2 / 3, "B": 1.0}
    run = make_run(tmp_path)
    metrics_path = run / "evaluate" / "metrics.json"
    metrics_path.write_text(json.dumps(json.loads(metrics_path.read_text()) | {"models": models}))
    accuracy = _section(write_report(run).read_text(), "accuracy")
    assert "<th>balanced accuracy</th>" in accuracy and "50.0%" in accuracy and "83.3%" in accuracy
    assert "warm never answered B (1 test rows)" in accuracy and "evolved never answered" not in accuracy
    table = summary_table({"models": models})
    assert "| balanced accuracy |" in table and "| warm | 75.0% |" in table and "| 50.0% | 4 |" in table
    # a run evaluated before balanced accuracy was recorded: the table keeps its old columns, no note
    old = {
        m: {k: v for k, v in r.items() if k not in ("balanced_accuracy", "recall", "gold_counts")}
        for m, r in models.items()
    }
    metrics_path.write_text(json.dumps(json.loads(metrics_path.read_text()) | {"models": old}))
    accuracy = _section(write_report(run).read_text(), "accuracy")
    assert "balanced accuracy" not in accuracy and "never answered" not in accuracy
