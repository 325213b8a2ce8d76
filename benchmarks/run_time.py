"""A whole FPB run, stage by stage: wall time, tokens, achieved FLOP/s against this machine's matmul peaks, peak
resident memory, and the accuracies (so a speed-up that changes results shows).

    python benchmarks/run_time.py --data-dir ../shared/data --label after [--limit-unlabeled 0] [--limit-test 0]

Each stage command (sft, propagate, select, evolve, evaluate: the last trains the compute-matched SFT first) runs
in a child process of its own, so its peak resident memory is its own. Tokens: training stages count the rows'
tokens (prompt included, padding not, from the adapter's ``train_log.jsonl``); the other stages count every token
the model's embedding layer saw (padding included, a shared prefix as often as it was run). FLOPs count the tokens
run through the model (for training: padding included, a shared prefix once per micro-batch): 2 x the
non-embedding parameters per token for inference, 4 x for LoRA training (forward, and the backward pass through the
frozen base to the adapters; the adapters' own weight gradients are negligible). Peaks: a 2048^3 matmul in bf16
and fp32 with the same threads, measured at the start of the run.

A run with ``--label before`` on the code before a change and ``--label after`` on the code after it, one right
after the other, are put side by side in ``run_time.md``: to run the older code, point PYTHONPATH at its
``src`` (``git worktree add /tmp/old COMMIT``, then ``PYTHONPATH=/tmp/old/src python benchmarks/run_time.py
--label before ...``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import time
from pathlib import Path
from queue import Empty
from typing import Any

from throughput import matmul_peak, non_embedding_params

OUT = Path(__file__).resolve().parent / "results" / "run_time"
STAGE_COMMANDS = ("sft", "propagate", "select", "evolve", "evaluate")
INFERENCE = ("propagate", "select", "evaluate")


def config(run_dir: Path, data_dir: str, limit_labeled: int, limit_unlabeled: int, limit_test: int) -> dict[str, Any]:
    """examples/fpb.yaml's settings, with the pool and test sizes of this measurement."""
    return {
        "run_dir": str(run_dir),
        "seed": 0,
        "model": {"model": "embedded", "embedder": "embedded"},
        "task": {
            "task": "fpb",
            "data_dir": data_dir,
            "limit_labeled": limit_labeled,
            "limit_unlabeled": limit_unlabeled,
            "limit_test": limit_test,
        },
        "sft": {"lr": 1e-3, "epochs": 2, "batch_size": 8, "lora_r": 16},
        "propagate": {"k": 3, "configs": ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1.0"]},
        "select": {"justify": "all", "confidence": "entropy", "rule": "percentile", "theta": 50},
        "evolve": {"mode": "fresh", "rounds": 1},
        "evaluate": {"models": ["base", "warm", "evolved", "sft_matched"]},
    }


def peaks_child(queue: Any) -> None:
    import torch

    queue.put(
        {
            "bf16_gflops": matmul_peak("bfloat16"),
            "fp32_gflops": matmul_peak("float32"),
            "threads": torch.get_num_threads(),
        }
    )


def stage_child(cfg: dict[str, Any], command: str, queue: Any) -> None:
    """Run one stage command in this (fresh) process and report what it cost."""
    from semievol.config import build_config
    from semievol.pipeline import make_context, run

    ctx = make_context(build_config(cfg), quiet=True, need_test=command == "evaluate")
    seen = {"tokens": 0}
    params = 0
    if command in INFERENCE:
        engine = ctx.get_engine()
        model = engine.model  # type: ignore[attr-defined]
        params = non_embedding_params(model)

        def count(_m: Any, inp: Any, _o: Any) -> None:
            seen["tokens"] += inp[0].numel()

        model.get_input_embeddings().register_forward_hook(count)
    t = time.perf_counter()
    run(ctx, (command,))
    queue.put(
        {
            "command": command,
            "seconds": time.perf_counter() - t,
            "timings": ctx.timings,
            "inference_tokens": seen["tokens"],
            "params": params,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def budget_child(cfg: dict[str, Any], queue: Any) -> None:
    """Where a question's prompt tokens go: per pass (each configuration and the justification), its tokens,
    how many of them are a shared prefix the engine runs once per batch, and what the demos take. Demos are
    the labeled rows after the question's position (the run retrieves nearest ones of similar length)."""
    from semievol.config import build_config, parse_answer_config
    from semievol.engines import make_engine
    from semievol.pipeline import make_context
    from semievol.prompts import answer_prompt, justify_prompt

    ctx = make_context(build_config(cfg), quiet=True)
    engine: Any = make_engine("hf", model="embedded", quiet=True)
    labeled = list(ctx.task.labeled.iter_examples())
    rows = list(ctx.task.unlabeled.iter_examples())[:50]
    passes: dict[str, list[tuple[int, int, int]]] = {}
    for i, ex in enumerate(rows):
        demos = [labeled[(i + j) % len(labeled)] for j in range(3)]
        prompts = {
            c: answer_prompt(ex, "choice", demos[: parse_answer_config(c).demos]) for c in cfg["propagate"]["configs"]
        }
        prompts["justify"] = justify_prompt(ex, "choice", ["A", "B", "C", "A"])
        bare = len(engine.encode(answer_prompt(ex, "choice")))
        for name, p in prompts.items():
            ids = engine.encode(p)
            demo_tokens = len(ids) - bare if name != "justify" else 0
            passes.setdefault(name, []).append((len(ids), engine._system_tokens(p, ids), demo_tokens))
    queue.put(
        {
            name: {
                "tokens": statistics.mean(t for t, _, _ in v),
                "shared_prefix": statistics.mean(s for _, s, _ in v),
                "demos_and_candidates": statistics.mean(d for _, _, d in v),
            }
            for name, v in passes.items()
        }
    )


def in_child(target: Any, *args: Any) -> dict[str, Any]:
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    p = spawn.Process(target=target, args=(*args, queue))
    p.start()
    while True:  # a child that dies before it reports must not leave this process waiting for ever
        try:
            res = queue.get(timeout=5)
            break
        except Empty:
            if not p.is_alive():
                raise SystemExit(f"{target.__name__}{args[1:]} exited with {p.exitcode}") from None
    p.join()
    return res


def train_tokens(stage_dir: Path) -> tuple[int, int, int]:
    """(the rows' tokens, tokens run through the model, steps) of the adapter trained in ``stage_dir``, from its
    train log; a shared prompt prefix run once per micro-batch counts once in the second (older logs: as the
    first)."""
    log = stage_dir / "train_log.jsonl"
    if not log.exists():
        return 0, 0, 0
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    tokens = sum(int(r["tokens"]) for r in rows)
    return tokens, sum(int(r.get("computed_tokens", r["tokens"])) for r in rows), len(rows)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(args.work) / args.label
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = config(run_dir, args.data_dir, args.limit_labeled, args.limit_unlabeled, args.limit_test)
    peaks = in_child(peaks_child)
    budget = in_child(budget_child, cfg)
    started = time.perf_counter()
    commands = [in_child(stage_child, cfg, c) for c in STAGE_COMMANDS]
    total = time.perf_counter() - started
    params = max(c["params"] for c in commands) or None
    stages = []
    for c in commands:
        for name, seconds in c["timings"].items():
            tokens, computed, steps = train_tokens(run_dir / name)
            inference = tokens == 0
            if inference:
                tokens = computed = c["inference_tokens"]
            flops = (2 if inference else 4) * (params or 0) * computed
            gflops = flops / seconds / 1e9 if seconds else 0.0
            stages.append(
                {
                    "stage": name,
                    "command": c["command"],
                    "seconds": seconds,
                    "tokens": tokens,
                    "computed_tokens": computed,
                    "steps": steps,
                    "tokens_per_s": tokens / seconds if seconds else 0.0,
                    "gflops": gflops,
                    "of_bf16_peak": gflops / peaks["bf16_gflops"],
                    "of_fp32_peak": gflops / peaks["fp32_gflops"],
                    "peak_rss_mb": c["peak_rss_mb"],
                }
            )
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    accuracy = {name: rec.get("accuracy") for name, rec in metrics["models"].items()}
    pl = metrics.get("pseudo_labels") or {}
    return {
        "label": args.label,
        "machine": machine(),
        "command": command_line(args),
        "rows": split_sizes(cfg),
        "peaks": peaks,
        "prompt_tokens_per_question": budget,
        "wall_seconds": total,
        "stages": stages,
        "accuracy": accuracy,
        "pseudo_labels": {
            "all": (pl.get("all") or {}).get("accuracy"),
            "selected": (pl.get("selected") or {}).get("accuracy"),
            "coverage": pl.get("coverage"),
            "per_config": {c: r.get("accuracy") for c, r in (pl.get("per_config") or {}).items()},
        },
        "verdict": metrics.get("verdict"),
    }


def split_sizes(cfg: dict[str, Any]) -> dict[str, int]:
    from semievol.config import build_config
    from semievol.pipeline import make_context

    task = make_context(build_config(cfg), quiet=True, need_test=True).task
    return {k: len(getattr(task, k)) for k in ("labeled", "unlabeled", "test")}


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        units = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    except OSError:
        units = []
    return f"{name}, {os.cpu_count()} cores, {'+'.join(units) or 'no bf16 units'}, no GPU"


def command_line(args: argparse.Namespace) -> str:
    return (
        f"python benchmarks/run_time.py --data-dir {args.data_dir} --label {args.label} "
        f"--limit-labeled {args.limit_labeled} --limit-unlabeled {args.limit_unlabeled} --limit-test {args.limit_test}"
    )


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["# A whole FPB run, stage by stage", ""]
    for label, r in results.items():
        rows = r["rows"]
        lines += [
            f"## {label}",
            "",
            f"{r['machine']}; torch threads {r['peaks']['threads']}; matmul peaks bf16 "
            f"{r['peaks']['bf16_gflops']:.0f} GFLOP/s, fp32 {r['peaks']['fp32_gflops']:.0f}; rows labeled / "
            f"unlabeled / test {rows['labeled']} / {rows['unlabeled']} / {rows['test']}; `{r['command']}`",
            "",
            "| stage | seconds | tokens | tokens/s | GFLOP/s | of bf16 peak | of fp32 peak | peak RSS (MB) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['stage']} | {s['seconds']:.0f} | {s['tokens']} | {s['tokens_per_s']:.0f} | {s['gflops']:.0f} | "
            f"{s['of_bf16_peak']:.0%} | {s['of_fp32_peak']:.0%} | {s['peak_rss_mb']:.0f} |"
            for s in r["stages"]
        ]
        lines.append(f"| **whole run** (five processes) | {r['wall_seconds']:.0f} | | | | | | |")
        budget = r["prompt_tokens_per_question"]
        lines += [
            "",
            "Prompt tokens per unlabeled question (mean of 50 questions, demos the labeled rows after each):",
            "",
            "| pass | tokens | of which a shared prefix (run once per batch) | of which demos |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {b['tokens']:.0f} | {b['shared_prefix']:.0f} | {b['demos_and_candidates']:.0f} |"
            for name, b in budget.items()
        ]
        own = sum(b["tokens"] - b["shared_prefix"] for b in budget.values())
        lines.append(
            f"| **all passes** | {sum(b['tokens'] for b in budget.values()):.0f} | | {own:.0f} computed per question |"
        )
        acc = ", ".join(f"{k} {v:.1%}" for k, v in r["accuracy"].items() if v is not None)
        pl = r["pseudo_labels"]
        per = ", ".join(f"{c} {v:.1%}" for c, v in pl["per_config"].items())
        lines += [
            "",
            f"Test accuracy: {acc}.",
            f"Pseudo-labels right: all {pl['all']:.1%}, selected {pl['selected']:.1%} (coverage "
            f"{pl['coverage']:.0%}); per configuration {per}.",
            "",
        ]
    if "before" in results and "after" in results:
        b, a = results["before"], results["after"]
        lines += ["## Side by side", "", "| stage | before (s) | after (s) | speed-up |", "|---|---|---|---|"]
        after = {s["stage"]: s for s in a["stages"]}
        for s in b["stages"]:
            if s["stage"] in after and after[s["stage"]]["seconds"]:
                x = after[s["stage"]]["seconds"]
                lines.append(f"| {s['stage']} | {s['seconds']:.0f} | {x:.0f} | {s['seconds'] / x:.2f}x |")
        lines.append(
            f"| whole run | {b['wall_seconds']:.0f} | {a['wall_seconds']:.0f} | "
            f"{b['wall_seconds'] / a['wall_seconds']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--label", default="after", help="name of this measurement (before, after, ...)")
    ap.add_argument("--limit-labeled", type=int, default=0, help="0 = every labeled row (452)")
    ap.add_argument("--limit-unlabeled", type=int, default=0, help="0 = every unlabeled row (1,359)")
    ap.add_argument("--limit-test", type=int, default=0, help="0 = every test row (453)")
    ap.add_argument("--work", default="runs/run_time", help="where the run folders go")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = measure(args)
    (out / f"{args.label}.json").write_text(json.dumps(res, indent=2))
    results = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"), key=lambda p: p.stem != "before")}
    (out / "run_time.md").write_text(markdown(results))
    print(markdown({args.label: res}))


if __name__ == "__main__":
    main()
