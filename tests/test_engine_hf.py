"""The transformers engine's shared-prefix reuse gives the same option distributions as full forward passes."""

from __future__ import annotations

import numpy as np
import pytest

from semievol.data import Example
from semievol.prompts import answer_prompt

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _examples(n: int) -> list[Example]:
    words = ["apple", "river", "stone", "cloud", "engine", "violin", "tiger", "copper"]
    return [Example(id=f"u{i}", row=i + 2, question=f"Which word is like {words[i % 8]} number {i}?" + " more" * (i % 5),
                    options=[words[(i + j) % 8] for j in range(2 + i % 3)], answer=None) for i in range(n)]


@pytest.fixture(scope="module")
def engine(tiny_model):
    from semievol.engines import make_engine

    return make_engine("hf", model=str(tiny_model), dtype="fp32", batch_size=4, quiet=True)


@pytest.mark.parametrize("demos", [0, 2])
def test_prefix_reuse_matches_full_forward(engine, demos):
    exs = _examples(11)
    shared_demos = [Example(id="d", row=2, question="Pick the metal.", options=["tiger", "copper"], answer="B")] * demos
    prompts = [answer_prompt(e, "choice", shared_demos) for e in exs]
    n = [len(e.options) for e in exs]
    assert engine._shared_prefix([engine.encode(p) for p in prompts]) >= engine.MIN_SHARED
    engine.prefix_reuse = False
    full = engine.score_options(prompts, n, None)
    engine.prefix_reuse = True
    reused = engine.score_options(prompts, n, None)
    for a, b in zip(full, reused, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_shared_prefix_leaves_every_prompt_a_token(engine):
    seqs = [[1] * 20 + [2], [1] * 20 + [3, 4]]
    assert engine._shared_prefix(seqs) == 20
    assert engine._shared_prefix([[1] * 20, [1] * 20]) == 19
    assert engine._shared_prefix([[1] * 5 + [2], [1] * 5 + [3]]) == 0  # too short to be worth a second pass
    assert engine._shared_prefix([[1] * 30]) == 0  # a single prompt has nothing to share


def test_adapter_names_that_are_module_attributes_work(tiny_model, tmp_path):
    """`semievol eval --adapter` registers its adapter as 'eval', an attribute of every torch Module."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from semievol.engines import make_engine

    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                          LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    engine = make_engine("hf", model=str(tiny_model), dtype="fp32", batch_size=4, quiet=True)
    for name in ("eval", "train", "warm-1"):
        engine.add_adapter(name, str(tmp_path / "adapter"))
    prompts = [answer_prompt(e, "choice") for e in _examples(3)]
    n = [len(e.options) for e in _examples(3)]
    base = engine.score_options(prompts, n, None)
    tuned = engine.score_options(prompts, n, "eval")
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(base, tuned, strict=True))
