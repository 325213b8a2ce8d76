"""The cache of model calls: keyed by (model, adapter, call, prompt, parameters), append-only, torn tail cut.

A run killed part way through select or evaluate must not repeat a chunk of calls it had finished, and
what it then writes must be byte-identical to an uninterrupted run. The deterministic fake engine stands
in for a model, wrapped to count the prompts it is asked about.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from semievol.config import build_config
from semievol.engines.cached import CALL_CHUNK, CachedEngine, CallCache
from semievol.engines.fake import FakeEngine
from semievol.pipeline import make_context
from semievol.prompts import answer_prompt
from semievol.runctx import Adapter
from semievol.stages.evaluate import predict
from semievol.stages.propagate import run_propagate
from semievol.stages.select import run_select
from semievol.tasks import Example


class CountingEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.scored: list[str] = []
        self.generated: list[str] = []

    def score_options(self, prompts, n_options, adapter):
        self.scored += [p.key() for p in prompts]
        return super().score_options(prompts, n_options, adapter)

    def generate(self, prompts, n, temperature, seed, max_new_tokens, adapter):
        self.generated += [p.key() for p in prompts]
        return super().generate(prompts, n, temperature, seed, max_new_tokens, adapter)


def _examples(n: int, options: bool = True) -> list[Example]:
    return [
        Example(
            id=f"q{i}",
            question=f"Question number {i}?",
            options=["yes", "no", "maybe"] if options else None,
            answer="A" if options else str(i),
        )
        for i in range(n)
    ]


def _keep_lines(path: Path, n: int, torn: bool = True) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:n]) + (lines[n][:17] if torn else b""))


def test_entries_read_back_and_a_torn_last_line_is_cut(tmp_path):
    path = tmp_path / "calls.jsonl"
    cache = CallCache(path, model="m")
    cache.put({"a": [0.5, 0.5], "b": {"text": "x", "logprobs": [-0.1]}})
    with open(path, "ab") as f:
        f.write(b'{"key": "c", "val')  # killed mid-write
    again = CallCache(path, model="m")
    assert again.entries == {"a": [0.5, 0.5], "b": {"text": "x", "logprobs": [-0.1]}}
    assert path.read_bytes().endswith(b"\n")  # the torn tail is gone, so the next append starts a clean line
    again.put({"c": 1})
    assert CallCache(path, model="m").entries["c"] == 1


def test_the_key_covers_model_adapter_call_prompt_and_parameters(tmp_path):
    a = CallCache(tmp_path / "a.jsonl", model="m1")
    b = CallCache(tmp_path / "b.jsonl", model="m2")
    k = a.key("warm-0123", "score_options", "prompt", 3)
    assert k == CallCache(tmp_path / "c.jsonl", model="m1").key("warm-0123", "score_options", "prompt", 3)
    others = {
        b.key("warm-0123", "score_options", "prompt", 3),
        a.key("warm-4567", "score_options", "prompt", 3),
        a.key(None, "score_options", "prompt", 3),
        a.key("warm-0123", "generate", "prompt", 3),
        a.key("warm-0123", "score_options", "prompt!", 3),
        a.key("warm-0123", "score_options", "prompt", 4),
    }
    assert k not in others and len(others) == 6


def test_only_whole_chunks_are_taken_from_the_cache(tmp_path):
    prompts = [answer_prompt(e, "choice") for e in _examples(10)]
    engine = CountingEngine()
    path = tmp_path / "calls.jsonl"
    first = CachedEngine(engine, CallCache(path, "m"), chunk=4).score_options(prompts, [3] * 10, "warm-x")
    assert len(engine.scored) == 10
    _keep_lines(path, 6)  # chunk 0 whole, chunk 1 half written, chunk 2 missing
    engine.scored.clear()
    cache = CallCache(path, "m")
    again = CachedEngine(engine, cache, chunk=4).score_options(prompts, [3] * 10, "warm-x")
    assert engine.scored == [p.key() for p in prompts[4:]]  # the half chunk is recomputed whole: same batches
    assert cache.hits == 4
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert sum(1 for _ in open(path)) == 10  # each call once in the file


def test_generated_samples_come_back_equal(tmp_path):
    prompts = [answer_prompt(e, "free") for e in _examples(5, options=False)]
    engine = CountingEngine()
    for n in (1, 3):  # one response per prompt, or several
        first = CachedEngine(engine, CallCache(tmp_path / "c.jsonl", "m"), chunk=2).generate(
            prompts, n, 0.0, 0, 32, None
        )
        engine.generated.clear()
        again = CachedEngine(engine, CallCache(tmp_path / "c.jsonl", "m"), chunk=2).generate(
            prompts, n, 0.0, 0, 32, None
        )
        assert engine.generated == []
        assert [len(r) for r in again] == [n] * len(prompts)
        assert [[(s.text, s.logprobs, s.mean_nll) for s in r] for r in first] == [
            [(s.text, s.logprobs, s.mean_nll) for s in r] for r in again
        ]


def test_predictions_are_not_recomputed(tmp_path):
    for kind, exs in (("choice", _examples(7)), ("free", _examples(7, options=False))):
        engine = CountingEngine()
        path = tmp_path / f"{kind}.jsonl"
        first = predict(CachedEngine(engine, CallCache(path, "m")), exs, kind, None, 32)
        assert len(engine.scored) + len(engine.generated) == 7
        engine = CountingEngine()
        assert predict(CachedEngine(engine, CallCache(path, "m")), exs, kind, None, 32) == first
        assert engine.scored == engine.generated == []
        assert predict(CountingEngine(), exs, kind, None, 32) == first  # no cache: the same predictions


def _ctx(task: Path, run_dir: Path, engine: CountingEngine):
    cfg = build_config(
        {
            "run_dir": str(run_dir),
            "seed": 0,
            "model": {"engine": "fake", "embedder": "hash"},
            "task": {"labeled": str(task / "labeled.csv"), "unlabeled": str(task / "unlabeled.csv")},
            "propagate": {"k": 2},
        }
    )
    return make_context(cfg, quiet=True, engine=engine)


def _warm(folder: Path, fp: str = "0123456789abcdef") -> Adapter:
    return Adapter("warm", folder, fp)


def test_select_killed_part_way_repeats_no_finished_chunk(tmp_path):
    from conftest import write_choice_task

    n = 2 * CALL_CHUNK + 20
    task = write_choice_task(tmp_path / "task", n_labeled=8, n_unlabeled=n, n_test=2)
    rd = tmp_path / "run"
    ctx = _ctx(task, rd, CountingEngine())
    votes = run_propagate(ctx, rd / "propagate", list(ctx.task.labeled.examples), _warm(tmp_path / "warm"))
    run_select(ctx, votes, rd / "full", _warm(tmp_path / "warm"))
    cache_file = rd / "cache" / "model_calls.jsonl"
    assert sum(1 for _ in open(cache_file)) == n

    # as if killed while appending the second chunk: one whole chunk and a torn line are on disk
    _keep_lines(cache_file, CALL_CHUNK + 30)
    engine = CountingEngine()
    ctx = _ctx(task, rd, engine)
    run_select(ctx, votes, rd / "resumed", _warm(tmp_path / "warm"))
    assert len(engine.scored) == n - CALL_CHUNK
    for name in ("pseudo_labels.jsonl", "selection.json"):
        assert (rd / "resumed" / name).read_bytes() == (rd / "full" / name).read_bytes(), name

    # a third run asks the engine nothing
    engine = CountingEngine()
    run_select(_ctx(task, rd, engine), votes, rd / "again", _warm(tmp_path / "warm"))
    assert engine.scored == []
    assert json.loads((rd / "again" / "selection.json").read_text()) == json.loads(
        (rd / "full" / "selection.json").read_text()
    )


def test_a_retrained_adapter_does_not_hit_old_entries(tmp_path):
    from conftest import write_choice_task

    task = write_choice_task(tmp_path / "task", n_labeled=8, n_unlabeled=10, n_test=2)
    rd = tmp_path / "run"
    ctx = _ctx(task, rd, CountingEngine())
    votes = run_propagate(ctx, rd / "propagate", list(ctx.task.labeled.examples), _warm(tmp_path / "warm"))
    run_select(ctx, votes, rd / "a", _warm(tmp_path / "warm"))
    engine = CountingEngine()
    ctx = _ctx(task, rd, engine)
    # another warm adapter (its stage fingerprint changed)
    run_select(ctx, votes, rd / "b", _warm(tmp_path / "warm", "fedcba9876543210"))
    assert len(engine.scored) == 10


def test_an_adapter_is_known_by_its_weights_not_its_name(tmp_path):
    from conftest import write_choice_task

    task = write_choice_task(tmp_path / "task", n_labeled=8, n_unlabeled=10, n_test=2)
    rd = tmp_path / "run"
    warm_a, warm_b = tmp_path / "warm_a", tmp_path / "warm_b"
    for folder, data in ((warm_a, b"weights a"), (warm_b, b"weights b")):
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(data)
    ctx = _ctx(task, rd, CountingEngine())
    votes = run_propagate(ctx, rd / "propagate", list(ctx.task.labeled.examples), _warm(warm_a))
    run_select(ctx, votes, rd / "a", _warm(warm_a))
    for folder, calls in ((warm_a, 0), (warm_b, 10)):  # same name and fingerprint, other weights: no hits
        engine = CountingEngine()
        run_select(_ctx(task, rd, engine), votes, rd / folder.name, _warm(folder))
        assert len(engine.scored) == calls, folder.name
