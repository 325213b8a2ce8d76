"""Pseudo-labelling cost: semievol against the reference procedure, with the embedded model on this machine.

    python benchmarks/throughput.py --data-dir ../shared/data --tasks fpb,arc --questions 64 --reference-questions 8

Per task, one warm adapter is trained (SFT on the labeled split for a few steps, cached in
runs/throughput/<task>/sft) and then, each in its own child process so peak memory is its own:

- semievol: propagate (the four configurations, option scoring, retrieved demos) and select
  (self-justification of every question, entropy, 50th percentile) on N unlabeled questions, through the
  library's own stages. Model FLOP utilization = 2 x non-embedding parameters x tokens run through the
  model / time spent scoring, over the bf16 matmul peak measured in the same child (the lm-head runs only on
  the last position, so it is left out of the parameter count).
- reference: the released procedure's shape on the first M of those questions: for each of the same four
  configurations one sampled generation (temperature 1, up to 1024 new tokens), the answer extracted from
  the text, and for questions whose four answers disagree one sampled reflection (up to 1024 new tokens;
  the released code allows 4096, so the reference here is if anything faster than the original).

Both run on the same transformers engine (batched, length-sorted). Model loading is excluded from both.
Writes benchmarks/results/throughput.json and throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / "runs" / "throughput"
CONFIGS = ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1.0"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 6) -> float:
    """Median GFLOP/s of a square matmul in this process (with its thread settings)."""
    import statistics

    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def config(task: str, data_dir: str, n: int) -> dict[str, Any]:
    return {
        "run_dir": str(WORK / task),
        "seed": 0,
        "model": {"model": "embedded", "embedder": "embedded", "dtype": "auto"},
        "task": {"task": task, "data_dir": data_dir, "limit_unlabeled": n},
        "sft": {"lr": 1e-3, "max_steps": 24, "batch_size": 8},
        "propagate": {"k": 3, "configs": CONFIGS},
        "select": {"justify": "all", "confidence": "entropy", "rule": "percentile", "theta": 50},
    }


def make_ctx(task: str, data_dir: str, n: int) -> Any:
    from semievol.config import build_config
    from semievol.pipeline import make_context

    return make_context(build_config(config(task, data_dir, n)), quiet=True)


def ensure_warm(task: str, data_dir: str) -> Path:
    out = WORK / task / "sft"
    if (out / "adapter_config.json").exists():
        return out
    from semievol.stages.sft import run_sft

    ctx = make_ctx(task, data_dir, 8)
    tmp = WORK / task / "sft.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    run_sft(ctx, tmp)
    os.replace(tmp, out)
    return out


def _instrument(engine: Any) -> dict[str, float]:
    """Count tokens through the model (padding included) and time spent in option scoring."""
    stats = {"tokens": 0, "score_seconds": 0.0, "score_tokens": 0}
    emb = engine.model.get_input_embeddings()
    emb.register_forward_hook(lambda _m, inp, _o: stats.__setitem__("tokens", stats["tokens"] + inp[0].numel()))
    inner = engine.score_options

    def timed(*a: Any, **k: Any) -> Any:
        before, t = stats["tokens"], time.perf_counter()
        out = inner(*a, **k)
        stats["score_seconds"] += time.perf_counter() - t
        stats["score_tokens"] += stats["tokens"] - before
        return out

    engine.score_options = timed
    return stats


def non_embedding_params(model: Any) -> int:
    emb = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not emb and p.data_ptr() != emb.data_ptr())


def part_semievol(task: str, data_dir: str, n: int, m: int) -> dict[str, Any]:
    from semievol.answers import answers_match
    from semievol.jsonio import read_jsonl
    from semievol.runctx import Adapter
    from semievol.stages.propagate import run_propagate
    from semievol.stages.select import run_select

    warm = Adapter("warm", WORK / task / "sft", "bench")
    ctx = make_ctx(task, data_dir, n)
    engine = ctx.get_engine()
    ctx.adapter(warm)  # loading the adapter is set-up, as loading the model is
    peak = {"bf16": matmul_peak("bfloat16"), "fp32": matmul_peak("float32")}
    stats = _instrument(engine)
    out = WORK / task / "semievol"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(WORK / task / "cache", ignore_errors=True)
    t = time.perf_counter()
    votes = run_propagate(ctx, out / "propagate", list(ctx.task.labeled.examples), warm)
    t_prop = time.perf_counter() - t
    pl = run_select(ctx, votes, out / "select", warm)
    seconds = time.perf_counter() - t
    rows = read_jsonl(pl)
    gold = {e.id: e.answer for e in ctx.task.unlabeled.examples}
    correct = [answers_match(r["answer"], gold[r["id"]], "choice") for r in rows]
    sel = [c for c, r in zip(correct, rows, strict=True) if r["selected"]]
    subset = set(list(gold)[:m])  # the reference's M questions: the first M of the same rows
    first = [c for c, r in zip(correct, rows, strict=True) if r["id"] in subset]
    params = non_embedding_params(engine.model)
    flops = 2 * params * stats["score_tokens"] / stats["score_seconds"] / 1e9
    return {
        "questions": len(rows),
        "seconds": seconds,
        "propagate_seconds": t_prop,
        "per_question_s": seconds / len(rows),
        "accuracy_all": sum(correct) / len(correct),
        "accuracy_selected": sum(sel) / max(1, len(sel)),
        "accuracy_on_reference_subset": sum(first) / max(1, len(first)),
        "score_seconds": stats["score_seconds"],
        "score_tokens": stats["score_tokens"],
        "tokens": stats["tokens"],
        "non_embedding_params": params,
        "achieved_gflops": flops,
        "matmul_peak_gflops": peak,
        "mfu_vs_bf16_peak": flops / peak["bf16"],
        "dtype": str(engine.dtype).replace("torch.", ""),
        "threads": __import__("torch").get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
    }


def part_reference(task: str, data_dir: str, n: int, m: int, max_new_tokens: int) -> dict[str, Any]:
    from collections import Counter

    from semievol.answers import LETTERS, answers_match, extract_letter
    from semievol.config import parse_answer_config
    from semievol.models import load_embedder
    from semievol.prompts import Prompt, answer_prompt, justify_prompt
    from semievol.retrieval import embed, nearest

    warm = WORK / task / "sft"
    ctx = make_ctx(task, data_dir, n)
    engine = ctx.get_engine()
    ctx.adapter("warm", warm)
    exs = ctx.task.unlabeled.examples[:m]
    pool = ctx.task.labeled.examples
    emb = load_embedder("embedded")
    nn, _ = nearest(embed([e.question for e in pool], emb), embed([e.question for e in exs], emb), 3, "numpy")
    gen_tokens = 0
    t = time.perf_counter()
    answers: list[list[str | None]] = [[] for _ in exs]
    texts: list[list[str]] = [[] for _ in exs]
    for ci, c in enumerate(parse_answer_config(x) for x in CONFIGS):
        prompts = []
        for i, e in enumerate(exs):
            p = answer_prompt(e, "choice", [pool[j] for j in nn[i][: c.demos]])
            prompts.append(Prompt(p.messages, ""))  # free generation, as the reference does
        samples = engine.generate(prompts, 1, 1.0, 1000 + ci, max_new_tokens, "warm" if c.model == "warm" else None)
        for i, s in enumerate(samples):
            answers[i].append(extract_letter(s[0].text, LETTERS[: len(exs[i].options)]))
            texts[i].append(s[0].text)
            gen_tokens += len(s[0].logprobs)
    disagree = [i for i, a in enumerate(answers) if len(set(a)) > 1]
    final = [Counter(a).most_common(1)[0][0] for a in answers]
    if disagree:
        prompts = [
            Prompt(justify_prompt(exs[i], "choice", [a or "(no answer)" for a in answers[i]]).messages, "")
            for i in disagree
        ]
        samples = engine.generate(prompts, 1, 1.0, 2000, max_new_tokens, "warm")
        for i, s in zip(disagree, samples, strict=True):
            gen_tokens += len(s[0].logprobs)
            final[i] = extract_letter(s[0].text, LETTERS[: len(exs[i].options)]) or final[i]
    seconds = time.perf_counter() - t
    correct = [answers_match(f, e.answer, "choice") for f, e in zip(final, exs, strict=True)]
    return {
        "questions": len(exs),
        "seconds": seconds,
        "per_question_s": seconds / len(exs),
        "accuracy": sum(correct) / len(correct),
        "disagreeing": len(disagree),
        "generated_tokens": gen_tokens,
        "no_answer_extracted": sum(a is None for row in answers for a in row),
        "max_new_tokens": max_new_tokens,
        "peak_rss_mb": peak_rss_mb(),
    }


def child(part: str, task: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        part,
        "--tasks",
        task,
        "--data-dir",
        args.data_dir,
        "--questions",
        str(args.questions),
        "--reference-questions",
        str(args.reference_questions),
        "--max-new-tokens",
        str(args.max_new_tokens),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(res: dict[str, Any]) -> str:
    L = [
        f"Pseudo-labelling cost with the embedded SmolLM2-135M-Instruct; {res['machine']}; commands: "
        + "; ".join(sorted({f"`{r.get('command', res['command'])}`" for r in res["tasks"].values()}))
        + ".",
        "",
        "| task | semievol s/question (N) | reference s/question (M) | ratio | pseudo-label accuracy semievol: all / on the reference's M / selected | reference accuracy (M) | reference questions reflected | MFU while scoring (vs bf16 peak) | peak RSS semievol / reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, r in res["tasks"].items():
        s, f = r["semievol"], r["reference"]
        L.append(
            f"| {task} | {s['per_question_s']:.3f} ({s['questions']}) | {f['per_question_s']:.2f} ({f['questions']}) | "
            f"{f['per_question_s'] / s['per_question_s']:.0f}x | {100 * s['accuracy_all']:.1f}% / "
            f"{100 * s['accuracy_on_reference_subset']:.1f}% / {100 * s['accuracy_selected']:.1f}% | "
            f"{100 * f['accuracy']:.1f}% | {f['disagreeing']} of {f['questions']} | "
            f"{100 * s['mfu_vs_bf16_peak']:.0f}% ({s['achieved_gflops']:.0f} of {s['matmul_peak_gflops']['bf16']:.0f} GFLOP/s; "
            f"fp32 peak {s['matmul_peak_gflops']['fp32']:.0f}; engine dtype {s['dtype']}) | "
            f"{s['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f} MB |"
        )
    L += [
        "",
        "semievol's time covers propagate (4 configurations, demos retrieved with MiniLM) and select (one "
        "self-justification per question); the reference's covers its 4 sampled generations and the reflections. "
        "The reference runs on the first M of the N questions (the same rows), so both accuracies are given on those M. "
        "MFU counts 2 x non-embedding parameters per token run through the model (padding included) during option "
        "scoring. Peak RSS is each child process's maximum resident set, model and embedder included.",
    ]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--tasks", default="fpb,arc")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--reference-questions", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=1024)
    ap.add_argument("--child", choices=["warm", "semievol", "reference"])
    ap.add_argument("--update", action="store_true", help="keep the other tasks' rows of an earlier results file")
    args = ap.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    if args.child:
        task = args.tasks
        if args.child == "warm":
            ensure_warm(task, data_dir)
            print(json.dumps({"ok": True}))
        elif args.child == "semievol":
            print(json.dumps(part_semievol(task, data_dir, args.questions, args.reference_questions)))
        else:
            print(
                json.dumps(
                    part_reference(task, data_dir, args.questions, args.reference_questions, args.max_new_tokens)
                )
            )
        return
    res: dict[str, Any] = {"machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU", "tasks": {}}
    dest = HERE / "results" / "throughput.json"
    if args.update and dest.exists():  # re-measure some tasks, keep the others' rows
        res = json.loads(dest.read_text())
    res["command"] = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    for task in args.tasks.split(","):
        child("warm", task, args)
        res["tasks"][task] = {
            "semievol": child("semievol", task, args),
            "reference": child("reference", task, args),
            "command": res["command"],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        print(task, json.dumps(res["tasks"][task]), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    dest.write_text(json.dumps(res, indent=2))
    (HERE / "results" / "throughput.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
