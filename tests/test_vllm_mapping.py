"""The vLLM and Ray engines' request and output mapping, as pure functions (vLLM and Ray are not installed
here: the engines themselves run only on a GPU machine, see benchmarks/gpu/ray_vllm.py)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import pytest

from semievol.config import build_config
from semievol.engines import EngineError, make_engine
from semievol.engines import vllm_mapping as vm


@dataclass
class Logprob:  # the shape of vllm.sequence.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


LETTERS = [10, 11, 12, 13]  # token ids of ' A', ' B', ' C', ' D' in these tests


def test_option_distribution_is_the_softmax_over_the_letters_only():
    top = {10: Logprob(np.log(0.3)), 11: Logprob(np.log(0.1)), 99: Logprob(np.log(0.5)), 12: Logprob(np.log(0.1))}
    p, missing = vm.option_distribution(top, LETTERS, 3)
    assert missing == 0
    np.testing.assert_allclose(p, [0.6, 0.2, 0.2], atol=1e-12)


def test_ray_rows_carry_token_ids_as_strings_and_logprobs_as_dicts():
    top = {"10": {"logprob": -1.0, "rank": 1}, "11": {"logprob": -2.0, "rank": 2}}
    p, _ = vm.option_distribution(top, LETTERS, 2)
    np.testing.assert_allclose(p, np.exp([-1.0, -2.0]) / np.exp([-1.0, -2.0]).sum())


def test_a_letter_outside_the_top_list_gets_the_smallest_returned_logprob_and_is_counted():
    top = {10: -0.1, 99: -3.0, 11: -5.0}
    p, missing = vm.option_distribution(top, LETTERS, 4)
    assert missing == 2
    expected = np.exp([-0.1, -5.0, -5.0, -5.0])
    np.testing.assert_allclose(p, expected / expected.sum())
    with pytest.raises(ValueError):
        vm.option_distribution({}, LETTERS, 2)


def test_sampling_params_and_per_prompt_seeds():
    assert vm.generate_params(4, 0.0, 7, 32, [2])["n"] == 1  # greedy: one response, repeated by the engine
    p = vm.generate_params(4, 0.7, 7, 32, [2])
    assert p == {"n": 4, "temperature": 0.7, "seed": 7, "max_tokens": 32, "logprobs": 0, "stop_token_ids": [2]}
    assert vm.score_params() == {"max_tokens": 1, "temperature": 0.0, "logprobs": vm.TOP_LOGPROBS}
    assert vm.prompt_seed(0, "q1") == vm.prompt_seed(0, "q1") != vm.prompt_seed(0, "q2")
    assert vm.prompt_seed(0, "q1", 0) != vm.prompt_seed(0, "q1", 1) != vm.prompt_seed(1, "q1", 1)
    assert 0 <= vm.prompt_seed(123, "x") < 2**31


def test_a_sample_keeps_the_sampled_tokens_logprobs_up_to_the_stop_token():
    logprobs = [{5: Logprob(-0.5), 6: Logprob(-1.0)}, {7: Logprob(-0.25)}, {2: Logprob(-0.01)}]
    s = vm.sample_from_output("Answer: 3", [5, 7, 2], logprobs, stop_ids=[2])
    assert s.text == "Answer: 3" and s.logprobs == [-0.5, -0.25]
    assert vm.sample_from_output("", [], None, [2]).logprobs == []


def test_ray_rows_for_n_samples_and_back():
    rows = vm.sample_rows(["p0", "p1"], ["k0", "k1"], 3, 0.8, 5, 16, [2], "/adapters/warm")
    assert [r["semievol_index"] for r in rows] == list(range(6))
    assert all(r["model"] == "/adapters/warm" and r["sampling_params"]["n"] == 1 for r in rows)
    assert len({r["sampling_params"]["seed"] for r in rows}) == 6
    assert "model" not in vm.processor_row(0, "p", vm.score_params(), None)
    out = [
        {
            "semievol_index": r["semievol_index"],
            "generated_text": f"t{r['semievol_index']}",
            "generated_tokens": [7],
            "logprobs": [{"7": {"logprob": -0.1 * r["semievol_index"]}}],
        }
        for r in rows
    ]
    samples = vm.gather_samples(out[::-1], 2, 3, 0.8, [2])  # rows come back in any order
    assert [[s.text for s in per] for per in samples] == [["t0", "t1", "t2"], ["t3", "t4", "t5"]]
    assert samples[1][2].logprobs == [pytest.approx(-0.5)]
    greedy = vm.sample_rows(["p0"], ["k0"], 3, 0.0, 5, 16, [2], None)
    assert len(greedy) == 1
    back = vm.gather_samples(
        [{"semievol_index": 0, "generated_text": "g", "generated_tokens": [], "logprobs": None}], 1, 3, 0.0, [2]
    )
    assert [s.text for s in back[0]] == ["g", "g", "g"]
    with pytest.raises(ValueError):
        vm.gather_samples(out[:5], 2, 3, 0.8, [2])


def test_letter_token_ids_take_the_token_after_a_space():
    class Tok:
        def encode(self, text, add_special_tokens=False):
            return [100, ord(text[-1])] if text.startswith(" ") else [ord(text)]

    assert vm.letter_token_ids(Tok())[:2] == [ord("A"), ord("B")]


@pytest.mark.parametrize(
    ("engine", "extra", "module"), [("vllm", "semievol[vllm]", "vllm"), ("ray-vllm", "semievol[ray-vllm]", "vllm")]
)
def test_a_missing_engine_package_is_one_line_naming_the_extra(engine, extra, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    assert build_config({"model": {"engine": engine}}).model.engine == engine
    with pytest.raises(EngineError) as e:
        make_engine(engine, model="embedded")
    assert extra in str(e.value) and "\n" not in str(e.value)
