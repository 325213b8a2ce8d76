"""The paper's table with a larger model on one GPU, in one call: base, SFT, SemiEvol and compute-matched SFT.

    python benchmarks/gpu/paper_table_gpu.py --model /models/Qwen2.5-1.5B-Instruct --data-dir ../shared/data
    python benchmarks/gpu/paper_table_gpu.py --model ... --dry-run     # print and check the command, run nothing

It runs ``benchmarks/paper_table.py`` (profile ``session``: 128 labeled, 192 unlabeled, 200 test rows per
task, the same seeded subsamples as the CPU table) with bf16 weights and training, larger batches, a
three-point learning-rate grid at 2 epochs, into ``runs/paper_gpu/<model>/`` and
``benchmarks/results/gpu/<model>/``. Each stage of each run resumes, so a call cut short by ``--minutes``
continues where it stopped when called again. Add ``--parts main,variants`` and more seeds for the rest of
the table.

Not run yet: no session of this project has been lent a GPU with a model on it (the lent machine cannot
download, and its upload limit is below the size of any model semievol can load), so the batch sizes
below are a starting point, not measured.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# settings for one modern GPU (tens of GB): bf16 everywhere, batches that keep it busy
GPU_SET = [
    "model.dtype=bf16",
    "model.batch_size=64",
    "model.batch_tokens=65536",
    "sft.bf16=on",
    "sft.batch_size=16",
    "sft.micro_batch_size=16",
    "sft.micro_batch_tokens=16384",
]


def command(args: argparse.Namespace) -> list[str]:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.model.rstrip("/").split("/")[-1]) or "model"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "paper_table.py"),
        "--data-dir",
        args.data_dir,
        "--profile",
        "session",
        "--tasks",
        args.tasks,
        "--seeds",
        args.seeds,
        "--parts",
        args.parts,
        "--lr-grid",
        args.lr_grid,
        "--epochs-grid",
        "2",
        "--out",
        str(ROOT / "runs" / "paper_gpu" / slug),
        "--results",
        str(ROOT / "benchmarks" / "results" / "gpu" / slug),
        "--set",
        f"model.model={args.model}",
    ]
    for s in GPU_SET + args.set:
        cmd += ["--set", s]
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a local model folder or a Hub id the machine can reach")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--tasks", default="fpb,arc,pubmedqa")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--parts", default="main")
    ap.add_argument("--lr-grid", default="1e-4,3e-4,1e-3")
    ap.add_argument("--minutes", type=float, default=9.0, help="stop after this long (the run resumes later)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    ap.add_argument("--dry-run", action="store_true", help="print the command and check its settings")
    args = ap.parse_args()
    cmd = command(args)
    print(" ".join(cmd), flush=True)
    if args.dry_run:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import paper_table

        from semievol.config import ConfigError

        try:
            paper_table.base_config([cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"])
        except ConfigError as e:
            print(f"paper_table_gpu: {e}", file=sys.stderr)
            sys.exit(2)
        return
    import torch

    if not torch.cuda.is_available():
        print(
            "paper_table_gpu: torch sees no CUDA device; this script is for a GPU machine "
            "(benchmarks/paper_table.py runs the table on the CPU)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        rc = subprocess.run(cmd, timeout=args.minutes * 60).returncode
    except subprocess.TimeoutExpired:
        print(f"paper_table_gpu: stopped after {args.minutes:g} min; call again to resume", file=sys.stderr)
        rc = 124
    sys.exit(rc)


if __name__ == "__main__":
    main()
