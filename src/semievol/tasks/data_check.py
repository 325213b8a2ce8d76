"""``semievol data check``: what a task's splits hold, before any model runs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..config import RunConfig
from ..models import load_tokenizer, resolve_model
from ..prompts import answer_prompt, render
from .load import load_task


def data_command(cfg: RunConfig, args: Any) -> int:
    """``semievol data check``: per split its rows, answer distribution, options per question and (with a
    real model) mean prompt length in tokens, then the task's warnings."""
    task = load_task(cfg.task, seed=cfg.seed)
    tok = None
    if cfg.model.engine != "fake":
        tok = load_tokenizer(resolve_model(cfg.model.model))
    print(f"task {task.name} ({task.kind})")
    for split in (task.labeled, task.unlabeled, task.test):
        if split is None:
            continue
        answers = Counter(e.answer for e in split.examples if e.answer is not None)
        n_opts = Counter(len(e.options or []) for e in split.examples)
        line = f"{split.name:10s} rows {len(split):6d}  source {split.source}"
        print(line)
        dist = ", ".join(f"{a} {100 * c / max(1, sum(answers.values())):.1f}%" for a, c in sorted(answers.items())[:12])
        more = "" if len(answers) <= 12 else f" (+{len(answers) - 12} more values)"
        print(f"{'':10s} answers: {dist or 'none'}{more}")
        if task.kind == "choice":
            print(f"{'':10s} options per question: " + ", ".join(f"{k}: {v}" for k, v in sorted(n_opts.items())))
        if tok is not None:
            lens = []
            for e in split.examples:
                text = render(tok, answer_prompt(e, task.kind))
                lens.append(len(tok(text, add_special_tokens=False)["input_ids"]))
            print(f"{'':10s} mean prompt length: {sum(lens) / len(lens):.1f} tokens (max {max(lens)})")
    for w in task.warnings:
        print(f"warning: {w}")
    return 0
