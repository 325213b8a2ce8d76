"""The transformers engine's shared-prefix reuse gives the same option distributions as full forward passes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from semievol.prompts import answer_prompt
from semievol.tasks import Example

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _examples(n: int) -> list[Example]:
    words = ["apple", "river", "stone", "cloud", "engine", "violin", "tiger", "copper"]
    return [
        Example(
            id=f"u{i}",
            row=i + 2,
            question=f"Which word is like {words[i % 8]} number {i}?" + " more" * (i % 5),
            options=[words[(i + j) % 8] for j in range(2 + i % 3)],
            answer=None,
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def engine(tiny_model):
    from semievol.engines import make_engine

    return make_engine("hf", model=str(tiny_model), dtype="fp32", batch_size=4, quiet=True)


@pytest.mark.parametrize("demos", [0, 2])
def test_prefix_reuse_matches_full_forward(engine, demos):
    exs = _examples(11)
    shared_demos = [Example(id="d", row=2, question="Pick the metal.", options=["tiger", "copper"], answer="B")] * demos
    # answer_prompt marks only demo-free prompts as sharing their system message; the same demos for every
    # row (a longer shared prefix) are marked by hand here
    prompts = [replace(answer_prompt(e, "choice", shared_demos), shared_system=True) for e in exs]
    _assert_reuse_matches_full_forward(engine, prompts, [len(e.options) for e in exs])


def _assert_reuse_matches_full_forward(engine, prompts, n):
    """Every prompt is split, and its distribution is the one of a full forward pass."""
    assert all(engine._system_tokens(p, engine.encode(p)) >= engine.MIN_SHARED for p in prompts)
    engine.prefix_reuse = False
    full = engine.score_options(prompts, n, None)
    engine.prefix_reuse = True
    reused = engine.score_options(prompts, n, None)
    for a, b in zip(full, reused, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_only_what_a_prompt_marks_as_shared_is_split(engine):
    """A demo-free prompt shares its whole system turn; one with demos only the instructions before them
    (its demos make the rest unique to its row); a prompt that marks nothing is not split."""
    demos = [Example(id="d", row=2, question="Pick the metal.", options=["tiger", "copper"], answer="B")]
    plain, with_demos = answer_prompt(_examples(1)[0], "choice"), answer_prompt(_examples(1)[0], "choice", demos)
    assert plain.shared_system and not with_demos.shared_system and with_demos.shared_chars > 0
    whole = engine._system_tokens(plain, engine.encode(plain))
    opening = engine._system_tokens(with_demos, engine.encode(with_demos))
    assert whole >= engine.MIN_SHARED and opening > whole  # the system turn's text, then the demos' header
    demo_text = engine.tokenizer.decode(engine.encode(with_demos)[opening:])
    assert "Pick the metal." in demo_text and "Solved examples" not in demo_text
    unmarked = replace(with_demos, shared_chars=0)
    assert engine._system_tokens(unmarked, engine.encode(unmarked)) == 0


@pytest.mark.parametrize("kind", ["demos", "justify"])
def test_a_shared_opening_run_once_matches_full_forward(engine, kind):
    """Prompts sharing only the first characters of their system message (demos, candidates after them)."""
    from semievol.prompts import justify_prompt

    exs = _examples(9)
    if kind == "demos":
        prompts = [
            answer_prompt(e, "choice", [Example(id="d", row=2, question=f"Pick {i}.", options=["a", "b"], answer="B")])
            for i, e in enumerate(exs)
        ]
    else:
        prompts = [justify_prompt(e, "choice", ["A", "B", "A"][: 1 + i % 3]) for i, e in enumerate(exs)]
    _assert_reuse_matches_full_forward(engine, prompts, [len(e.options) for e in exs])


def test_a_rows_scores_do_not_depend_on_the_other_prompts_of_the_call(engine):
    """Resumed or sharded runs score a row in another company; its (rounded) scores must not change."""
    exs = _examples(10)
    # rows with and without demos, so several system messages (prefix groups) are in one call
    demos = [
        Example(id=f"d{i}", row=2, question=f"Pick {i}.", options=["tiger", "copper"], answer="B") for i in range(3)
    ]
    prompts = [answer_prompt(e, "choice", demos[: i % 3]) for i, e in enumerate(exs)]
    n = [len(e.options) for e in exs]
    together = engine.score_options(prompts, n, None)
    for idx in ([3], [0, 7], [9, 1, 4, 5]):
        alone = engine.score_options([prompts[i] for i in idx], [n[i] for i in idx], None)
        for i, d in zip(idx, alone, strict=True):
            assert np.round(d, 6).tolist() == np.round(together[i], 6).tolist()


def test_adapter_names_that_are_module_attributes_work(tiny_model, tmp_path):
    """`semievol eval --adapter` registers its adapter as 'eval', an attribute of every torch Module."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from semievol.engines import make_engine

    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "adapter")
    engine = make_engine("hf", model=str(tiny_model), dtype="fp32", batch_size=4, quiet=True)
    for name in ("eval", "train", "warm-1"):
        engine.add_adapter(name, str(tmp_path / "adapter"))
    prompts = [answer_prompt(e, "choice") for e in _examples(3)]
    n = [len(e.options) for e in _examples(3)]
    base = engine.score_options(prompts, n, None)
    tuned = engine.score_options(prompts, n, "eval")
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(base, tuned, strict=True))


def test_batches_keep_to_the_token_budget(engine):
    """Long prompts go in smaller batches: rows x padded width never passes batch_tokens (a lone row may)."""
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(5, 400, size=57)] + [900]
    before = (engine.batch_size, engine.batch_tokens)
    try:
        engine.batch_size, engine.batch_tokens = 16, 1000
        batches = list(engine._batches(lengths, "t", extra=20))
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            width = max(lengths[i] for i in b) + 20
            assert len(b) <= 16 and (len(b) == 1 or len(b) * width <= 1000)
            assert lengths[b[0]] == max(lengths[i] for i in b)
        assert [len(b) for b in batches][0] == 1  # the 900-token prompt alone
        engine.batch_tokens = 0  # no budget: only the row cap
        assert [len(b) for b in engine._batches(lengths, "t")][:3] == [16, 16, 16]
        # scores do not depend on the budget
        exs = _examples(9)
        prompts = [answer_prompt(e, "choice") for e in exs]
        n = [len(e.options) for e in exs]
        engine.batch_tokens = 0
        wide = engine.score_options(prompts, n, None)
        engine.batch_tokens = 64
        narrow = engine.score_options(prompts, n, None)
        for a, b in zip(wide, narrow, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    finally:
        engine.batch_size, engine.batch_tokens = before
