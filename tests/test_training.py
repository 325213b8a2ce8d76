"""LoRA training on a tiny random Llama: weights that should move move, frozen ones stay, output is a PEFT folder."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import padded_batch

from semievol.config import TrainConfig
from semievol.models import ModelSource
from semievol.prompts import training_pair
from semievol.tasks import Example
from semievol.training import (
    TrainingError,
    length_grouped_batches,
    split_by_tokens,
    tokenize_pairs,
    train_lora,
)
from semievol.training_speed import shared_prefix


def _pairs(n=12):
    exs = [Example(id=str(i), question=f"Question {i}?", options=["yes", "no"], answer="AB"[i % 2]) for i in range(n)]
    return [training_pair(e, e.answer, "choice", False) for e in exs]


def test_response_only_loss_masks_the_prompt(tiny_model):
    from semievol.models import load_tokenizer

    tok = load_tokenizer(ModelSource(str(tiny_model)))
    ((ids, labels),) = tokenize_pairs(tok, _pairs(1), 512)
    assert len(ids) == len(labels)
    target = [t for t in labels if t != -100]
    assert tok.decode(target).startswith("Answer: A")
    n_prompt = labels.index(target[0])
    assert all(t == -100 for t in labels[:n_prompt]) and n_prompt > 10


def test_length_grouped_batches_cover_every_example_once():
    lengths = [5, 50, 7, 48, 6, 49, 8, 51] * 10
    batches = length_grouped_batches(lengths, 4, seed=1, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sorted(spread)[len(spread) // 2] <= 3  # most batches hold similar lengths


def test_lora_moves_adapter_weights_and_leaves_base_frozen(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=4, micro_batch_size=2, max_length=256)
    res = train_lora(ModelSource(str(tiny_model)), _pairs(), cfg, tmp_path / "adapter", seed=0)
    out = res.adapter_dir
    assert {"adapter_config.json", "adapter_model.safetensors", "train_log.jsonl", "train_summary.json"} <= {
        p.name for p in out.iterdir()
    }
    assert res.steps == 6  # 12 examples / batch 4 = 3 steps per epoch, 2 epochs
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(r["loss"] > 0 for r in log)

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    base_sd = base.state_dict()
    moved = 0
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            moved += int(p.abs().sum().item() > 0)  # lora_B starts at zero
        elif "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base_sd[key]), f"frozen weight {name} changed"
    assert moved > 0
    ids = torch.tensor([[1, 2, 3, 4]])
    assert not torch.allclose(base(ids).logits, peft(ids).logits)


def test_non_finite_loss_stops_and_writes_nothing(tiny_model, tmp_path):
    cfg = TrainConfig(lr=1e30, epochs=3, batch_size=2, micro_batch_size=2, warmup_ratio=0.0, max_length=256)
    with pytest.raises(TrainingError, match="nothing was written"):
        train_lora(ModelSource(str(tiny_model)), _pairs(8), cfg, tmp_path / "adapter", seed=0)
    assert not (tmp_path / "adapter").exists()
    assert not (tmp_path / "adapter.tmp").exists()


def test_loss_from_the_selected_head_positions_equals_the_full_loss(tiny_model):
    """The output head run only where a target follows gives the full-logits loss and gradients."""
    from transformers import AutoModelForCausalLM

    from semievol.losses import response_loss
    from semievol.models import load_tokenizer

    tok = load_tokenizer(ModelSource(str(tiny_model)))
    data = tokenize_pairs(tok, _pairs(5), 256)
    ids, mask, labels = padded_batch(data, tok.pad_token_id)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    grads = []
    for select in (False, True):
        model.zero_grad()
        loss = response_loss(model, ids, mask, labels, False, select)
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (full, g_full), (sel, g_sel) = grads
    assert sel == pytest.approx(full, rel=1e-6) and full > 0
    for name, g in g_full.items():
        torch.testing.assert_close(g_sel[name], g, rtol=1e-4, atol=1e-6)


def test_shared_prefix_stops_before_the_first_target_and_needs_a_common_start():
    prompt = list(range(40))
    rows = [(prompt + [100 + i, 7, 8], [-100] * 41 + [7, 8]) for i in range(3)]
    assert shared_prefix(rows) == 40  # the rows part at token 40; their targets start at 41
    late = [(prompt + [7, 8], [-100] * 30 + [5] * 12)] + rows  # a target at position 30 caps the prefix at 29
    assert shared_prefix(late) == 29
    assert (
        shared_prefix([(prompt[:10] + [1] * 20, [-100] * 29 + [1]), (prompt[:10] + [2] * 20, [-100] * 29 + [2])]) == 0
    )
    assert shared_prefix(rows[:1]) == 0  # one row shares nothing with anything


@pytest.mark.parametrize("soft", [False, True])
def test_a_shared_prefix_run_once_gives_the_loss_and_gradients_of_the_whole_rows(tiny_model, soft):
    """The prefix's pass, its cache repeated for each row, and the rows' suffixes on top: the same loss and the
    same gradients as the whole rows, hard and soft targets alike."""
    from transformers import AutoModelForCausalLM

    from semievol.losses import response_loss, row_targets
    from semievol.models import load_tokenizer

    tok = load_tokenizer(ModelSource(str(tiny_model)))
    data = tokenize_pairs(tok, _pairs(5), 256)
    n = shared_prefix(data)
    assert n >= 20  # the system turn and the user turn's opening
    suffixes = [(x[n:], y[n:]) for x, y in data]
    dists = [[0.7, 0.3]] * 5 if soft else None
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    results = []
    for rows, prefix in ((data, None), (suffixes, torch.tensor([data[0][0][:n]]))):
        model.zero_grad()
        ids, mask, labels = padded_batch(rows, tok.pad_token_id)
        targets = row_targets(tok, rows, None, dists, "test")
        loss = response_loss(model, ids, mask, labels, False, True, targets, prefix)
        loss.backward()
        results.append((loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (whole, g_whole), (shared, g_shared) = results
    assert shared == pytest.approx(whole, rel=1e-5) and whole > 0
    assert g_shared.keys() == g_whole.keys()
    for name, g in g_whole.items():
        torch.testing.assert_close(g_shared[name], g, rtol=1e-4, atol=1e-6)


def test_split_by_tokens_keeps_order_and_the_budget():
    lengths = [10, 20, 30, 40, 100, 5]
    batch = [0, 1, 2, 3, 4, 5]
    assert split_by_tokens(batch, lengths, 0) == [batch]
    pieces = split_by_tokens(batch, lengths, 80)
    assert [i for p in pieces for i in p] == batch  # every row once, in order
    for p in pieces:  # padded size within the budget, except a lone row longer than it
        assert len(p) * max(lengths[i] for i in p) <= 80 or len(p) == 1
    assert pieces == [[0, 1], [2, 3], [4], [5]]  # 3 x 30 = 90 > 80; the 5-token row pads to 100 beside row 4


@pytest.mark.parametrize("memory", [{"micro_batch_tokens": 40}, {"gradient_checkpointing": True}])
def test_memory_settings_train_the_same_adapter(tiny_model, tmp_path, memory):
    """Splitting micro-batches by tokens, or recomputing activations, changes memory, not the result."""
    from safetensors.torch import load_file

    # fp32: under bf16 autocast (the default on CPUs with fast bf16) another split of the batch rounds otherwise
    common = dict(
        lr=1e-2,
        epochs=2,
        batch_size=4,
        micro_batch_size=4,
        max_length=256,
        lora_dropout=0.0,
        micro_batch_tokens=0,
        bf16="off",
    )
    pairs = _pairs()
    if "micro_batch_tokens" in memory:  # the budget must split this data's 4-row micro-batches, or nothing is tested
        from semievol.models import load_tokenizer

        lengths = [len(x) for x, _ in tokenize_pairs(load_tokenizer(ModelSource(str(tiny_model))), pairs, 256)]
        assert len(split_by_tokens([0, 1, 2, 3], lengths, memory["micro_batch_tokens"])) > 1
    res = [
        train_lora(ModelSource(str(tiny_model)), pairs, TrainConfig(**(common | extra)), tmp_path / str(k), seed=0)
        for k, extra in enumerate([{}, memory])
    ]
    logs = [[json.loads(x) for x in (r.adapter_dir / "train_log.jsonl").read_text().splitlines()] for r in res]
    assert [r["tokens"] for r in logs[0]] == [r["tokens"] for r in logs[1]]
    assert [r["loss"] for r in logs[0]] == pytest.approx([r["loss"] for r in logs[1]], rel=1e-4)
    a, b = (load_file(r.adapter_dir / "adapter_model.safetensors") for r in res)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5)
