"""Recipes: named sets of settings that sit under the user's file and flags.

'paper' is the paper's procedure (every dataclass default). 'few_labels' is recipe v5 of the few-labels
protocol (benchmarks/recipes/few_labels_v5.yaml, docs/results/few_labels.md): five warm models of 384
optimizer steps, the mean of their answer distributions aligned to the labeled rows' class shares as a soft
target on every unlabeled row, and a student trained from the base model for as many steps, so that each warm
model is the compute-matched control. At 64 labeled rows it beat SFT trained as long on all four
classification tasks measured, while the paper's procedure answered one class; at 128 it was above SFT trained
as long on SST-2 and FPB, where the paper's procedure was below it on FPB. 'auto' (the default) picks
'few_labels' for at most ``FEW_LABELS_MAX_ROWS`` labeled rows and 'paper' above, once the labeled rows are
counted; a run folder written before recipes existed keeps 'paper'.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..progress import log
from .build import build_config, merge
from .stages import RunConfig

FEW_LABELS_MAX_ROWS = 128
"""The largest labeled draw 'auto' gives recipe 'few_labels': the largest count it was measured at (16, 64 and
128 rows). At 128 it was above SFT trained as long on all three draws measured (two SST-2, one FPB), while the
paper's procedure at 128 was below that control on FPB (docs/results/few_labels.md, session 36); above 128
neither recipe has been measured against the other."""

FEW_LABELS_STEPS = 384
"""Optimizer steps of each warm model and of the student: v5's 48 epochs of 64 rows in batches of 8."""

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "few_labels": {
        "sft": {"lr": 1e-3, "max_steps": FEW_LABELS_STEPS, "batch_size": 8, "members": 5},
        "propagate": {"k": 0, "configs": ["members:0:0"]},
        "select": {"justify": "none", "vote": "mean", "align": True, "rule": "all"},
        "evolve": {"mode": "fresh", "targets": "soft", "labeled_repeat": 2, "steps": FEW_LABELS_STEPS},
        "evaluate": {"models": ["base", "warm", "evolved", "members"]},
    },
}


def pick_recipe(name: str, n_labeled: int) -> str:
    """The recipe 'auto' stands for with ``n_labeled`` labeled rows; any other name is itself."""
    if name != "auto":
        return name
    return "few_labels" if n_labeled <= FEW_LABELS_MAX_ROWS else "paper"


def config_with_recipe(base: dict[str, Any], user: dict[str, Any], n_labeled: int | None = None) -> RunConfig:
    """The config of the command defaults ``base`` under its recipe's settings under the user's ``user``.

    With recipe 'auto' and ``n_labeled`` not yet known the config holds the paper's settings and says 'auto';
    ``n_labeled`` resolves it, and the config names the recipe chosen."""
    cfg = build_config(merge(base, user))  # checks 'recipe' with every other setting
    if cfg.recipe == "auto" and n_labeled is None:
        return cfg
    chosen = pick_recipe(cfg.recipe, n_labeled or 0)
    return build_config(merge(merge(merge(base, RECIPES[chosen]), user), {"recipe": chosen}))


def folder_before_recipes(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run written before recipes existed (its config.yaml has no 'recipe'): such a
    run kept the paper's settings, and 'auto' keeps them so that its finished stages stay finished. A folder
    whose config cannot be read counts as new: the run's own checks say why."""
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and "recipe" not in saved


def resolve_recipe(cfg: RunConfig, n_labeled: int, layers: tuple[dict[str, Any], dict[str, Any]] | None) -> RunConfig:
    """``cfg`` under the recipe 'auto' stands for at ``n_labeled`` labeled rows (said in the log)."""
    if cfg.recipe != "auto":
        return cfg
    if layers is None:
        return replace(cfg, recipe="paper")
    if folder_before_recipes(Path(cfg.run_dir)):
        log(f"recipe: paper ({cfg.run_dir} was run before recipes existed, with the paper's settings)")
        return replace(cfg, recipe="paper")
    base, user = layers
    cfg = config_with_recipe(base, user, n_labeled=n_labeled)
    if cfg.recipe == "few_labels":
        steps = cfg.sft.max_steps or "its epochs'"
        log(
            f"recipe: few_labels ({n_labeled} labeled rows, at most {FEW_LABELS_MAX_ROWS}): {cfg.sft.members} warm "
            f"model(s) of {steps} steps, then a student of {cfg.evolve.steps or 'its epochs'}; --recipe paper for "
            "the paper's procedure"
        )
    else:
        log(f"recipe: paper ({n_labeled} labeled rows, above the {FEW_LABELS_MAX_ROWS} recipe few_labels is for)")
    return cfg
