"""What the paper table runs: the data profiles, the base config, the variants, and the settings of one
invocation (``Settings``), which every other module of the table receives as a value."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from semievol.config import build_config

SUBSET_SEED = 12345  # the subsample seed, independent of the run seed

# Rows per split (0 = the whole split). 'session' fits the multiple-choice tasks on 2 CPU cores in a few
# hours; 'full' is the paper's splits and needs a GPU (benchmarks/gpu/).
PROFILES: dict[str, dict[str, dict[str, int]]] = {
    "session": {
        "fpb": {"labeled": 128, "unlabeled": 192, "test": 200},
        "pubmedqa": {"labeled": 128, "unlabeled": 192, "test": 200},
        "arc": {"labeled": 128, "unlabeled": 192, "test": 200},
        "gsm8k": {"labeled": 64, "unlabeled": 64, "test": 100},
    },
    # 'session' with the whole test split: the same labeled and unlabeled rows (so the same tuning and
    # training), 453 FPB / 518 ARC test rows instead of 200, which narrows each run's test-sample noise
    "session_fulltest": {t: {"labeled": 128, "unlabeled": 192, "test": 0} for t in ("fpb", "pubmedqa", "arc")},
    "full": {t: {"labeled": 0, "unlabeled": 0, "test": 0} for t in ("fpb", "pubmedqa", "arc", "gsm8k")},
    # checks that the table runs at all (a new model, engine or machine): minutes, numbers meaningless
    "smoke": {t: {"labeled": 20, "unlabeled": 8, "test": 8} for t in ("fpb", "pubmedqa", "arc", "gsm8k")},
}

BASE_CONFIG: dict[str, Any] = {
    "model": {"model": "embedded", "embedder": "embedded"},
    "sft": {"epochs": 2, "batch_size": 8, "lora_r": 16},
    "propagate": {"k": 3, "configs": ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1.0"]},
    "select": {"justify": "all", "confidence": "entropy", "rule": "percentile", "theta": 50},
    "evolve": {"mode": "fresh", "rounds": 1},
    "evaluate": {"models": ["base", "warm", "evolved", "sft_matched"]},
}
MODEL_NAMES = {"warm": "SFT", "sft_matched": "compute-matched SFT", "evolved": "SemiEvol"}  # in the table
FREE_TASKS = {"gsm8k"}  # answered in free form: FREE_OVERRIDES apply, and there is no option to score
FREE_OVERRIDES: dict[str, Any] = {
    "model": {"max_new_tokens": 256},
    "sft": {"use_rationale": True, "max_length": 768},
    "propagate": {"configs": ["warm:0:0.7", "warm:2:0.7", "base:2:0.7", "warm:1:1.0"]},
    "select": {"confidence": "nll"},
}

# Variants: (name, what it tests, overrides on top of the SemiEvol config). Evaluated models: base and warm
# come from the call cache of the copied run, so only 'evolved' costs anything.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "no_in_weight": (
        "ablation: pseudo-labels from the base model (no SFT in the answering configurations)",
        {"propagate": {"configs": ["base:0:0", "base:3:0.7", "base:3:0.5", "base:1:1.0"]}},
    ),
    "no_in_context": (
        "ablation: no retrieved demos",
        {"propagate": {"k": 0, "configs": ["warm:0:0", "warm:0:0.7", "base:0:0.7", "warm:0:1.0"]}},
    ),
    "no_collaborative": (
        "ablation: one configuration (n = 1), nothing to reconcile",
        {"propagate": {"configs": ["warm:3:0"]}, "select": {"justify": "none"}},
    ),
    "no_adaptive": (
        "ablation: every pseudo-label kept (no confidence selection)",
        {"select": {"rule": "all"}},
    ),
    "lmsi_vote": (
        "baseline: majority vote decides, no justification, no entropy filter (LMSI-style)",
        {"select": {"justify": "none", "rule": "all"}},
    ),
    "fixed_threshold": (
        "baseline: fixed confidence threshold, normalised entropy <= 0.5 (FixMatch-style)",
        {"select": {"rule": "fixed", "threshold": 0.5}},
    ),
    "class_percentile": (
        "baseline: per-class percentile (FlexMatch-style)",
        {"select": {"rule": "class_percentile"}},
    ),
    "more_configs": (
        "8 configurations: the 4 above and warm:2:0.7, warm:0:0.7, base:0:0.7, warm:3:1.0",
        {
            "propagate": {
                "configs": [
                    "warm:0:0",
                    "warm:3:0.7",
                    "base:3:0.7",
                    "warm:1:1.0",
                    "warm:2:0.7",
                    "warm:0:0.7",
                    "base:0:0.7",
                    "warm:3:1.0",
                ]
            }
        },
    ),
    "calibrated": (
        "beyond the paper: the justification batch-calibrated and kept to the candidates' answers",
        {"select": {"calibrate": True, "candidates_only": True}},
    ),
    "rounds_2": ("2 rounds of propagate-select-evolve", {"evolve": {"rounds": 2}}),
    "rounds_3": ("3 rounds", {"evolve": {"rounds": 3}}),
}
SCARCITY = [16, 32, 64, 128, 0]


@dataclass(frozen=True)
class Settings:
    """One invocation of the table: where its runs go, the base config every run starts from, and what to run
    (the command line's flags, as values)."""

    out: Path  # runs folder: subsets, tuning, runs
    base: dict[str, Any]  # BASE_CONFIG with the --set overrides
    profile: str = "session"
    seeds: tuple[int, ...] = (0, 1, 2)
    variant_seeds: tuple[int, ...] = (0, 1, 2)  # seeds of the variants and of label scarcity
    parts: frozenset[str] = frozenset({"main", "variants", "scarcity"})
    variants: tuple[str, ...] = tuple(VARIANTS)
    scarcity_tasks: tuple[str, ...] = ("fpb", "arc")
    lr_grid: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    epochs_grid: tuple[int, ...] = (2, 4)

    def task_config(self, task: str, data: Path, seed: int, tune: dict[str, Any]) -> dict[str, Any]:
        """The SemiEvol config of one run; ``tune`` holds the lr and epochs chosen on the validation slice."""
        sft = {"lr": tune["lr"], "epochs": tune.get("epochs", self.base["sft"]["epochs"])}
        cfg = merge(self.base, {"seed": seed, "task": {"task": task, "data_dir": str(data)}, "sft": sft})
        return merge(cfg, FREE_OVERRIDES) if task in FREE_TASKS else cfg

    def model_name(self) -> str:
        name = self.base["model"]["model"]
        return "Embedded SmolLM2-135M-Instruct" if name == "embedded" else f"Model `{name}`"


def base_config(sets: list[str]) -> dict[str, Any]:
    """The base config with ``--set`` overrides, checked as semievol checks a config (ConfigError if not)."""
    cfg = merge(BASE_CONFIG, parse_set(sets))
    build_config(cfg)
    return cfg


def scarcity_counts(labeled: int) -> list[int]:
    """The labeled counts to run for a profile with ``labeled`` rows (0 = the whole split): those below it."""
    return [n for n in SCARCITY if n and (not labeled or n < labeled)]


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set model.model=X --set sft.lr=1e-3`` -> nested overrides; values are read as YAML (numbers, lists, 1e-3)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(
                f"paper_table: --set wants KEY=VALUE (e.g. model.model=Qwen/Qwen2.5-1.5B-Instruct), got {item!r}"
            )
        *parents, leaf = key.split(".")
        node = out
        for k in parents:
            node = node.setdefault(k, {})
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        node[leaf] = parsed
    return out


def gpus() -> str:
    try:
        import torch
    except ImportError:
        return "no GPU"
    if not torch.cuda.is_available():
        return "no GPU"
    names = Counter(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return ", ".join(f"{n} x {name}" for name, n in names.items())


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
