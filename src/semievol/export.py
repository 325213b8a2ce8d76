"""Exports of a finished run: its training data for other fine-tuning tools, and a merged full model.

``export_data`` writes the evolved model's training rows (labeled plus selected pseudo-labels, from the last
round's ``evolve/train_data.jsonl``) with the exact prompt text semievol trained on
(``prompts.training_pair``: system message, question, target) in one of four layouts:

- ``alpaca``: instruction / input / output / system. LLaMA-Factory (alpaca formatting), axolotl ``type: alpaca``.
- ``sharegpt``: ``conversations`` of ``from`` (system, human, gpt) / ``value``. LLaMA-Factory (sharegpt
  formatting), axolotl ``type: chat_template`` with ``field_messages: conversations``.
- ``messages``: OpenAI-style ``messages`` of ``role`` / ``content``. TRL ``SFTTrainer`` (conversational),
  axolotl ``type: chat_template``, LLaMA-Factory (sharegpt formatting with openai tags).
- ``prompt-completion``: TRL's conversational prompt-completion (``prompt`` messages, ``completion``
  message), which like semievol computes the loss on the completion only.

The output folder holds ``train.jsonl``, a ``dataset_info.json`` naming only this dataset (for LLaMA-Factory's
``dataset_dir``; never a shared file), ``export.json`` describing the export, and a ``README.md`` with the
lines each tool needs. The folder is written under a temporary name and renamed, so it is complete or absent.

``merge_adapter`` folds the evolved (or warm) LoRA adapter into the base model and saves a plain
transformers folder (safetensors and tokenizer) that loads with ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal, get_args

from .config import ConfigError, RunConfig, build_config, load_yaml
from .jsonio import atomic_write_json, atomic_write_text, read_jsonl
from .progress import log
from .prompts import TEMPLATE_IDS, training_pair
from .rundir import StageMissing, last_finished, need_run_dir
from .tasks import Example

ExportFormat = Literal["alpaca", "sharegpt", "messages", "prompt-completion"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
DATA_FILE = "train.jsonl"
EXPORT_MARKER = "export.json"
MERGE_MARKER = "semievol_merge.json"


def run_config(run_dir: Path) -> RunConfig:
    need_run_dir(run_dir)
    return build_config(load_yaml(run_dir / "config.yaml"))


# ---------------------------------------------------------------- training rows


def training_examples(run_dir: Path) -> tuple[list[tuple[Example, str]], RunConfig, Path]:
    """The last round's evolve training rows as (example, source) pairs."""
    cfg = run_config(run_dir)
    e_dir = last_finished(run_dir, "evolve")
    if e_dir is None or not (e_dir / "train_data.jsonl").exists():
        raise StageMissing(
            f"{run_dir}: the evolve stage has not finished; run `semievol evolve` (or `semievol run`) first"
        )
    rows = read_jsonl(e_dir / "train_data.jsonl")
    out = []
    for r in rows:
        ex = Example(
            id=r["id"],
            question=r["question"],
            options=r.get("options"),
            answer=r["answer"],
            rationale=r.get("rationale"),
        )
        out.append((ex, r["source"]))
    return out, cfg, e_dir


def _messages(ex: Example, use_rationale: bool) -> list[dict[str, str]]:
    kind = "choice" if ex.options else "free"
    prompt, response = training_pair(ex, ex.answer or "", kind, use_rationale)
    assert not prompt.prefix, "training prompts carry no assistant prefix"
    return [{"role": r, "content": c} for r, c in prompt.messages] + [{"role": "assistant", "content": response}]


_SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def format_row(msgs: list[dict[str, str]], fmt: ExportFormat) -> dict[str, Any]:
    """One training conversation (system?, user, assistant) in the layout ``fmt``."""
    if fmt == "messages":
        return {"messages": msgs}
    if fmt == "prompt-completion":
        return {"prompt": msgs[:-1], "completion": msgs[-1:]}
    if fmt == "sharegpt":
        return {"conversations": [{"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in msgs]}
    if fmt == "alpaca":
        system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
        user = [m["content"] for m in msgs if m["role"] == "user"]
        assert len(user) == 1 and msgs[-1]["role"] == "assistant"
        return {"instruction": user[0], "input": "", "output": msgs[-1]["content"], "system": system}
    raise ConfigError(f"--format: unknown format '{fmt}' (choose from {', '.join(FORMATS)})")


def dataset_info(name: str, fmt: ExportFormat) -> dict[str, Any] | None:
    """LLaMA-Factory's entry for the exported file, or None where it has no reader for the layout."""
    if fmt == "alpaca":
        return {
            name: {
                "file_name": DATA_FILE,
                "formatting": "alpaca",
                "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"},
            }
        }
    if fmt == "sharegpt":
        return {
            name: {
                "file_name": DATA_FILE,
                "formatting": "sharegpt",
                "columns": {"messages": "conversations"},
                "tags": {
                    "role_tag": "from",
                    "content_tag": "value",
                    "user_tag": "human",
                    "assistant_tag": "gpt",
                    "system_tag": "system",
                },
            }
        }
    if fmt == "messages":
        return {
            name: {
                "file_name": DATA_FILE,
                "formatting": "sharegpt",
                "columns": {"messages": "messages"},
                "tags": {
                    "role_tag": "role",
                    "content_tag": "content",
                    "user_tag": "user",
                    "assistant_tag": "assistant",
                    "system_tag": "system",
                },
            }
        }
    return None


def _usage(name: str, fmt: ExportFormat, out: Path) -> str:
    data = out / DATA_FILE
    trl = (
        f"from datasets import load_dataset\nds = load_dataset('json', data_files='{data}', split='train')\n"
        "# trl.SFTTrainer(model=..., train_dataset=ds) applies the model's chat template"
    )
    lf = f"dataset_dir: {out}\ndataset: {name}"
    axolotl = {
        "alpaca": f"datasets:\n  - path: {data}\n    ds_type: json\n    type: alpaca",
        "sharegpt": (
            f"datasets:\n  - path: {data}\n    ds_type: json\n    type: chat_template\n"
            "    field_messages: conversations\n    message_property_mappings:\n      role: from\n"
            "      content: value"
        ),
        "messages": (
            f"datasets:\n  - path: {data}\n    ds_type: json\n    type: chat_template\n    field_messages: messages"
        ),
    }
    parts = [
        f"# semievol export: {name} ({fmt})",
        "",
        f"`{DATA_FILE}` holds labeled plus selected pseudo-labelled rows with the prompt text semievol trained on.",
        "The system message and question match `semievol.prompts.training_pair`; the response is the target.",
    ]
    if fmt in ("messages", "prompt-completion"):
        parts += ["", "## TRL", "", "```python", trl, "```"]
    if fmt != "prompt-completion":
        parts += ["", "## LLaMA-Factory (training YAML)", "", "```yaml", lf, "```"]
        parts += ["", "## axolotl (config YAML)", "", "```yaml", axolotl[fmt], "```"]
    return "\n".join(parts) + "\n"


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` onto ``out`` (which ``_check_out`` found empty or our own earlier output).

    The old folder is moved aside, under a fresh name of this process's own, before the new one takes its
    name, so a kill at any point leaves one complete export under ``out`` or beside it, never none; nothing
    but that old folder is removed.
    """
    old = None
    if out.exists():
        old = _fresh_sibling(out, "old")
        out.rename(old)  # onto the empty folder just made
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)


def _check_out(out: Path, marker: str, what: str) -> Path:
    """Refuse an ``out`` that is not empty and not an earlier ``what``; a fresh temporary folder beside it.

    The temporary folder's name is new (never a user's folder, never another export's in progress)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).exists())):
        raise ConfigError(f"--out: {out} exists and is not an earlier {what}; choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return _fresh_sibling(out, "tmp")


def _fresh_sibling(out: Path, kind: str) -> Path:
    """A new empty hidden folder beside ``out``, named for this process; mkdir refuses a name already there."""
    while True:
        p = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}")
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue


def export_data(run_dir: Path, fmt: ExportFormat, out: Path | None = None) -> Path:
    """Write the evolved model's training data as ``fmt`` into ``out`` (default RUN_DIR/export/FMT)."""
    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    examples, cfg, e_dir = training_examples(run_dir)
    out = Path(out) if out else run_dir / "export" / fmt
    name = f"semievol_{cfg.task.task or 'custom'}"
    tmp = _check_out(out, EXPORT_MARKER, "semievol export")
    rows = [format_row(_messages(ex, cfg.sft.use_rationale), fmt) for ex, _ in examples]
    atomic_write_text(tmp / DATA_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    info = dataset_info(name, fmt)
    if info is not None:
        atomic_write_json(tmp / "dataset_info.json", info)
    atomic_write_text(tmp / "README.md", _usage(name, fmt, out.resolve()))
    sources = [s for _, s in examples]
    trained = json.loads((run_dir / "templates.json").read_text()) if (run_dir / "templates.json").exists() else {}
    changed = sorted(k for k in ("choice", "free") if k in trained and trained[k] != TEMPLATE_IDS[k])
    if changed:
        log(
            f"export: warning: the run trained with templates {[trained[k] for k in changed]}, this export uses "
            f"{[TEMPLATE_IDS[k] for k in changed]}; the prompt text may differ from what the adapter saw"
        )
    atomic_write_json(
        tmp / EXPORT_MARKER,
        {
            "format": fmt,
            "dataset": name,
            "file": DATA_FILE,
            "rows": len(rows),
            "labeled": sources.count("labeled"),
            "pseudo": sources.count("pseudo"),
            "source": str((e_dir / "train_data.jsonl").resolve()),
            "templates": TEMPLATE_IDS,
            "run_templates": trained,
            "use_rationale": cfg.sft.use_rationale,
        },
    )
    _replace_folder(tmp, out)
    return out


# ---------------------------------------------------------------- merged model

MergeDtype = Literal["fp32", "bf16", "fp16"]


def merge_adapter(
    run_dir: Path, out: Path | None = None, adapter: Literal["evolved", "warm"] = "evolved", dtype: MergeDtype = "fp32"
) -> Path:
    """Fold the run's LoRA adapter into its base model; save safetensors and the tokenizer to ``out``.

    The merge runs in fp32 on the CPU; the weights are then cast to ``dtype`` for saving.
    """
    import torch
    from peft import PeftModel

    from .models import load_model, load_tokenizer, resolve_model

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    stage = "evolve" if adapter == "evolved" else "sft"
    a_dir = last_finished(run_dir, stage)
    if a_dir is None or not (a_dir / "adapter_config.json").exists():
        raise StageMissing(f"{run_dir}: no finished {stage} adapter; run `semievol {stage}` (or `semievol run`) first")
    out = Path(out) if out else run_dir / f"merged_{adapter}"
    src = resolve_model(cfg.model.model)
    tmp = _check_out(out, MERGE_MARKER, "merged model")
    model = load_model(src, torch.float32, "cpu")
    merged = PeftModel.from_pretrained(model, str(a_dir)).merge_and_unload()
    merged = merged.to({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype])
    merged.config.dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype]
    q = getattr(merged.config, "quantization_config", None)
    if q is not None and (q.get("quant_method") if isinstance(q, dict) else getattr(q, "quant_method", None)) == "gguf":
        del merged.config.quantization_config  # a GGUF base was dequantised on load: the weights are plain
    merged.save_pretrained(str(tmp))
    tok = (
        load_tokenizer(resolve_model(str(a_dir))) if (a_dir / "tokenizer_config.json").exists() else load_tokenizer(src)
    )
    tok.save_pretrained(str(tmp))
    atomic_write_json(
        tmp / MERGE_MARKER,
        {"base_model": src.label, "adapter": str(a_dir.resolve()), "adapter_stage": a_dir.name, "dtype": dtype},
    )
    _replace_folder(tmp, out)
    return out


def export_command(args: Any) -> int:
    """``semievol export RUN_DIR --format F [--out DIR]``."""
    print(export_data(args.run_dir, args.format, args.out))
    return 0


def merge_command(args: Any) -> int:
    """``semievol merge RUN_DIR [--adapter A] [--dtype D] [--out DIR]``."""
    print(merge_adapter(args.run_dir, args.out, args.adapter, args.dtype))
    return 0
