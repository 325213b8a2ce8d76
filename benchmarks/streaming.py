"""Memory and time of pseudo-labelling a very large unlabeled split, and of a FAISS index over many labeled rows.

Part ``stream``: ROWS short synthetic questions (JSONL, written here) go through loading, propagate (4
configurations, k=2 retrieved demos each) and select (every row justified, percentile rule) with the
deterministic ``fake`` engine and hash embeddings, so what is measured is semievol's own reading, writing
and bookkeeping, not a model. Peak resident memory is the process's ``ru_maxrss``.

Part ``faiss``: an exact inner-product FAISS index (``IndexFlatIP``) over 100,000 labeled questions
embedded with 384-dimensional hash embeddings (the width of the default all-MiniLM-L6-v2; a real embedder
would take most of an hour here), its build time and the time to find the 3 nearest of 10,000 queries,
beside semievol's NumPy search on the same vectors.

Each part runs in its own process so one's memory does not count against the other. Writes
``benchmarks/results/streaming.json`` and ``.md``.

    python benchmarks/streaming.py                    # both parts, 1,000,000 rows
    python benchmarks/streaming.py --rows 100000      # a quicker first measurement
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "engine",
    "violin",
    "tiger",
    "copper",
    "garden",
    "winter",
    "market",
    "signal",
    "harbor",
    "planet",
    "lantern",
    "meadow",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def write_task(folder: Path, rows: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labeled.jsonl", "w") as f:
        for i in range(64):
            a, b = WORDS[i % 16], WORDS[(i * 7 + 3) % 16]
            f.write(
                json.dumps(
                    {
                        "id": f"l{i}",
                        "question": f"Which comes first, {a} or {b}? ({i})",
                        "options": [a, b, "neither"],
                        "answer": "A" if a < b else "B",
                    }
                )
                + "\n"
            )
    with open(folder / "unlabeled.jsonl", "w") as f:
        for i in range(rows):
            a, b = WORDS[i % 16], WORDS[(i // 16 + 5) % 16]
            f.write(
                json.dumps(
                    {"id": f"u{i}", "question": f"Which comes first, {a} or {b}? ({i})", "options": [a, b, "neither"]}
                )
                + "\n"
            )


def part_stream(rows: int) -> dict:
    from semievol.config import build_config
    from semievol.engines.fake import FakeEngine
    from semievol.pipeline import make_context
    from semievol.runctx import Adapter
    from semievol.stages.propagate import run_propagate
    from semievol.stages.select import run_select

    out: dict = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.time()
        write_task(root / "task", rows)
        out["write_seconds"] = round(time.time() - t, 1)
        out["unlabeled_file_mb"] = round((root / "task" / "unlabeled.jsonl").stat().st_size / 2**20, 1)
        base_rss = peak_rss_mb()
        cfg = build_config(
            {
                "run_dir": str(root / "run"),
                "model": {"engine": "fake", "embedder": "hash"},
                "task": {
                    "labeled": str(root / "task" / "labeled.jsonl"),
                    "unlabeled": str(root / "task" / "unlabeled.jsonl"),
                },
                "propagate": {"k": 2, "chunk_size": 1024},
            }
        )
        t = time.time()
        ctx = make_context(cfg, quiet=True, engine=FakeEngine())
        warm = Adapter("warm", root / "warm", "benchmark")
        out["load_seconds"] = round(time.time() - t, 1)
        out["rss_after_load_mb"] = round(peak_rss_mb(), 1)
        t = time.time()
        votes = run_propagate(ctx, root / "run" / "propagate", list(ctx.task.labeled.examples), warm)
        out["propagate_seconds"] = round(time.time() - t, 1)
        out["rss_after_propagate_mb"] = round(peak_rss_mb(), 1)
        t = time.time()
        run_select(ctx, votes, root / "run" / "select", warm)
        out["select_seconds"] = round(time.time() - t, 1)
        out["votes_file_mb"] = round(votes.stat().st_size / 2**20, 1)
        out["pseudo_labels_file_mb"] = round(
            (root / "run" / "select" / "pseudo_labels.jsonl").stat().st_size / 2**20, 1
        )
        out["cache_file_mb"] = round((root / "run" / "cache" / "model_calls.jsonl").stat().st_size / 2**20, 1)
        out["selected"] = json.loads((root / "run" / "select" / "selection.json").read_text())["selected"]
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["rss_before_loading_mb"] = round(base_rss, 1)
    return out


def part_faiss(n_keys: int = 100_000, n_queries: int = 10_000, k: int = 3) -> dict:
    import faiss
    import numpy as np

    from semievol.retrieval import hash_embed, nearest

    faiss.omp_set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    texts = [
        f"Which comes first, {WORDS[i % 16]} or {WORDS[(i // 16 + 5) % 16]}? case {i} of {i % 97}"
        for i in range(n_keys)
    ]
    t = time.time()
    keys = hash_embed(texts, dim=384)
    embed_s = time.time() - t
    queries = keys[:: n_keys // n_queries][:n_queries] + np.float32(0.01)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    t = time.time()
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(np.ascontiguousarray(keys))
    build_s = time.time() - t
    t = time.time()
    _, idx_faiss = index.search(np.ascontiguousarray(queries), k)
    query_s = time.time() - t
    t = time.time()
    idx_numpy, _ = nearest(keys, queries, k, "numpy")
    numpy_s = time.time() - t
    t = time.time()
    idx_via_semievol, _ = nearest(keys, queries, k, "faiss")
    semievol_faiss_s = time.time() - t
    same = float((idx_numpy[:, 0] == idx_faiss[:, 0]).mean())
    return {
        "keys": n_keys,
        "queries": n_queries,
        "k": k,
        "dim": 384,
        "index": "faiss.IndexFlatIP (exact)",
        "faiss_version": faiss.__version__,
        "hash_embed_seconds": round(embed_s, 2),
        "build_seconds": round(build_s, 3),
        "query_seconds": round(query_s, 3),
        "query_ms_per_question": round(1000 * query_s / n_queries, 4),
        "semievol_nearest_faiss_seconds": round(semievol_faiss_s, 3),
        "numpy_query_seconds": round(numpy_s, 3),
        "top1_agreement_with_numpy": same,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def markdown(res: dict) -> str:
    s, f = res.get("stream"), res.get("faiss")
    lines = [
        f"Machine: {res['machine']}. Command: `{res['command']}`." + (f" {res['note']}" if res.get("note") else ""),
        "",
    ]
    if s:
        lines += [
            f"**Streaming pseudo-labelling, {s['rows']:,} unlabeled rows, fake engine** (4 configurations, k=2, every row justified)",
            "",
            "| phase | seconds | peak resident memory after it |",
            "|---|---|---|",
            f"| load and validate (one streaming pass, plus one for the checks) | {s['load_seconds']} | {s['rss_after_load_mb']} MB |",
            f"| propagate ({s['votes_file_mb']} MB of votes written) | {s['propagate_seconds']} | {s['rss_after_propagate_mb']} MB |",
            f"| select ({s['pseudo_labels_file_mb']} MB of pseudo-labels, {s['cache_file_mb']} MB call cache) | {s['select_seconds']} | {s['peak_rss_mb']} MB |",
            "",
            f"Peak resident memory {s['peak_rss_mb']} MB (limit set for this benchmark: 1,500 MB); "
            f"{s['rss_before_loading_mb']} MB before loading the task (the interpreter and its imports). "
            f"{s['selected']:,} pseudo-labels selected. What still grows with the rows: the ids seen while the "
            "split is validated (to refuse a repeated id), the score arrays of select (a few bytes a row), and "
            "the cache of model calls, which select reads into memory whole (one entry per justified row).",
            "",
        ]
    if f:
        lines += [
            f"**FAISS nearest neighbours, {f['keys']:,} labeled questions** ({f['dim']}-dimensional hash embeddings, {f['index']}, faiss {f['faiss_version']})",
            "",
            "| step | seconds |",
            "|---|---|",
            f"| build the index | {f['build_seconds']} |",
            f"| {f['k']} nearest of {f['queries']:,} queries | {f['query_seconds']} ({f['query_ms_per_question']} ms a question) |",
            f"| the same through `semievol.retrieval.nearest(index='faiss')` | {f['semievol_nearest_faiss_seconds']} |",
            f"| the same with NumPy (`index='numpy'`) | {f['numpy_query_seconds']} |",
            "",
            f"Nearest neighbour agrees with NumPy's for {100 * f['top1_agreement_with_numpy']:.1f}% of queries.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--part", choices=["stream", "faiss", "all"], default="all")
    ap.add_argument("--out", default=str(RESULTS / "streaming"))
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.markdown_only:
        res = json.loads(Path(args.out).with_suffix(".json").read_text())
        Path(args.out).with_suffix(".md").write_text(markdown(res))
        return 0
    if args.part != "all":
        print(json.dumps(part_stream(args.rows) if args.part == "stream" else part_faiss()))
        return 0
    res: dict = {
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), no GPU",
        "command": f"python benchmarks/streaming.py --rows {args.rows}",
    }
    for part in ("stream", "faiss"):
        proc = subprocess.run(
            [sys.executable, __file__, "--part", part, "--rows", str(args.rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        res[part] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(part, res[part], file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
