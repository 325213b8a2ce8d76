"""The CPU training speed-ups compute what they replace: dropout with the same keep rate and scale, and
frozen bf16 weights that give autocast's own numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semievol.training_speed import Int16Dropout, speed_up_lora


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_int16_dropout_keeps_each_element_with_probability_1_minus_p_and_rescales(p):
    torch.manual_seed(0)
    drop = Int16Dropout(p).train()
    x = torch.ones(400, 1000)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003  # 400,000 draws: 5 standard errors at p=0.5
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert y.shape == x.shape and y.dtype == x.dtype
    # neighbouring elements (lanes of one 64-bit draw) are independent: their joint keep rate is the product
    pairs = (kept[:, 0::2] & kept[:, 1::2]).float().mean().item()
    assert abs(pairs - (1 - p) ** 2) < 0.004
    assert torch.equal(drop.eval()(x), x)  # identity when not training


def test_int16_dropout_is_seeded_by_torchs_generator():
    x = torch.ones(3, 7, 11)
    torch.manual_seed(5)
    a = Int16Dropout(0.2).train()(x)
    torch.manual_seed(5)
    b = Int16Dropout(0.2).train()(x)
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_speed_up_lora_swaps_dropout_and_stores_frozen_weights_in_bf16_with_autocasts_numbers(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def lora(dropout: float):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", init_lora_weights=False)
        return get_peft_model(base, cfg).train()

    ids = torch.randint(10, 1000, (2, 12), generator=torch.Generator().manual_seed(1))
    plain, fast = lora(0.0), lora(0.0)
    speed_up_lora(fast, bf16=True)
    frozen = [m.base_layer.weight for m in fast.modules() if isinstance(getattr(m, "base_layer", None), nn.Linear)]
    assert frozen and all(w.dtype == torch.bfloat16 for w in frozen)
    assert all(p.dtype == torch.float32 for p in fast.parameters() if p.requires_grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = plain(input_ids=ids).logits, fast(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # the same bf16 values, stored instead of cast
    with_dropout = lora(0.1)
    speed_up_lora(with_dropout, bf16=False)
    drops = [d for m in with_dropout.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()]
    assert drops and all(isinstance(d, Int16Dropout) and d.p == 0.1 for d in drops)
    assert all(p.dtype == torch.float32 for p in with_dropout.parameters())  # no bf16 without autocast


@pytest.fixture
def eager_calls(monkeypatch) -> list[int]:
    """One entry per call of the Llama model's eager attention function, which still runs as before."""
    from transformers.models.llama import modeling_llama

    calls: list[int] = []
    eager = modeling_llama.eager_attention_forward
    monkeypatch.setattr(modeling_llama, "eager_attention_forward", lambda *a, **k: calls.append(1) or eager(*a, **k))
    return calls


def test_attention_for_runs_eager_attention_on_short_cpu_rows_with_sdpas_numbers(tiny_model, eager_calls):
    from transformers import AutoModelForCausalLM

    from semievol.training_speed import EAGER_MAX_KEYS, attention_for

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    ids = torch.randint(10, 1000, (3, 20), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0  # a padded row: eager's mask must hide the same keys as SDPA's

    def logits_and_grad(keys: int, enabled: bool = True):
        model.zero_grad()
        with attention_for(model, keys, enabled):
            inside = model.config._attn_implementation
            logits = model(input_ids=ids, attention_mask=mask).logits
        (logits[mask.bool()] ** 2).mean().backward()
        return inside, logits.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    n = len(eager_calls)
    assert logits_and_grad(EAGER_MAX_KEYS + 1)[0] == "sdpa" and len(eager_calls) == n  # long rows keep SDPA
    assert logits_and_grad(20, enabled=False)[0] == "sdpa" and len(eager_calls) == n
    _, want, want_grad = logits_and_grad(EAGER_MAX_KEYS + 1)
    inside, got, got_grad = logits_and_grad(20)
    assert inside == "eager" and len(eager_calls) == n + 2  # once per layer
    assert model.config._attn_implementation == "sdpa"  # restored after the block
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-3, atol=1e-6)
    eager_model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="eager")
    with attention_for(eager_model, 20):  # a model that chose its kernel keeps it
        assert eager_model.config._attn_implementation == "eager"


def test_training_runs_short_micro_batches_with_eager_attention_and_the_same_losses(tiny_model, tmp_path, eager_calls):
    import json

    from semievol.config import TrainConfig
    from semievol.models import ModelSource
    from semievol.prompts import training_pair
    from semievol.tasks import Example
    from semievol.training import train_lora

    exs = [Example(id=str(i), question=f"Question {i}?", options=["yes", "no"], answer="AB"[i % 2]) for i in range(8)]
    pairs = [training_pair(e, e.answer or "", "choice", False) for e in exs]
    logs = []
    for on in (False, True):
        cfg = TrainConfig(
            lr=1e-2, max_steps=3, batch_size=4, micro_batch_size=4, lora_dropout=0.0, bf16="off", eager_attention=on
        )
        res = train_lora(ModelSource(str(tiny_model)), pairs, cfg, tmp_path / str(on), seed=0)
        logs.append([json.loads(x)["loss"] for x in (res.adapter_dir / "train_log.jsonl").read_text().splitlines()])
        assert bool(eager_calls) == on
        # the rows share their system turn, so the eager path also runs on top of the prefix's cache
        assert json.loads((res.adapter_dir / "train_summary.json").read_text())["shared_prefix_tokens"] > 0
    assert logs[1] == pytest.approx(logs[0], rel=1e-4)
