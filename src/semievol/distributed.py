"""Training on several processes: which process this is, waiting for the others, and re-launching semievol.

Under ``accelerate launch`` (or ``torchrun``) every process runs the same command; ``RANK`` and
``WORLD_SIZE`` say which one it is. Only rank 0 writes artifacts: stage folders, adapters, logs. With
``sft.launcher: accelerate`` a plain ``semievol run`` starts the sft and evolve stages as
``accelerate launch -m semievol <stage> RUN_DIR/config.yaml`` and waits for them; the other stages stay
in the one process (propagate scales out with ``--shard`` instead).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from .config import TrainConfig

LAUNCHED = "SEMIEVOL_LAUNCHED"  # set for the processes semievol launches, so they do not launch again


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every process (a no-op in a single process)."""
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def should_relaunch(cfg: TrainConfig) -> bool:
    return cfg.launcher == "accelerate" and world_size() == 1 and LAUNCHED not in os.environ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(cfg: TrainConfig, stage: str, config_file: Path, quiet: bool) -> list[str]:
    """``accelerate launch`` running ``semievol <stage> <config_file>`` on every process."""
    import torch

    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if cfg.accelerate_config:
        cmd += ["--config_file", cfg.accelerate_config]
    if cfg.num_processes:
        cmd += ["--num_processes", str(cfg.num_processes)]
    if not cfg.accelerate_config:  # a config file names its own machines, port and kind of parallelism
        # accelerate's --cpu starts one process (several need MPI); its torchrun launcher (--multi_gpu)
        # also runs CPU processes, which then train over gloo
        if cfg.num_processes != 1 and (cfg.num_processes > 1 or torch.cuda.device_count() > 1):
            cmd += ["--multi_gpu"]
        cmd += [
            "--num_machines",
            "1",
            "--main_process_port",
            str(_free_port()),
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
    cmd += ["-m", "semievol"] + (["--quiet"] if quiet else []) + [stage, str(config_file)]
    return cmd


def relaunch(cfg: TrainConfig, stage: str, config_file: Path, quiet: bool) -> int:
    """Run one training stage under accelerate launch; the exit code of the launcher."""
    env = dict(os.environ, **{LAUNCHED: "1"})
    return subprocess.run(launch_command(cfg, stage, config_file, quiet), env=env).returncode
