"""Throughput of the `vllm` and `ray-vllm` engines on a GPU machine: option scoring and sampling.

Not run on the development machine (2 CPU cores, no GPU). On a GPU machine with `pip install -e '.[ray]'`:

    python benchmarks/gpu/ray_vllm.py --model meta-llama/Llama-3.1-8B-Instruct --engine ray-vllm --n 8400
    python benchmarks/gpu/ray_vllm.py --model meta-llama/Llama-3.1-8B-Instruct --engine vllm --n 8400

It builds N synthetic four-option questions, scores them (one forward pass each, as propagate and select
do) and samples 4 responses for a tenth of them, and writes benchmarks/results/gpu_<engine>.json with the
prompts per second and how many option letters fell outside vLLM's top log-probabilities.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from semievol.engines import make_engine
from semievol.prompts import answer_prompt
from semievol.tasks import Example


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--engine", choices=["vllm", "ray-vllm"], default="ray-vllm")
    ap.add_argument("--n", type=int, default=8400)
    ap.add_argument("--concurrency", type=int, default=1, help="vLLM replicas (ray-vllm)")
    args = ap.parse_args()
    words = ["apple", "river", "stone", "cloud", "engine", "violin", "tiger", "copper"]
    examples = [
        Example(
            f"q{i}",
            f"Which of these comes first in the alphabet? (question {i})",
            [words[i % 8], words[(i + 3) % 8], words[(i + 5) % 8], "none of them"],
        )
        for i in range(args.n)
    ]
    prompts = [answer_prompt(e, "choice") for e in examples]
    t = time.time()
    engine = make_engine(args.engine, model=args.model, concurrency=args.concurrency)
    load_s = time.time() - t
    t = time.time()
    dists = engine.score_options(prompts, [4] * len(prompts), None)
    score_s = time.time() - t
    free = [answer_prompt(Example(e.id, e.question), "free") for e in examples[: args.n // 10]]
    t = time.time()
    engine.generate(free, 4, 0.7, 0, 128, None)
    gen_s = time.time() - t
    res = {
        "engine": args.engine,
        "model": args.model,
        "n": args.n,
        "load_seconds": round(load_s, 1),
        "score_seconds": round(score_s, 1),
        "scored_per_second": round(args.n / score_s, 1),
        "sampled_prompts": len(free),
        "sample_seconds": round(gen_s, 1),
        "letters_outside_top_logprobs": engine.options_outside_top,
        "model_id": engine.model_id(),
        "mean_top_option_probability": round(float(sum(d.max() for d in dists) / len(dists)), 4),
    }
    out = Path(__file__).resolve().parents[1] / "results" / f"gpu_{args.engine}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
