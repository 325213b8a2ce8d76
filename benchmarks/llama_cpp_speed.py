"""Is llama.cpp a faster path for pseudo-labelling than the hf engine on this CPU? (speed issue, item 4)

    python benchmarks/llama_cpp_speed.py --data-dir ../shared/data --dispatch-lib /tmp/lcpp_dl/bin \
        [--questions 48] [--rounds 3] [--threads 1]

What is timed is what pseudo-labelling spends its time on: the probabilities of the option letters after a
prompt. The prompts are the first N FPB unlabeled questions, each in three passes of a propagate run (no demos,
three demos, the justification with four candidates), tokenized once with the model's tokenizer; every
setting gets the same token ids and the same option-letter ids. Settings, each in its own child process (model
loading not timed, four warm-up prompts not timed), run in turns, ``--rounds`` times, so load on the machine
hits them alike; the figure is the median over rounds.

- ``hf``: semievol's engine as a run uses it (dequantised weights, bf16 where the CPU has it, batches of
  length-sorted prompts, the shared instructions run once per call).
- ``llama.cpp, generic wheel``: the llama-cpp-python wheel ``make test`` builds (``GGML_NATIVE=OFF``: AVX2,
  FMA, F16C, no AVX-512), on the GGUF as shipped (Q4_1), one prompt at a time, keeping the KV cache of the
  longest prefix a prompt shares with the one before (as its server does in a slot).
- ``llama.cpp, run-time dispatch``: the same llama.cpp built with ``GGML_BACKEND_DL=ON
  GGML_CPU_ALL_VARIANTS=ON`` (one CPU library per instruction set, the best one for the CPU chosen when the
  process starts, so the build cannot crash on an older CPU), once with the variant ggml picks for this CPU
  and once forced to its ``haswell`` variant (the generic wheel's instruction set), the same way.

``--dispatch-lib`` is the folder holding that build's libllama.so, libggml*.so and libggml-cpu-<variant>.so.
Build it from llama-cpp-python's source (its ``vendor/llama.cpp``), for example::

    cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON \
        -DGGML_CPU_ALL_VARIANTS=ON -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF
    ninja -C build llama ggml-cpu-haswell ggml-cpu-zen4   # or every variant: ninja -C build

llama-cpp-python 0.3.36 does not load such backends itself (abetlen/llama-cpp-python#2069); the child calls
ggml's ``ggml_backend_load`` through ctypes before it opens the model. Agreement: the share of prompts whose
most probable letter matches hf's, and the mean absolute difference of the letter probabilities (Q4_1
arithmetic against dequantised bf16). Writes benchmarks/results/llama_cpp_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
WARMUP = 4


def build_prompts(data_dir: str, n: int) -> dict[str, Any]:
    """Token ids of every pass of the first n FPB unlabeled questions, and the option-letter ids."""
    from semievol.config import TaskConfig
    from semievol.engines.hf import HFEngine
    from semievol.prompts import answer_prompt, justify_prompt
    from semievol.tasks import load_task

    task = load_task(TaskConfig(task="fpb", data_dir=data_dir), seed=0)
    labeled = list(task.labeled.iter_examples())
    rows = list(task.unlabeled.iter_examples())[:n]
    engine = HFEngine(model="embedded", quiet=True)
    passes = {
        "no demos": [answer_prompt(ex, "choice") for ex in rows],
        "3 demos": [
            answer_prompt(ex, "choice", [labeled[(i + j) % len(labeled)] for j in range(3)])
            for i, ex in enumerate(rows)
        ],
        "justify": [justify_prompt(ex, "choice", ["A", "B", "C", "A"]) for ex in rows],
    }
    return {
        "passes": {name: [engine.encode(p) for p in ps] for name, ps in passes.items()},
        "n_options": [len(ex.options) for ex in rows],
        "letter_ids": engine._letter_ids,
        "prompts": {name: [dataclasses.asdict(p) for p in ps] for name, ps in passes.items()},
    }


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# ------------------------------------------------------------------ children


def child_hf(work: dict[str, Any], threads: int) -> dict[str, Any]:
    import torch

    from semievol.engines.hf import HFEngine
    from semievol.prompts import Prompt

    torch.set_num_threads(threads)
    engine = HFEngine(model="embedded", quiet=True)
    n_opt = work["n_options"]
    prompts = {
        name: [Prompt(**{**p, "messages": tuple(map(tuple, p["messages"]))}) for p in ps]
        for name, ps in work["prompts"].items()
    }
    engine.score_options(prompts["no demos"][:WARMUP], n_opt[:WARMUP], None)
    probs, seconds = {}, 0.0
    for name, ps in prompts.items():
        t = time.perf_counter()
        got = engine.score_options(ps, n_opt, None)
        seconds += time.perf_counter() - t
        probs[name] = [g.tolist() for g in got]
    return {"seconds": seconds, "probs": probs, "variant": f"torch {torch.__version__}, {engine.dtype}"}


def load_dispatch_backend(lib_dir: Path, variant: str | None) -> str:
    """Register one CPU backend of a GGML_BACKEND_DL build: the named variant, or the best one for this CPU."""
    ggml = ctypes.CDLL(str(lib_dir / "libggml.so"), mode=ctypes.RTLD_GLOBAL)
    if variant:
        ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load.restype = ctypes.c_void_p
        if not ggml.ggml_backend_load(str(lib_dir / f"libggml-cpu-{variant}.so").encode()):
            raise SystemExit(f"{lib_dir}: cannot load libggml-cpu-{variant}.so")
        return variant
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path(str(lib_dir).encode())
    return "best for this CPU"


def child_llama(work: dict[str, Any], threads: int, lib_dir: str | None, variant: str | None) -> dict[str, Any]:
    chosen = "generic wheel"
    if lib_dir:
        os.environ["LLAMA_CPP_LIB_PATH"] = lib_dir
        chosen = load_dispatch_backend(Path(lib_dir), variant)
    import llama_cpp

    from semievol.models import embedded_gguf

    llm = llama_cpp.Llama(
        model_path=str(embedded_gguf()),
        n_ctx=2048,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    info = llama_cpp.llama_print_system_info().decode()
    n_vocab = llm.n_vocab()
    letters = work["letter_ids"]

    def last_logits(ids: list[int]) -> np.ndarray:
        done = llm.input_ids[: llm.n_tokens]
        common = 0
        for a, b in zip(done, ids, strict=False):
            if a != b:
                break
            common += 1
        llm.n_tokens = min(common, len(ids) - 1)  # at least one token runs, so there are logits to read
        llm.eval(ids[llm.n_tokens :])
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()

    for ids in work["passes"]["no demos"][:WARMUP]:
        last_logits(ids)
    probs, seconds = {}, 0.0
    for name, seqs in work["passes"].items():
        t = time.perf_counter()
        rows = [last_logits(ids)[letters] for ids in seqs]
        seconds += time.perf_counter() - t
        probs[name] = [softmax(r[:k].astype(np.float64)).tolist() for r, k in zip(rows, work["n_options"], strict=True)]
    features = ", ".join(f.split(":")[-1].split("=")[0].strip() for f in info.split("|") if f.strip().endswith("= 1"))
    return {"seconds": seconds, "probs": probs, "variant": f"{chosen}: {features}"}


# ------------------------------------------------------------------ parent


def settings(dispatch_lib: str | None) -> dict[str, list[str]]:
    out = {"hf engine (semievol's default)": ["hf"], "llama.cpp, generic wheel": ["llama"]}
    if dispatch_lib:
        out["llama.cpp, run-time dispatch (variant picked for this CPU)"] = ["llama", dispatch_lib, ""]
        out["llama.cpp, run-time dispatch forced to haswell"] = ["llama", dispatch_lib, "haswell"]
    return out


def run_child(work_file: Path, threads: int, spec: list[str]) -> dict[str, Any]:
    out = work_file.with_suffix(".out.json")
    cmd = [sys.executable, __file__, "--child", json.dumps(spec), "--work", str(work_file), "--threads", str(threads)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(out.read_text())


def agreement(probs: dict[str, list], ref: dict[str, list]) -> tuple[float, float]:
    pairs = [(np.array(x), np.array(y)) for name in ref for x, y in zip(probs[name], ref[name], strict=True)]
    same = [int(x.argmax() == y.argmax()) for x, y in pairs]
    diff = [float(np.abs(x - y).mean()) for x, y in pairs]
    return statistics.mean(same), statistics.mean(diff)


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# llama.cpp against the hf engine at option scoring",
        "",
        f"Machine: {res['machine']}, {res['threads']} thread(s) per setting. Command: `{res['command']}`",
        "",
        f"{res['questions']} FPB unlabeled questions x 3 passes = {res['prompts']} prompts, {res['tokens']} prompt "
        f"tokens; median over {res['rounds']} rounds run in turns; the ratio is to the hf engine.",
        "",
        "| setting | seconds | prompt tokens/s | vs hf | argmax agrees with hf | mean abs prob diff | build |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    hf = res["settings"][next(iter(res["settings"]))]["seconds"]
    for name, r in res["settings"].items():
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {res['tokens'] / r['seconds']:.0f} | {hf / r['seconds']:.2f}x | "
            f"{r['agrees']:.1%} | {r['prob_diff']:.3f} | {r['variant']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--dispatch-lib", default=None)
    ap.add_argument("--questions", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", default=None)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        work = json.loads(Path(args.work).read_text())
        if spec[0] == "hf":
            got = child_hf(work, args.threads)
        else:
            got = child_llama(
                work, args.threads, spec[1] if len(spec) > 1 else None, spec[2] if len(spec) > 2 else None
            )
        Path(args.work).with_suffix(".out.json").write_text(json.dumps(got))
        return

    from run_time import machine

    work = build_prompts(args.data_dir, args.questions)
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work_file = Path(tmp) / "work.json"
        work_file.write_text(json.dumps(work))
        for r in range(args.rounds):
            for name, spec in settings(args.dispatch_lib).items():
                got = run_child(work_file, args.threads, spec)
                runs.setdefault(name, []).append(got)
                print(f"round {r + 1}: {name}: {got['seconds']:.1f} s", flush=True)
    ref = next(iter(runs.values()))[0]["probs"]
    out = {}
    for name, rs in runs.items():
        agrees, diff = agreement(rs[0]["probs"], ref)
        out[name] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "seconds_each_round": [r["seconds"] for r in rs],
            "agrees": agrees,
            "prob_diff": diff,
            "variant": rs[0]["variant"],
        }
    res = {
        "machine": machine(),
        "threads": args.threads,
        "command": "python benchmarks/llama_cpp_speed.py " + " ".join(sys.argv[1:]),
        "questions": args.questions,
        "rounds": args.rounds,
        "prompts": sum(len(v) for v in work["passes"].values()),
        "tokens": sum(len(ids) for v in work["passes"].values() for ids in v),
        "settings": out,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "llama_cpp_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    (OUT / "llama_cpp_speed.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
