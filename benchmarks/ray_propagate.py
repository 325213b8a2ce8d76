"""Pseudo-labelling FPB questions with the embedded model: one 2-thread process against Ray with 2 one-thread
actors, on the same machine.

Both arms run ``run_propagate`` over the same unlabeled split (the first QUESTIONS FPB questions of the
unlabeled, test and labeled files, in that order), with the FPB labeled split as the demo pool, the default
4 configurations (3 of them on the warm adapter) and k=3 retrieved demos (hash embeddings: retrieval is not
what is measured). The warm adapter is a LoRA of rank 16 on every linear layer with random weights, made
here (training one would take longer than the benchmark); it costs what a trained one costs.

- ``process``: the ``hf`` engine in one process with 2 torch threads.
- ``ray``: engine ``ray``, a one-machine cluster on 127.0.0.1 (``ray start --head``, 2 CPUs) and 2 actors
  with ``num_cpus 1`` (so one torch thread each), each holding its own copy of the model.

Each arm runs in a child process. Reported: wall seconds of propagate, questions a second, when the first
voted chunk reached the votes file (model loading and actors starting come before it), the driver's peak resident
memory (``wait4``) and, for Ray, each actor's peak resident memory (sampled every 0.5 s), and whether the
two votes files are byte-identical. Writes ``benchmarks/results/ray_propagate.json`` and ``.md``.

    python benchmarks/ray_propagate.py --data-dir ../shared/data                  # 2,000 questions
    python benchmarks/ray_propagate.py --data-dir ../shared/data --questions 200  # a shorter run
    python benchmarks/ray_propagate.py --data-dir ../shared/data --configs warm:0:0 --k 0  # one pass a question
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def write_unlabeled(data_dir: Path, n: int, dest: Path) -> int:
    rows: list[dict[str, str]] = []
    for split in ("unlabeled", "test", "labeled"):
        with open(data_dir / "fpb" / f"{split}.csv", newline="", encoding="utf-8") as f:
            rows += [{"question": r["question"], "options": r["options"]} for r in csv.DictReader(f)]
    rows = rows[:n]
    with open(dest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["question", "options"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def make_warm_adapter(dest: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from semievol.models import load_model, resolve_model

    torch.manual_seed(0)
    model = load_model(resolve_model("embedded"), torch.float32, "cpu")
    lora = LoraConfig(
        r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False
    )  # random weights: the warm votes differ from the base ones
    get_peft_model(model, lora).save_pretrained(dest)


def config(root: Path, data_dir: Path, arm: str, address: str, chunk_size: int, configs: list[str], k: int) -> dict:
    cfg = {
        "run_dir": str(root / arm),
        "seed": 0,
        "model": {
            "model": "embedded",
            "dtype": "fp32",
            "embedder": "hash",
            "engine": "hf" if arm == "process" else "ray",
            "threads": 2 if arm == "process" else 0,
        },
        "task": {
            "task": "fpb",
            "labeled": str(data_dir / "fpb" / "labeled.csv"),
            "unlabeled": str(root / "unlabeled.csv"),
        },
        "propagate": {"k": k, "chunk_size": chunk_size} | ({"configs": configs} if configs else {}),
    }
    if arm == "ray":
        cfg["ray"] = {"address": address, "actors": 2, "num_cpus": 1, "num_gpus": 0}
    return cfg


def run_arm(cfg: dict, warm: str) -> None:
    """In the child process: propagate as the pipeline runs it, with the adapter made above as the warm one."""
    from semievol.config import build_config
    from semievol.pipeline import make_context
    from semievol.runctx import Adapter
    from semievol.stages.propagate import run_propagate

    if cfg["model"]["threads"]:
        import torch

        torch.set_num_threads(cfg["model"]["threads"])
    ctx = make_context(build_config(cfg), quiet=True)
    run_propagate(
        ctx,
        Path(cfg["run_dir"]) / "propagate",
        list(ctx.task.labeled.examples),
        Adapter("warm", Path(warm), "benchmark"),
    )


def measure(cfg: dict, warm: Path, cluster=None) -> dict:
    votes = Path(cfg["run_dir"]) / "propagate" / "votes.jsonl"
    peaks: dict[int, float] = {}
    first: list[float] = []
    t = time.time()
    child = subprocess.Popen([sys.executable, __file__, "--arm", json.dumps(cfg), "--warm", str(warm)])
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if not first and votes.exists() and votes.stat().st_size:
                first.append(time.time())
            for pid, p in (cluster.actors("VoteActor") if cluster else {}).items():
                try:
                    peaks[pid] = max(peaks.get(pid, 0.0), p.memory_info().rss / 2**20)
                except Exception:
                    continue
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, status, usage = os.wait4(child.pid, 0)
    end = time.time()
    done.set()
    watcher.join()
    if status != 0:
        raise SystemExit(f"the {cfg['model']['engine']} arm failed (wait status {status})")
    n = sum(1 for _ in open(votes, "rb"))
    # chunks after the first one: their rows over the time from the first chunk's arrival to the end
    steady = (n - cfg["propagate"]["chunk_size"]) / (end - first[0]) if first and end > first[0] else None
    out = {
        "seconds": round(end - t, 1),
        "questions": n,
        "questions_per_s": round(n / (end - t), 3),
        "seconds_to_first_chunk": round(first[0] - t, 1) if first else None,
        "questions_per_s_after_first_chunk": round(steady, 3) if steady else None,
        "driver_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    if cluster:
        out["actor_peak_rss_mb"] = [round(v, 1) for _, v in sorted(peaks.items())]
        out["actor_processes_seen"] = len(peaks)
    return out


def what(res: dict) -> str:
    """The configurations voting, in words (older results: the default four, k=3)."""
    configs, k = res.get("configs") or [], res.get("k", 3)
    named = f"configurations {', '.join(configs)}" if configs else "the 4 default configurations"
    return f"{named}, k={k} retrieved demos"


def markdown(res: dict) -> str:
    p, r = res["process"], res["ray"]
    lines = [
        f"Machine: {res['machine']}. Command: `{res['command']}`. {res['note']}",
        "",
        f"**Pseudo-labelling {p['questions']:,} FPB questions with the embedded SmolLM2-135M** ({what(res)}, "
        f"chunks of {res['chunk_size']}; warm adapter: random LoRA rank 16). Load average (1, 5, 15 min) "
        f"at the start {res['load_average_at_start']}, at the end {res['load_average_at_end']}.",
        "",
        "| arm | seconds | questions/s | first chunk written after | driver peak RSS | peak RSS per actor |",
        "|---|---|---|---|---|---|",
        f"| one process, 2 threads (`hf`) | {p['seconds']} | {p['questions_per_s']} | {p['seconds_to_first_chunk']} s "
        f"| {p['driver_peak_rss_mb']} MB | - |",
        f"| Ray, 2 actors x 1 thread (`ray`) | {r['seconds']} | {r['questions_per_s']} | {r['seconds_to_first_chunk']} s "
        f"| {r['driver_peak_rss_mb']} MB | {', '.join(f'{m} MB' for m in r['actor_peak_rss_mb'])} |",
        "",
        f"Throughput ratio, Ray over one process, end to end (start-up included): **{res['ratio']}**. "
        f"Votes files byte-identical: {'yes' if res['identical'] else 'no'}"
        + (
            ""
            if res["identical"]
            else f" ({res['differing_rows']} of {p['questions']} rows differ: one thread "
            "against two sums the matrix products in another order, which moves the last digits of some "
            "probabilities)"
        )
        + ".",
    ]
    if res.get("observed"):
        lines += ["", res["observed"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--chunk-size", type=int, default=16, help="propagate.chunk_size: rows an actor votes on per call")
    ap.add_argument("--configs", default="", help="propagate.configs, comma-separated (default: the 4 default ones)")
    ap.add_argument(
        "--k", type=int, default=3, help="propagate.k: retrieved demos in the configurations that take them"
    )
    ap.add_argument("--out", default=str(RESULTS / "ray_propagate"))
    ap.add_argument("--note", default="", help="a sentence for the results page (the machine's load, ...)")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--warm", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        run_arm(json.loads(args.arm), args.warm)
        return 0
    if args.markdown_only:
        res = json.loads(Path(args.out).with_suffix(".json").read_text())
        Path(args.out).with_suffix(".md").write_text(markdown(res))
        return 0
    # a SIGTERM (a timeout) unwinds like an exception, so the cluster and the temporary folder are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from semievol.ray_local import local_cluster

    data_dir = Path(args.data_dir)
    configs = [c for c in args.configs.split(",") if c]
    res: dict = {
        "machine": f"{os.cpu_count()}-core {cpu_name()}, no GPU",
        "command": f"python benchmarks/ray_propagate.py --questions {args.questions} --chunk-size {args.chunk_size}"
        + (f" --configs {args.configs}" if args.configs else "")
        + f" --k {args.k}",
        "note": args.note,
        "chunk_size": args.chunk_size,
        "configs": configs,
        "k": args.k,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = write_unlabeled(data_dir, args.questions, root / "unlabeled.csv")
        make_warm_adapter(root / "warm")
        res["process"] = measure(config(root, data_dir, "process", "", args.chunk_size, configs, args.k), root / "warm")
        print("process", res["process"], file=sys.stderr)
        with local_cluster(num_cpus=2) as cluster:
            res["ray"] = measure(
                config(root, data_dir, "ray", cluster.address, args.chunk_size, configs, args.k), root / "warm", cluster
            )
        print("ray", res["ray"], file=sys.stderr)
        a, b = (root / arm / "propagate" / "votes.jsonl" for arm in ("process", "ray"))
        la, lb = a.read_bytes().splitlines(), b.read_bytes().splitlines()
        res["identical"] = la == lb
        res["differing_rows"] = sum(x != y for x, y in zip(la, lb, strict=True)) if len(la) == len(lb) == n else None
    res["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    p, r = res["process"], res["ray"]
    res["ratio"] = round(r["questions_per_s"] / p["questions_per_s"], 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
