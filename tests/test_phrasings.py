"""PET-style phrasings as answering configurations ('warm:0:0:p1'): other wordings of the question prompt,
read by the same option letters, each its own forward pass and its own vote."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_config_dict, write_choice_task, write_jsonl

from semievol.config import ConfigError, build_config, parse_answer_config
from semievol.prompts import PHRASING_SYSTEM, answer_prompt, training_pair
from semievol.tasks import Example

EX = Example(id="u1", question="Sentiment: profits rose", options=["negative", "neutral", "positive"], answer="C")


def test_each_phrasing_words_the_prompt_its_own_way_and_keeps_every_option_and_the_letters():
    users = set()
    for p in PHRASING_SYSTEM:
        prompt = answer_prompt(EX, "choice", phrasing=p)
        (role, system), (_, user) = prompt.messages
        assert role == "system" and system == PHRASING_SYSTEM[p] and prompt.prefix == "Answer:"
        assert EX.question in user and all(o in user for o in EX.options)
        assert all(letter in user for letter in "ABC")
        users.add(user)
    assert len(users) == len(PHRASING_SYSTEM)
    assert answer_prompt(EX, "choice") == answer_prompt(EX, "choice", phrasing=0)
    assert training_pair(EX, "C", "choice", False)[0].messages == answer_prompt(EX, "choice").messages
    demo = Example(id="l1", question="Sentiment: profits fell", options=EX.options, answer="A")
    with_demos = answer_prompt(EX, "choice", [demo], phrasing=2)
    assert with_demos.messages[0][1].startswith(PHRASING_SYSTEM[2])
    assert (
        with_demos.messages[0][1][: with_demos.shared_chars]
        == answer_prompt(EX, "choice", [EX], 2).messages[0][1][: with_demos.shared_chars]
    )


@pytest.mark.parametrize(
    "text,name",
    [
        ("warm:0:0:p1", "warm:0:0:p1"),
        ("base:3:0.7:2", "base:3:0.7:p2"),
        ("warm:0:0:p0", "warm:0:0"),
        ("warm:0:0:p3", None),
        ("warm:0:0:x", None),
        ("knn:4:0:p1", None),
        ("probe:0:0:p1", None),
        ("warm:0:0:p1:p2", None),
    ],
)
def test_a_phrasing_is_a_fourth_part_of_a_language_model_configuration(text, name):
    if name is None:
        with pytest.raises(ConfigError):
            parse_answer_config(text)
    else:
        c = parse_answer_config(text)
        assert c.name == name and parse_answer_config(c.name) == c


def test_phrasings_vote_apart_and_temperatures_of_one_phrasing_share_a_pass(tiny_model, tmp_path):
    from semievol.pipeline import make_context, run

    task = write_choice_task(tmp_path / "task", n_unlabeled=10)
    d = tiny_config_dict(tiny_model, task, tmp_path / "run")
    d["propagate"] = {"k": 0, "configs": ["warm:0:0", "warm:0:0:p1", "warm:0:0:p2", "warm:0:1:p1"]}
    run(make_context(build_config(d), quiet=True), stages=("sft", "propagate"))
    out = tmp_path / "run" / "propagate"
    rows = [json.loads(line) for line in open(out / "votes.jsonl")]
    assert len(rows) == 10
    for r in rows:
        dist = {v["config"]: v["dist"] for v in r["votes"]}
        assert list(dist) == ["warm:0:0", "warm:0:0:p1", "warm:0:0:p2", "warm:0:1:p1"]
        assert dist["warm:0:1:p1"] == dist["warm:0:0:p1"]  # the temperature reshapes only the draw
    assert any(
        {v["config"]: v["dist"] for v in r["votes"]}["warm:0:0"]
        != {v["config"]: v["dist"] for v in r["votes"]}["warm:0:0:p1"]
        for r in rows
    )
    templates = json.loads((out / "configs.json").read_text())["templates"]
    assert templates["phrasing_1"] == "phrasing-1-v1" and templates["phrasing_2"] == "phrasing-2-v1"


def test_a_free_form_task_refuses_a_phrasing(tiny_model, tmp_path):
    from semievol.pipeline import make_context, run

    task = tmp_path / "task"
    for split, first in (("labeled", 0), ("unlabeled", 10)):
        rows = [{"question": f"{i} + 1 = ?", "answer": str(i + 1)} for i in range(first, first + 5)]
        write_jsonl(task / f"{split}.jsonl", rows)
    d = tiny_config_dict(tiny_model, task, tmp_path / "run")
    d["task"] = {"labeled": str(task / "labeled.jsonl"), "unlabeled": str(task / "unlabeled.jsonl")}
    d["propagate"] = {"k": 0, "configs": ["warm:0:0:p1"]}
    with pytest.raises(ConfigError, match="phrasing"):
        run(make_context(build_config(d), quiet=True), stages=("sft", "propagate"))
