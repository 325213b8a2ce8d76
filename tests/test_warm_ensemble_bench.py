"""benchmarks/warm_ensemble.py: the ensemble of warm models is compared with its members on the same rows."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "warm_ensemble", Path(__file__).resolve().parents[1] / "benchmarks" / "warm_ensemble.py"
)
warm_ensemble = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(warm_ensemble)


def member(dists: list[list[float]], gold: list[str]) -> dict:
    split = {"gold": gold, "dist": dists}
    return {"seconds": 1, "dev": split, "unlabeled": split}


def test_the_ensemble_outvotes_a_member_where_the_others_agree_against_it():
    gold = ["A", "B", "B"]
    m0 = member([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], gold)  # wrong on row 1, not confidently
    m1 = member([[0.8, 0.2], [0.1, 0.9], [0.3, 0.7]], gold)
    m2 = member([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1]], gold)  # wrong on row 2
    r = warm_ensemble.compare([m0, m1, m2])["dev"]
    assert r["member_acc"] == pytest.approx([66.7, 100.0, 66.7])
    assert r["ensemble_acc"] == 100.0  # row 1: mean 0.3 / 0.7; row 2: mean 0.47 / 0.53
    assert r["changed_from_member0"] == 1 and r["changed_and_right"] == 1 and r["changed_and_member0_was_right"] == 0
    assert r["any_member_right"] == 100.0 and r["all_members_agree"] == pytest.approx(33.3)


def test_a_confident_member_can_outweigh_two_that_disagree_with_it():
    # the mean of distributions, not a majority vote: member 0's near one-hot answer survives two mild ones
    gold = ["B"]
    ms = [member([[0.999, 0.001]], gold), member([[0.4, 0.6]], gold), member([[0.45, 0.55]], gold)]
    r = warm_ensemble.compare(ms)["unlabeled"]
    assert r["ensemble_acc"] == 0.0 and r["changed_from_member0"] == 0


def test_signals_point_at_the_member_that_leans_on_one_class():
    # labels balanced; member 1 answers 'B' everywhere, member 0 follows the probe
    gold = ["A", "B", "A", "B"]
    m0 = member([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]], gold)
    m1 = member([[0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]], gold)
    views = {"prior": [0.5, 0.5], "probe": [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]]}
    r = warm_ensemble.compare([m0, m1], views)
    assert r["signals"]["probe_agreement"] == [1.0, 0.5]
    assert r["signals"]["share_kl"][0] == 0.0 and r["signals"]["share_kl"][1] > 0.5
    assert r["chosen"]["probe_agreement"] == 0 and r["chosen"]["share_kl"] == 0


def test_a_rebuilt_page_keeps_the_cells_of_run_folders_an_earlier_machine_took(tmp_path, monkeypatch):
    import json

    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    old = {"dev": {"rows": 500}}  # a session-21 cell: its members' folders are gone
    (results / "warm_ensemble.json").write_text(json.dumps({"results": {"fpb/l64/seed0": old}}))
    cell = runs / "sst2" / "l64" / "seed1"
    for j, dists in enumerate(([[0.9, 0.1], [0.9, 0.1]], [[0.9, 0.1], [0.1, 0.9]])):
        (cell / f"member{j}").mkdir(parents=True)
        (cell / f"member{j}" / "predictions.json").write_text(json.dumps(member(dists, ["A", "B"])))
    monkeypatch.setattr(warm_ensemble, "RESULTS", results)
    monkeypatch.setattr(warm_ensemble, "RUNS", runs)
    found = warm_ensemble.collect()
    assert found["fpb/l64/seed0"] == old
    assert found["sst2/l64/seed1"]["dev"]["member_acc"] == [50.0, 100.0]


def test_each_cell_keeps_the_settings_its_members_were_trained_under(tmp_path, monkeypatch):
    import json

    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    old = {
        "members": 5,
        "dev": {
            "rows": 2,
            "member_acc": [80.0] * 5,
            "ensemble_acc": 84.0,
            "any_member_right": 90.0,
            "all_members_agree": 70.0,
            "changed_from_member0": 1,
            "changed_and_right": 1,
            "changed_and_member0_was_right": 0,
        },
    }
    old["unlabeled"] = old["dev"]
    old["settings"] = {"labeled": 64, "lr": 0.001, "steps": 384, "machine": "AMD EPYC, 2 CPUs, no GPU"}
    (results / "warm_ensemble.json").write_text(json.dumps({"results": {"fpb/l64/seed0": old}}))
    cell = runs / "sst2" / "l16" / "seed1"
    for j in range(2):
        (cell / f"member{j}" / "adapter").mkdir(parents=True)
        (cell / f"member{j}" / "predictions.json").write_text(
            json.dumps(member([[0.9, 0.1], [0.1, 0.9]], ["A", "B"]) | {"machine": "Intel Xeon"})
        )
        summary = {"examples": 16, "lr": 0.0005, "steps": 96}
        (cell / f"member{j}" / "adapter" / "train_summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(warm_ensemble, "RESULTS", results)
    monkeypatch.setattr(warm_ensemble, "RUNS", runs)
    # the page is rebuilt from the cells alone: no invocation's arguments are written over them
    warm_ensemble.write_page(warm_ensemble.collect())
    written = json.loads((results / "warm_ensemble.json").read_text())
    assert set(written) == {"results"}
    stored = written["results"]
    assert stored["fpb/l64/seed0"]["settings"] == old["settings"]
    assert stored["sst2/l16/seed1"]["settings"] == {"labeled": 16, "lr": 0.0005, "steps": 96, "machine": "Intel Xeon"}
    page = (results / "warm_ensemble.md").read_text()
    assert "fpb/l64/seed0: 64 labeled rows, lr 0.001, 384 steps, on AMD EPYC" in page
    assert "sst2/l16/seed1: 16 labeled rows, lr 0.0005, 96 steps, on Intel Xeon" in page
