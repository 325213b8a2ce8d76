"""Shared fixtures: a tiny random-weight Llama with the embedded model's tokenizer, and small task files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

# property tests check what a function returns, not how fast: on a loaded 2-core machine one example can take
# longer than Hypothesis's default 200 ms deadline (test_answers failed that way beside a benchmark)
settings.register_profile("semievol", deadline=None, max_examples=200)
settings.load_profile("semievol")

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    env = os.environ.get("SEMIEVOL_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("the shared data folder (../shared/data or SEMIEVOL_DATA_DIR) is not here")
    return d


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Llama (hidden size 32) with random weights and SmolLM2's tokenizer, saved to a folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from semievol.models import load_tokenizer, resolve_model

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = load_tokenizer(resolve_model("embedded"))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_choice_task(
    folder: Path, n_labeled: int = 16, n_unlabeled: int = 24, n_test: int = 12, seed: int = 0
) -> Path:
    """A small multiple-choice task as CSV files (labeled, unlabeled with gold answers, test)."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["apple", "river", "stone", "cloud", "engine", "violin", "tiger", "copper", "garden", "winter"]
    for split, n in (("labeled", n_labeled), ("unlabeled", n_unlabeled), ("test", n_test)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "question", "options", "answer", "extra"])
            for i in range(n):
                a, b = rng.sample(words, 2)
                q = f"{split} {i}: which word comes first in the alphabet, {a} or {b}?"
                w.writerow([f"{split}-{i}", q, json.dumps([a, b, "neither"]), "A" if a < b else "B", "x"])
    return folder


@pytest.fixture
def choice_task(tmp_path) -> Path:
    return write_choice_task(tmp_path / "task")


def tiny_config_dict(tiny_model: Path, task: Path, run_dir: Path) -> dict:
    """A run config for the tiny model and a task folder from ``write_choice_task``: seconds per stage."""
    return {
        "run_dir": str(run_dir),
        "seed": 0,
        "recipe": "paper",  # the paper's procedure: 'auto' would give these few labeled rows 'few_labels'
        "model": {"model": str(tiny_model), "dtype": "fp32", "embedder": "hash", "batch_size": 8},
        "task": {
            "labeled": str(task / "labeled.csv"),
            "unlabeled": str(task / "unlabeled.csv"),
            "test": str(task / "test.csv"),
        },
        "sft": {"lr": 5e-3, "epochs": 1, "batch_size": 4, "micro_batch_size": 4, "max_length": 256},
        "propagate": {"k": 2, "chunk_size": 10},
    }


def padded_batch(data: list[tuple[list[int], list[int]]], pad_id: int):
    """(input_ids, attention_mask, labels) tensors for tokenized (ids, labels) pairs, right-padded as the
    training loop pads them."""
    import torch

    width = max(len(x) for x, _ in data)
    ids = torch.full((len(data), width), pad_id)
    labels = torch.full((len(data), width), -100)
    mask = torch.zeros((len(data), width), dtype=torch.long)
    for r, (x, y) in enumerate(data):
        ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, mask, labels


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def stub_manifest(folder: Path, stage: str) -> None:
    """Mark a hand-made stage folder finished (for tests that build run directories without a model)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(
        json.dumps({"stage": stage, "fingerprint": "test", "files": [], "digests": {}})
    )
