"""The paper-table benchmark's diagnostics: numbers the README quotes to explain why selection helps or not."""

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "paper_table", Path(__file__).resolve().parents[1] / "benchmarks" / "paper_table.py"
)
paper_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paper_table)


def test_auroc_counts_pairs_and_ties():
    assert paper_table.auroc([3, 2, 1], [True, True, False]) == 1.0
    assert paper_table.auroc([1, 2, 3], [True, True, False]) == 0.0
    assert paper_table.auroc([1, 1], [True, False]) == 0.5
    assert paper_table.auroc([1, 2, 3, 4], [False, True, False, True]) == 0.75
    assert paper_table.auroc([1, 2], [True, True]) is None


def _row(answer, gold, score, selected, unanimous):
    return {
        "answer": answer,
        "gold": gold,
        "correct": answer == gold,
        "score": score,
        "selected": selected,
        "unanimous": unanimous,
    }


def test_diagnose_separates_class_from_confidence(tmp_path):
    # Class B is confident and mostly right; class C is unconfident and half right. Within each class the
    # score ranks perfectly, but across classes a wrong B (0.3) outranks every right C.
    rows = [
        _row("B", "B", 0.1, True, True),
        _row("B", "B", 0.2, True, False),
        _row("B", "C", 0.3, True, False),
        _row("C", "C", 0.7, False, False),
        _row("C", "A", 0.9, False, True),
    ]
    (tmp_path / "select").mkdir()
    (tmp_path / "select" / "pseudo_labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = paper_table.diagnose(tmp_path)
    assert d["by_answer"]["B"] == {"n": 3, "accuracy": pytest.approx(2 / 3), "median_score": 0.2, "selected": 3}
    assert d["by_answer"]["C"]["accuracy"] == 0.5 and d["by_answer"]["C"]["selected"] == 0
    assert d["auroc_within_answer"] == 1.0
    # right: 0.1, 0.2, 0.7; wrong: 0.3, 0.9 -> of 6 pairs the right one is more confident in 5
    assert d["auroc"] == pytest.approx(5 / 6)
    assert d["gold"] == {"A": 1, "B": 2, "C": 2}
    assert d["unanimous"] == {"n": 2, "accuracy": 0.5}
    assert d["disagreeing"]["n"] == 3 and d["disagreeing"]["accuracy"] == pytest.approx(2 / 3)


def test_diagnose_without_selection_output_is_none(tmp_path):
    assert paper_table.diagnose(tmp_path) is None


def test_smoke_profile_runs_the_table_with_another_model(tmp_path, tiny_model):
    """The whole table driver, end to end, on a tiny model named with --set, into its own folders."""
    import subprocess
    import sys

    from conftest import write_choice_task

    write_choice_task(tmp_path / "data" / "fpb", n_labeled=30, n_unlabeled=8, n_test=8)
    out, results = tmp_path / "runs", tmp_path / "results"
    cmd = [
        sys.executable,
        str(Path(paper_table.__file__)),
        "--data-dir",
        str(tmp_path / "data"),
        "--profile",
        "smoke",
        "--tasks",
        "fpb",
        "--seeds",
        "0",
        "--parts",
        "main",
        "--lr-grid",
        "5e-3",
        "--epochs-grid",
        "1",
        "--out",
        str(out),
        "--results",
        str(results),
        "--set",
        f"model.model={tiny_model}",
        "--set",
        "model.dtype=fp32",
        "--set",
        "model.embedder=hash",
        "--set",
        "sft.max_length=256",
        "--set",
        "sft.batch_size=4",
        "--set",
        "sft.micro_batch_size=4",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads((results / "paper_table.json").read_text())
    assert res["model"] == f"Model `{tiny_model}`" and res["sizes"] == {
        "fpb": {"labeled": 20, "unlabeled": 8, "test": 8}
    }
    main = res["tasks"]["fpb"]["main"]
    for model in ("base", "warm", "sft_matched", "evolved"):
        assert main[model]["n"] == 1 and 0 <= main[model]["mean"] <= 100
    assert res["tasks"]["fpb"]["tuning"]["validation_rows"] == 4
    assert str(tiny_model) in (out / "smoke" / "fpb" / "s0" / "semievol" / "bench_config.yaml").read_text()
    assert set(main["diagnostics"]) == {"0"}  # seed 0's pseudo-labels, keys as JSON writes them
    rp = main["row_paired"]["vs_matched"]
    assert rp["n_seeds"] == 1 and rp["rows"] == 8 and set(rp["per_seed"]) == {"0"}
    assert main["target"]["met"] is False  # one seed has no range to compare
    per_class = main["class_right"]["0"]["evolved"]
    assert sum(n for _, n in per_class.values()) == 8 and all(0 <= a <= n for a, n in per_class.values())
    assert sum(a for a, _ in per_class.values()) == round(8 * main["evolved"]["mean"])
    assert "| fpb | no |" in (results / "paper_table.md").read_text()
    assert (results / "paper_table.md").read_text().startswith(f"Model `{tiny_model}`")
    r = subprocess.run(
        [
            sys.executable,
            str(Path(paper_table.__file__)),
            "--diagnose",
            str(out / "smoke" / "fpb" / "s0" / "semievol"),
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "AUROC" in r.stdout and "majority vote" in r.stdout and "no select/" in r.stdout
    # a second profile into the same folder (which would take all 30 labeled rows) is refused rather than
    # run on the first one's 20
    r = subprocess.run(
        cmd[: cmd.index("--profile") + 1] + ["session"] + cmd[cmd.index("--profile") + 2 :],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode != 0 and "give this profile its own --out folder" in r.stderr


def test_set_builds_nested_overrides():
    assert paper_table.parse_set(["model.model=x/y", "sft.lr=1e-3", "propagate.configs=[a, b]"]) == {
        "model": {"model": "x/y"},
        "sft": {"lr": 1e-3},
        "propagate": {"configs": ["a", "b"]},
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        paper_table.parse_set(["model.model"])


def test_paired_differences_use_only_seeds_measured_on_both_sides():
    def run(**acc):
        return {"metrics": {"models": {m: {"accuracy": a} for m, a in acc.items()}}}

    variant = {0: run(evolved=0.70), 2: run(evolved=0.80)}
    main = {0: run(evolved=0.75, sft_matched=0.72), 1: run(evolved=0.9, sft_matched=0.1), 2: run(evolved=0.76)}
    d = paper_table.paired(variant, "evolved", main, "evolved")
    assert d["n"] == 2 and d["values"] == pytest.approx([-0.05, 0.04])
    m = paper_table.paired(variant, "evolved", main, "sft_matched")  # seed 2 has no matched SFT
    assert m["n"] == 1 and m["values"] == pytest.approx([-0.02])
    assert paper_table.fmt_delta(d) == "-0.5 (-5.0, +4.0)"
    assert paper_table.fmt_delta(paper_table.paired({}, "evolved", main, "evolved")) == "-"


def test_alternatives_score_other_labelling_rules_on_the_stored_rows():
    # the justifier leans to 'C' on every row; calibrating by the mean distribution undoes that lean
    def row(gold, votes, dist):
        return {
            "gold": gold,
            "answer": "ABC"[max(range(3), key=lambda i: dist[i])],
            "justify_dist": dist,
            "votes": [{"config": f"c{i}", "answer": a} for i, a in enumerate(votes)],
        }

    rows = [
        row("A", ["A", "C"], [0.4, 0.1, 0.5]),
        row("B", ["B", "B"], [0.1, 0.4, 0.5]),
        row("C", ["A", "C"], [0.1, 0.1, 0.8]),
        row("A", ["B", "A"], [0.3, 0.2, 0.5]),
    ]
    alt = paper_table.alternatives(rows)
    assert alt["config c0"] == 0.5 and alt["config c1"] == 0.75
    assert alt["majority vote"] == 0.5  # every split vote goes to the first configuration's answer
    assert alt["justified (the run)"] == 0.25
    assert alt["justified, kept to the candidates"] == 0.75  # row 2 can only be 'B', row 4 'A' or 'B'
    # mean A 0.225, C 0.575: row 1 flips to 'A' (0.4/0.225 > 0.5/0.575), row 3 stays 'C'
    assert alt["justified, candidates, batch-calibrated"] == 1.0


def test_alternatives_break_ties_by_letter_not_by_set_order():
    # every row's candidates tie; the answer must be the first letter among them whatever the hash seed
    # (a set's iteration order for these letters is one of 24 and differs between processes)
    pairs = ["AB", "AC", "AD", "BC", "BD", "CD", "BA", "CA", "DB", "DC"]
    rows = [
        {
            "gold": min(p),
            "answer": "A",
            "justify_dist": [0.25] * 4,
            "votes": [{"config": "c0", "answer": p[0]}, {"config": "c1", "answer": p[1]}],
        }
        for p in pairs
    ]
    alt = paper_table.alternatives(rows)
    assert alt["justified, kept to the candidates"] == 1.0
    assert alt["justified, candidates, batch-calibrated"] == 1.0


def test_scarcity_rows_pair_seeds_and_time_only_the_method(tmp_path):
    """Label scarcity: per labeled count, SemiEvol minus SFT on the same seeds, and SemiEvol's time from SFT to
    evolve (not evaluation, not the compute-matched control) against SFT's."""

    def summary(warm, evolved, matched, timings):
        return {
            "metrics": {
                "models": {
                    "base": {"accuracy": 0.3},
                    "warm": {"accuracy": warm},
                    "evolved": {"accuracy": evolved},
                    "sft_matched": {"accuracy": matched},
                },
                "pseudo_labels": {"all": {"accuracy": 0.6}, "selected": {"accuracy": 0.8}},
            },
            "timings": timings,
            "wall_seconds": sum(timings.values()),
        }

    t = {"sft": 60, "propagate": 120, "select": 30, "evolve": 90, "sft_matched": 600, "evaluate": 300}
    folders = {
        "s0/semievol": summary(0.70, 0.74, 0.75, t),
        "s1/semievol": summary(0.72, 0.71, 0.70, t),
        "s2/semievol": summary(0.10, 0.90, 0.10, t),  # no scarcity runs on seed 2: not in those rows
        "s0/labeled_16": summary(0.50, 0.58, 0.52, t | {"propagate_r2": 60}),
        "s1/labeled_16": summary(0.40, 0.44, 0.41, t | {"propagate_r2": 60}),
    }
    for name, x in folders.items():
        p = tmp_path / "session" / "fpb" / name / "bench_summary.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(x))
    res = paper_table.collect("session", ["fpb"], [0, 1, 2], out=tmp_path)
    sc = res["tasks"]["fpb"]["scarcity"]
    assert res["tasks"]["fpb"]["main"]["evolved"]["n"] == 3 and sc["all"]["semievol"]["n"] == 2
    assert list(sc) == ["16", "all"]
    assert sc["16"]["minus_sft"]["values"] == pytest.approx([0.08, 0.04])
    assert sc["16"]["minus_matched"]["values"] == pytest.approx([0.06, 0.03])
    assert sc["all"]["minus_sft"]["values"] == pytest.approx([0.04, -0.01])
    assert sc["16"]["semievol_minutes"]["mean"] == pytest.approx(6.0) and sc["all"]["semievol_minutes"]["mean"] == 5.0
    md = paper_table.markdown(res, "test machine", "cmd")
    assert "| fpb | 16 |" in md and "+6.0 (+8.0, +4.0)" in md and "| 1.0 min | 6.0 min | 6.0x |" in md


def test_gpu_script_checks_its_settings_and_refuses_without_cuda(tmp_path):
    import subprocess
    import sys

    script = Path(paper_table.__file__).parent / "gpu" / "paper_table_gpu.py"
    r = subprocess.run(
        [sys.executable, str(script), "--model", "/models/x", "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "paper_table.py" in r.stdout and "model.model=/models/x" in r.stdout and "sft.bf16=on" in r.stdout
    r = subprocess.run(
        [sys.executable, str(script), "--model", "/models/x", "--dry-run", "--set", "model.device=cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "model.device: unknown setting" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = subprocess.run(
            [sys.executable, str(script), "--model", "/models/x"], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 2 and "no CUDA device" in r.stderr
    # the table itself refuses a misspelt --set before it writes anything
    r = subprocess.run(
        [
            sys.executable,
            str(Path(paper_table.__file__)),
            "--set",
            "sft.lrr=1e-3",
            "--out",
            str(tmp_path / "runs"),
            "--results",
            str(tmp_path / "res"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "sft.lrr: unknown setting" in r.stderr and not (tmp_path / "runs").exists()


def test_last_evolve_steps_reads_the_last_round():
    def summary(training):
        return {"metrics": {"training": training}}

    assert paper_table.last_evolve_steps(summary({"sft": {"steps": 64}, "evolve": {"steps": 112}})) == 112
    assert (
        paper_table.last_evolve_steps(
            summary(
                {
                    "evolve_r2": {"steps": 164},
                    "evolve": {"steps": 112},
                    "evolve_r10": {"steps": 9},
                    "sft": {"steps": 64},
                }
            )
        )
        == 9
    )
    assert paper_table.last_evolve_steps(summary({"sft": {"steps": 64}})) is None


def test_selected_counts_read_the_last_round(tmp_path):
    def write(folder, answers):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "pseudo_labels.jsonl").write_text(
            "".join(json.dumps({"answer": a, "selected": True}) + "\n" for a in answers)
        )

    write("select", ["A", "B"])
    assert paper_table._selected_counts(tmp_path) == {"A": 1, "B": 1}
    write("select_r2", ["C"])
    write("select_r10", ["B", "B"])
    assert paper_table._selected_counts(tmp_path) == {"B": 2}
    assert paper_table._selected_counts(tmp_path / "select") is None


def test_scarcity_skips_counts_that_are_the_whole_labeled_split():
    assert paper_table.scarcity_counts(128) == [16, 32, 64]  # 128 of 128 is the main run
    assert paper_table.scarcity_counts(0) == [16, 32, 64, 128]  # the whole split, size unknown here
    assert paper_table.scarcity_counts(20) == [16]


def test_tuning_breaks_ties_by_gold_nll_and_without_it_by_grid_order():
    pairs = [(3e-4, 2), (1e-3, 2), (3e-3, 2)]
    assert paper_table.pick_tuned(pairs, [0.5, 0.6, 0.6], [0.9, 0.8, 0.7]) == (3e-3, 2)
    assert paper_table.pick_tuned(pairs, [0.5, 0.6, 0.4], [0.9, 0.8, 0.7]) == (1e-3, 2)
    # free-form (GSM8K): no option to score; a run that reached the eval must not crash the tuning
    assert paper_table.pick_tuned(pairs, [0.0, 0.0, 0.0], [None, None, None]) == (3e-4, 2)
    assert paper_table.pick_tuned(pairs, [0.0, 0.1, 0.0], [None, None, None]) == (1e-3, 2)


def test_row_paired_separates_a_real_difference_from_test_noise():
    # A right on 60 of 100 rows, B on 40; the rows only A gets right (30) outnumber B's (10) on every seed.
    a = [True] * 60 + [False] * 40
    b = [True] * 30 + [False] * 30 + [True] * 10 + [False] * 30
    rp = paper_table.row_paired({0: (a, b), 1: (a, b)}, draws=400)
    assert rp["mean"] == pytest.approx(0.2) and rp["rows"] == 100 and rp["n_seeds"] == 2
    assert rp["per_seed"][0]["only_a"] == 30 and rp["per_seed"][0]["only_b"] == 10
    lo, hi = rp["per_seed"][0]["ci95"]
    assert 0.05 < lo < 0.2 < hi < 0.35
    assert rp["ci95"][0] > 0 and rp["p_above_zero"] == 1.0
    # the same accuracies with A and B right on different rows half the time: no difference in the mean
    c = [True, False] * 50
    d = [False, True] * 50
    flat = paper_table.row_paired({0: (c, d), 1: (d, c)}, draws=400)
    assert flat["mean"] == pytest.approx(0.0)
    assert flat["ci95"][0] < 0 < flat["ci95"][1] and 0.05 < flat["p_above_zero"] < 0.95
    with pytest.raises(ValueError):
        paper_table.row_paired({0: (a, b), 1: (a[:50], b[:50])})
    assert paper_table.row_paired({}) == {"n_seeds": 0}


def test_target_needs_a_point_on_the_means_and_seed_ranges_apart():
    def main(ev, sft, mt):
        return {"evolved": paper_table.stats(ev), "warm": paper_table.stats(sft), "sft_matched": paper_table.stats(mt)}

    assert paper_table.target_check(main([0.80, 0.82, 0.81], [0.75, 0.78, 0.77], [0.76, 0.79, 0.78]))["met"] is True
    # a 3-point mean gain whose lowest seed sits under matched SFT's highest: the ranges overlap
    overlap = paper_table.target_check(main([0.74, 0.84, 0.85], [0.75, 0.78, 0.77], [0.76, 0.79, 0.78]))
    assert overlap["met"] is False and overlap["lowest_over_highest_matched"] == pytest.approx(-0.05)
    # ranges apart but under a point on the means
    assert paper_table.target_check(main([0.801, 0.802], [0.795, 0.796], [0.79, 0.795]))["met"] is False
    assert paper_table.target_check(main([0.9], [0.5], [0.5]))["met"] is False  # one seed has no range
    assert paper_table.target_check(main([], [0.5], [0.5])) == {"met": None}


def test_a_subset_holds_the_rows_subsample_positions_names(tmp_path):
    # the fulltest profile's runs are scored again on the session profile's test rows by these positions
    src = tmp_path / "data" / "fpb"
    src.mkdir(parents=True)
    lines = ["question,options,answer"] + [f'q{i},"[""x"", ""y""]",A' for i in range(40)]
    for split in ("labeled", "unlabeled", "test"):
        (src / f"{split}.csv").write_text("\n".join(lines) + "\n")
    out = paper_table.subset(
        "fpb", tmp_path / "data", {"labeled": 10, "unlabeled": 0, "test": 7}, out=tmp_path / "runs"
    )
    got = [r["question"] for r in paper_table._read_rows(out / "fpb" / "test.csv")[1]]
    assert got == [f"q{i}" for i in paper_table.subsample_positions("fpb", "test", 40, 7)]
    assert len(set(got)) == 7
    assert len(paper_table._read_rows(out / "fpb" / "unlabeled.csv")[1]) == 40  # 0 = the whole split
