"""The embedded default model, as shipped by PyPI packages: loads offline, answers, scores options."""

from __future__ import annotations

import numpy as np
import pytest

from semievol.prompts import answer_prompt
from semievol.tasks import Example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    from semievol.engines import make_engine

    return make_engine("hf", model="embedded", dtype="auto", batch_size=4, quiet=True)


def test_embedded_model_answers_an_easy_question(engine):
    ex = Example(id="q", question="What is the capital of France?")
    (samples,) = engine.generate([answer_prompt(ex, "free")], 1, 0.0, seed=0, max_new_tokens=16, adapter=None)
    assert "paris" in samples[0].text.lower()


def test_option_scores_in_auto_dtype_match_fp32(engine):
    from semievol.engines import make_engine

    exs = [
        Example(id=str(i), question=q, options=o)
        for i, (q, o) in enumerate(
            [
                ("What is the capital of France?", ["Berlin", "Paris", "Rome"]),
                ("Which animal barks?", ["cat", "dog", "cow", "fish"]),
            ]
        )
    ]
    prompts = [answer_prompt(e, "choice") for e in exs]
    fast = engine.score_options(prompts, [3, 4], None)
    ref = make_engine("hf", model="embedded", dtype="fp32", batch_size=4, quiet=True).score_options(
        prompts, [3, 4], None
    )
    for a, b in zip(fast, ref, strict=True):
        assert abs(a.sum() - 1) < 1e-6
        assert np.abs(a - b).max() < 0.05  # bf16 where the CPU has it; the distributions barely move


def test_embedded_model_generates_with_logprobs(engine):
    ex = Example(id="q", question="What is 2 + 3? Reply with the number.")
    (samples,) = engine.generate([answer_prompt(ex, "free")], 2, 1.0, seed=0, max_new_tokens=12, adapter=None)
    assert len(samples) == 2
    for s in samples:
        assert s.text and len(s.logprobs) > 0 and all(lp <= 0 for lp in s.logprobs)


def test_embedded_embedder_finds_the_similar_question():
    from semievol.models import load_embedder
    from semievol.retrieval import embed, nearest

    model = load_embedder("embedded", device="cpu")
    keys = embed(["The stock price fell sharply.", "Photosynthesis makes sugar.", "A cat sat on a mat."], model)
    q = embed(["Which product do plants make by photosynthesis?"], model)
    idx, sims = nearest(keys, q, 2)
    assert idx[0, 0] == 1 and sims[0, 0] > sims[0, 1]
