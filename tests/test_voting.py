"""Voting on a chunk: configurations that differ only in temperature share one forward pass per row."""

from __future__ import annotations

import numpy as np

from semievol.config import parse_answer_config
from semievol.engines.fake import FakeEngine
from semievol.stages.voting import Voting, vote_chunk
from semievol.tasks import Example


class CountingEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.scored = 0

    def score_options(self, prompts, n_options, adapter):
        self.scored += len(prompts)
        return super().score_options(prompts, n_options, adapter)


def _chunk(n: int = 5) -> list[Example]:
    return [Example(id=str(i), question=f"Question {i}?", options=["x", "y", "z"], answer=None) for i in range(n)]


def _how(configs: list[str]) -> Voting:
    return Voting("choice", False, 0, 8, tuple(parse_answer_config(c) for c in configs), "warm")


def test_configurations_differing_only_in_temperature_share_one_pass():
    chunk = _chunk()
    demos = [[Example(id="d", question="Demo?", options=["x", "y", "z"], answer="A")] for _ in chunk]
    engine = CountingEngine()
    rows = vote_chunk(engine, _how(["warm:0:0", "warm:0:1.0", "base:0:1.0", "warm:1:0.7"]), chunk, demos)
    assert engine.scored == 3 * len(chunk)  # warm:0 once for two configurations, base:0 and warm:1 once each
    for r in rows:
        d = [v["dist"] for v in r["votes"]]
        assert d[0] == d[1] and d[0] != d[2] and d[0] != d[3]
    # the same votes as when each configuration is voted on alone
    for ci, c in enumerate(["warm:0:0", "warm:0:1.0"]):
        alone = vote_chunk(FakeEngine(), _how([c]), chunk, demos)
        got = [r["votes"][ci] for r in rows]
        want = [r["votes"][0] for r in alone]
        assert [g["dist"] for g in got] == [w["dist"] for w in want]
        if ci == 0:  # the vote's generator is seeded by the configuration's index, so compare argmax at T=0
            assert [g["answer"] for g in got] == [w["answer"] for w in want]
    assert all(np.isclose(sum(v["dist"]), 1.0, atol=1e-5) for r in rows for v in r["votes"])
