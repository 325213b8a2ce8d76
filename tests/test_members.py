"""sft.members: warm models trained with other seeds on the same labeled rows, whose mean distribution answers
in the 'members' propagate configurations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_config_dict

from semievol.config import ConfigError, build_config, parse_answer_config
from semievol.engines.base import CallsFailed
from semievol.engines.fake import FakeEngine
from semievol.stages.voting import Voting, vote_chunk
from semievol.tasks import Example


class CountingEngine(FakeEngine):
    def __init__(self, fail: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str | None, int]] = []
        self.fail = fail  # (adapter, question) whose call fails for good

    def score_options(self, prompts, n_options, adapter):
        self.calls.append((adapter, len(prompts)))
        out = super().score_options(prompts, n_options, adapter)
        hit = self.fail is not None and adapter == self.fail[0]
        bad = {i: "refused" for i, p in enumerate(prompts) if hit and self.fail[1] in p.key()}
        if bad:
            raise CallsFailed([None if i in bad else d for i, d in enumerate(out)], bad)
        return out


def _chunk(n: int = 4) -> list[Example]:
    return [Example(id=str(i), question=f"Question {i}?", options=["x", "y", "z"], answer=None) for i in range(n)]


def _how(configs: list[str], members: tuple[str, ...] = ("warm", "m1", "m2")) -> Voting:
    return Voting("choice", False, 0, 8, tuple(parse_answer_config(c) for c in configs), "warm", members)


def test_members_answer_with_the_mean_of_their_distributions_and_share_the_warm_pass():
    chunk = _chunk()
    demos = [[] for _ in chunk]
    engine = CountingEngine()
    rows = vote_chunk(engine, _how(["warm:0:0", "members:0:0"]), chunk, demos)
    assert [a for a, _ in engine.calls] == ["warm", "m1", "m2"]  # the warm model's pass once for both
    one = (parse_answer_config("warm:0:0"),)  # each member alone, as the warm model
    alone = {
        n: vote_chunk(FakeEngine(), Voting("choice", False, 0, 8, one, n), chunk, demos) for n in ("warm", "m1", "m2")
    }
    for i, r in enumerate(rows):
        assert [v["config"] for v in r["votes"]] == ["warm:0:0", "members:0:0"]
        want = np.mean([alone[n][i]["votes"][0]["dist"] for n in ("warm", "m1", "m2")], axis=0)
        assert np.allclose(r["votes"][1]["dist"], want, atol=1e-5)
        assert r["votes"][1]["answer"] == "ABC"[int(np.argmax(want))]
        # each warm model's own answer, in the members' order (whether they agree is how much the mean can teach)
        assert r["votes"][1]["members"] == "".join(alone[n][i]["votes"][0]["answer"] for n in ("warm", "m1", "m2"))
        assert "members" not in r["votes"][0]
        assert r["votes"][0]["dist"] == alone["warm"][i]["votes"][0]["dist"]


def test_a_row_one_member_could_not_answer_fails_and_the_others_keep_the_mean():
    chunk = _chunk()
    rows = vote_chunk(CountingEngine(fail=("m1", "Question 2?")), _how(["members:0:0"]), chunk, [[] for _ in chunk])
    assert rows[2]["failed"] and "members:0:0" in rows[2]["error"]
    clean = vote_chunk(FakeEngine(), _how(["members:0:0"]), chunk, [[] for _ in chunk])
    assert [r["votes"] for r in rows if not r.get("failed")] == [r["votes"] for i, r in enumerate(clean) if i != 2]


@pytest.mark.parametrize(
    ("text", "ok"), [("members:0:0", True), ("members:3:0.7", True), ("members:0:0:p1", True), ("member:0:0", False)]
)
def test_members_configurations_parse(text, ok):
    if ok:
        assert parse_answer_config(text).model == "members"
    else:
        with pytest.raises(ConfigError, match="propagate.configs"):
            parse_answer_config(text)


def test_a_members_configuration_needs_two_members_or_more(tiny_model, choice_task, tmp_path):
    d = tiny_config_dict(tiny_model, choice_task, tmp_path / "run")
    d["propagate"]["configs"] = ["members:0:0"]
    with pytest.raises(ConfigError, match="sft.members of 2 or more"):
        build_config(d)
    with pytest.raises(ConfigError, match="sft.members"):
        build_config(d | {"sft": d["sft"] | {"members": 0}})
    build_config(d | {"sft": d["sft"] | {"members": 2}})


def test_members_train_with_their_own_seeds_vote_and_survive_a_killed_sft(tiny_model, choice_task, tmp_path):
    from safetensors.numpy import load_file

    from semievol.pipeline import make_context, run
    from semievol.rundir import PENDING

    run_dir = tmp_path / "run"
    d = tiny_config_dict(tiny_model, choice_task, run_dir)
    d["sft"]["members"] = 3
    d["propagate"] = {"k": 0, "chunk_size": 10, "configs": ["warm:0:0", "members:0:0"]}
    d["select"] = {"justify": "none", "vote": "mean", "rule": "all"}
    d["evolve"] = {"targets": "soft", "labeled_repeat": 2}
    d["evaluate"] = {"models": ["warm", "evolved", "members"]}
    cfg = build_config(d)
    run(make_context(cfg, quiet=True), ("sft", "propagate"))
    sft = run_dir / "sft"
    folders = [sft, sft / "members" / "member1", sft / "members" / "member2"]
    summaries = [json.loads((f / "train_summary.json").read_text()) for f in folders]
    assert len({s["steps"] for s in summaries}) == 1
    weights = [load_file(str(f / "adapter_model.safetensors")) for f in folders]
    key = sorted(weights[0])[0]
    assert not np.allclose(weights[0][key], weights[1][key]) and not np.allclose(weights[1][key], weights[2][key])
    votes = [json.loads(x) for x in (run_dir / "propagate" / "votes.jsonl").read_text().splitlines()]
    assert all([v["config"] for v in r["votes"]] == ["warm:0:0", "members:0:0"] for r in votes)
    assert any(r["votes"][0]["dist"] != r["votes"][1]["dist"] for r in votes)

    # killed while training the warm model, after both other members: they are kept, the warm model retrains
    fp = json.loads((sft / "manifest.json").read_text())["fingerprint"]
    (sft / "manifest.json").unlink()
    (sft / "adapter_model.safetensors").unlink()
    (sft / PENDING).write_text(fp)
    before = [(f / "adapter_model.safetensors").stat().st_mtime_ns for f in folders[1:]]
    run(make_context(cfg, quiet=True), ("sft",))
    assert [(f / "adapter_model.safetensors").stat().st_mtime_ns for f in folders[1:]] == before
    assert (sft / "manifest.json").exists()
    again = load_file(str(sft / "adapter_model.safetensors"))
    assert np.allclose(again[key], weights[0][key])  # the same seed trains the same warm model

    # the rest of the run: every warm model is evaluated, and the verdict compares the evolved model with their mean
    run(make_context(cfg, quiet=True, need_test=True))
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"warm", "evolved", "member1", "member2"}
    lines = metrics["verdict"]["lines"]
    assert any("the mean of 3 warm models" in line for line in lines)
    assert any("the 3 warm models served together" in line for line in lines)
    assert metrics["warm_ensemble"]["n"] == metrics["models"]["warm"]["n"]
    # how many unlabeled rows the warm models split on, counted by the select stage and said in the report
    split = json.loads((run_dir / "select" / "selection.json").read_text())["members_split"]
    answers = [r["votes"][1]["members"] for r in votes]
    assert split["rows"] == len(votes) and split["split"] == sum(len(set(a)) > 1 for a in answers)
    assert (
        f"The warm models gave different answers on {split['split']} of the {len(votes)}"
        in (run_dir / "report.html").read_text()
    )


def test_the_verdict_against_the_warm_models_averages_each_row_over_the_seeds():
    from semievol.stages.evaluate import verdict

    correct = {
        "evolved": [True, True, False, True],
        "warm": [True, False, False, False],
        "member1": [True, True, False, False],
        "member2": [False, False, True, False],
    }
    said = verdict(correct, members_as_long=True)
    d = said["warm_models"]
    assert d["difference"] == pytest.approx(0.75 - np.mean([0.25, 0.5, 0.25]))
    line = next(x for x in said["lines"] if "warm models" in x)
    assert "3 training seeds, each trained as many steps as the evolved model" in line
    assert "the warm models 25.0 to 50.0%" in line
    assert not any("Not compared" in x for x in said["lines"])  # the warm models are the compute-matched control
    assert any("Not compared" in x for x in verdict(correct)["lines"])
    assert "warm_models" not in verdict({k: correct[k] for k in ("evolved", "warm")})


def test_one_warm_model_trained_as_long_as_a_fresh_evolved_model_is_the_control_it_is_compared_with():
    from semievol.stages.evaluate import verdict

    correct = {"evolved": [True, True, False, True], "warm": [True, False, False, False]}
    said = verdict(correct, members_as_long=True)
    line = next(x for x in said["lines"] if "warm model" in x)
    assert "trained as many steps as the evolved model: the compute-matched control, one seed" in line
    assert not any("Not compared" in x for x in said["lines"])
    plain = verdict(correct)  # evolve continued the warm model, or trained other steps: the control is missing
    assert any("Not compared" in x for x in plain["lines"])
    assert not any("compute-matched control" in x for x in plain["lines"])


def test_the_warm_models_served_together_vote_with_their_mean_distribution():
    from semievol.stages.evaluate import ensemble_correct, verdict

    def rows(*dists):
        return [{"id": str(i), "gold": g, "dist": d} for i, (g, d) in enumerate(dists)]

    # row 0: two of three lean to A a little, one is sure of B: the mean says B; row 1: the mean says A
    a = rows(("B", [0.6, 0.4]), ("A", [0.9, 0.1]))
    b = rows(("B", [0.55, 0.45]), ("A", [0.2, 0.8]))
    c = rows(("B", [0.0, 1.0]), ("A", [0.7, 0.3]))
    assert ensemble_correct([a, b, c]) == [True, True]  # where the majority of the three is wrong on row 0
    assert ensemble_correct([a, [{"id": "0", "gold": "B", "pred": "B"}]]) is None  # free-form: no distributions

    correct = {"evolved": [True, False], "warm": [False, True], "member1": [False, False]}
    said = verdict(correct, members_as_long=True, ensemble=[True, True])
    assert said["warm_ensemble"]["difference"] == pytest.approx(-0.5)
    line = next(x for x in said["lines"] if "served together" in x)
    assert "the 2 warm models served together" in line and "that ensemble 100.0%" in line
    assert "warm_ensemble" not in verdict({k: correct[k] for k in ("evolved", "warm")}, ensemble=[True, True])


def test_evaluating_the_members_needs_them(tiny_model, choice_task, tmp_path):
    d = tiny_config_dict(tiny_model, choice_task, tmp_path / "run")
    d["evaluate"] = {"models": ["warm", "evolved", "members"]}
    with pytest.raises(ConfigError, match="evaluate.models"):
        build_config(d)
