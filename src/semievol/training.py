"""LoRA fine-tuning with PEFT: the loop behind in-weight propagation (sft) and evolution.

The loss covers the response tokens only. Batches are grouped by length (sorted within shuffled pools),
gradients accumulate to the effective batch, the schedule is linear warm-up then cosine, and on a GPU with
bf16, or a CPU whose bf16 is clearly faster than fp32, the forward and backward run under bf16 autocast over
fp32 LoRA weights; the prompt prefix every row shares runs once per micro-batch (``training_speed``). A NaN or infinite
loss stops training before anything is written. The adapter folder is a standard PEFT one, written under a temporary
name, fsynced and renamed (``save_adapter``).

Under ``accelerate launch`` (several processes) the model is wrapped by accelerate (DDP, or FSDP/DeepSpeed
from its config file). Every process draws the same micro-batches, and process r of W trains on the r-th,
(r+W)-th, ... of each optimizer step's group, so W processes take the same steps over the same data as one
process accumulating ``batch_size / micro_batch_size`` micro-batches; the loss is normalised by the whole
step's target tokens on every process. Only rank 0 writes the adapter and logs.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .distributed import is_main, world_size
from .jsonio import fsync_dir
from .losses import TrainingError, response_loss, row_targets
from .models import ModelSource, default_device, load_model, load_tokenizer
from .progress import log, progress
from .prompts import Prompt, render


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    final_loss: float
    seconds: float
    examples: int


def tokenize_pairs(tok: Any, pairs: list[tuple[Prompt, str]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) with the prompt masked (-100); the end-of-turn token closes the response."""
    end = tok.eos_token or ""
    if "<|im_end|>" in tok.get_vocab():
        end = "<|im_end|>"
    out = []
    for prompt, response in pairs:
        p = tok(render(tok, prompt), add_special_tokens=False)["input_ids"]
        r = tok(response + end, add_special_tokens=False)["input_ids"]
        r = r[: max_length // 2] if len(r) > max_length // 2 else r
        p = p[-(max_length - len(r)) :]
        out.append((p + r, [-100] * len(p) + r))
    return out


def length_grouped_batches(lengths: list[int], micro: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle, then sort inside pools of 32 micro-batches so each batch holds similar lengths."""
    rng = random.Random(seed * 7919 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    pool = micro * 32
    batches = []
    for s in range(0, len(idx), pool):
        chunk = sorted(idx[s : s + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + micro] for i in range(0, len(chunk), micro)]
    rng.shuffle(batches)
    return batches


def split_by_tokens(batch: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """``batch`` cut, in order, into runs of rows whose padded size (rows x longest row) is at most
    ``budget`` tokens; a row longer than the budget goes alone. 0 = no limit.

    Activation memory grows with the padded tokens of a forward pass; the loss is normalised by the whole
    step's target tokens, so the pieces add up to the same gradient.
    """
    if budget <= 0:
        return [batch]
    pieces: list[list[int]] = []
    width = 0
    for i in batch:
        grown = max(width, lengths[i])
        if pieces and (len(pieces[-1]) + 1) * grown <= budget:
            pieces[-1].append(i)
            width = grown
        else:
            pieces.append([i])
            width = lengths[i]
    return pieces


def train_lora(
    source: ModelSource,
    pairs: list[tuple[Prompt, str]],
    cfg: TrainConfig,
    out_dir: Path,
    seed: int,
    init_adapter: Path | None = None,
    lr: float | None = None,
    device: str | None = None,
    desc: str = "training",
    log_dir: Path | None = None,
    weights: list[float] | None = None,
    soft: list[list[float] | None] | None = None,
    schedule_tail: int = 0,
    resume_from: Path | None = None,
) -> TrainResult:
    """Fine-tune a LoRA adapter on (prompt, response) pairs and write it to ``out_dir`` atomically.

    ``weights`` scales each pair's loss; ``soft`` gives a pair a distribution over the option letters that
    replaces the one-hot target at its answer letter (soft cross-entropy); None keeps a pair hard.

    ``schedule_tail``: the schedule is planned this many steps past the run, which leaves its state beside the
    adapter; ``resume_from``: such a run's folder to go on from (``training_state``)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    from .training_speed import attention_for, shared_prefix, speed_up_lora, use_bf16
    from .training_state import data_digest, load_resume_state, resume_state, resumed_schedule

    if not pairs:
        raise TrainingError("no training examples")
    accum = cfg.batch_size // cfg.micro_batch_size
    world = world_size()
    if world > 1 and (schedule_tail or resume_from is not None):
        raise TrainingError(f"{desc}: a schedule stopped part-way and resumed (evolve.mode resume) runs in one process")
    resumed = load_resume_state(resume_from) if resume_from is not None else None
    init_adapter = resume_from if resume_from is not None else init_adapter
    if accum % world:
        raise TrainingError(
            f"{desc}: sft.batch_size / sft.micro_batch_size ({accum}) must be a multiple of the "
            f"number of processes ({world})"
        )
    accelerator = None
    if world > 1:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())  # without cpu=True no gloo group on CPUs
        device = str(accelerator.device)
    device = device or default_device()
    torch.manual_seed(seed)
    tok = load_tokenizer(source)
    model = load_model(source, torch.float32, device)
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        targets: Any = (
            cfg.target_modules
            if cfg.target_modules == "all-linear"
            else [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
        )
        lcfg = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
            bias="none",
        )
        model = get_peft_model(model, lcfg)
    if cfg.gradient_checkpointing:
        # non-reentrant: works when no input requires grad (LoRA on a frozen base) and replays dropout's RNG;
        # transformers 5 renamed the method, 4.x has only the old name
        inner_model = model.get_base_model()
        if hasattr(inner_model, "activation_checkpointing_enable"):
            inner_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            inner_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    data = tokenize_pairs(tok, pairs, cfg.max_length)
    # the prefix every row shares runs once per micro-batch (not with checkpointing or several processes)
    n_prefix = shared_prefix(data) if cfg.shared_prefix and not cfg.gradient_checkpointing and world == 1 else 0
    prefix = torch.tensor([data[0][0][:n_prefix]], device=device) if n_prefix else None
    data = [(x[n_prefix:], y[n_prefix:]) for x, y in data]
    # hashed only where a schedule is handed over: a run that neither resumes nor stops part-way needs none
    digest = data_digest(data, seed, cfg.micro_batch_size) if resumed or schedule_tail else ""
    lengths = [len(x) for x, _ in data]
    targets = row_targets(tok, data, weights, soft, desc)
    micro_per_epoch = math.ceil(len(data) / cfg.micro_batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / accum))
    total = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(steps_per_epoch * cfg.epochs))
    first, planned, peak = resumed_schedule(resumed, total, schedule_tail, lr or cfg.lr, desc)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=peak, weight_decay=cfg.weight_decay)
    if resumed:
        opt.load_state_dict(resumed["optimizer"])
    if accelerator is not None:  # the scheduler stays ours: accelerate's would step once per process
        model, opt = accelerator.prepare(model, opt)
        params = [p for p in model.parameters() if p.requires_grad]
    for param_group in opt.param_groups:  # the schedule scales this; a resumed one starts at step `first`
        param_group["initial_lr"] = peak
    sched = get_cosine_schedule_with_warmup(opt, int(round(cfg.warmup_ratio * planned)), planned, last_epoch=first - 1)
    bf16 = use_bf16(cfg, device)
    speed_up_lora(model, bf16, cfg.fast_dropout)
    pad = tok.pad_token_id

    def micro_batches():
        epoch = 0
        while True:
            yield from length_grouped_batches(lengths, cfg.micro_batch_size, seed, epoch)
            epoch += 1

    def total_over_processes(x: float) -> float:
        if accelerator is None:
            return x
        return float(accelerator.reduce(torch.tensor([x], dtype=torch.float64, device=device), "sum").item())

    stream = micro_batches()
    skipped = resumed["micro_batches"] if resumed and resumed["data_digest"] == digest else 0
    for _ in range(skipped):  # the same rows as the run it goes on from: the stream goes on where that stopped
        next(stream)
    if resumed:
        torch.set_rng_state(resumed["rng"])
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward_args = inspect.signature(inner.forward).parameters
    head_select = "logits_to_keep" in forward_args
    cache_arg = "cache" if "cache" in forward_args else "past_key_values"
    writer = None
    if log_dir is not None and is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(log_dir))
    history: list[dict[str, float]] = []
    start = time.time()
    bar = progress(range(total), desc=desc, unit="step", disable=not is_main())
    loss_value = float("nan")
    rank = int(accelerator.process_index) if accelerator is not None else 0
    for step in bar:
        opt.zero_grad(set_to_none=True)
        group = [next(stream) for _ in range(accum)]
        n_target = sum(sum(1 for t in data[i][1] if t != -100) for mb in group for i in mb)
        mine = group[rank::world]
        step_loss = 0.0
        tokens_in_step = 0  # the rows' tokens, prefix included, padding not
        computed_in_step = 0  # tokens run through the model: the shared prefix once, padding included
        pieces = [p for mb in mine for p in split_by_tokens(mb, lengths, cfg.micro_batch_tokens)]
        for j, mb in enumerate(pieces):
            width = max(lengths[i] for i in mb)
            ids = torch.full((len(mb), width), pad, dtype=torch.long)
            labels = torch.full((len(mb), width), -100, dtype=torch.long)
            mask = torch.zeros((len(mb), width), dtype=torch.long)
            for r, i in enumerate(mb):
                x, y = data[i]
                ids[r, : len(x)] = torch.tensor(x)
                labels[r, : len(y)] = torch.tensor(y)
                mask[r, : len(x)] = 1
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            # gradients are averaged over processes only after the last micro-batch of the step
            sync = (
                contextlib.nullcontext() if accelerator is None or j == len(pieces) - 1 else accelerator.no_sync(model)
            )
            with sync, attention_for(model, width + n_prefix, cfg.eager_attention):
                # token-weighted mean over the whole effective batch (every process's micro-batches)
                loss = response_loss(
                    model,
                    ids,
                    mask,
                    labels,
                    bf16,
                    head_select,
                    targets and [targets[i] for i in mb],
                    prefix,
                    cache_arg,
                ) / max(n_target, 1)
                bad = (
                    total_over_processes(0.0 if torch.isfinite(loss) else 1.0)
                    if accelerator
                    else not torch.isfinite(loss)
                )
                if bad:
                    raise TrainingError(
                        f"{desc}: loss is {loss.item() if not torch.isfinite(loss) else 'not finite'} at "
                        f"step {step + 1}; nothing was written (lower the learning rate or check the data)"
                    )
                # DDP averages gradients over the W processes; scaling by W makes that average their sum
                (loss * world).backward()
            step_loss += loss.item()
            tokens_in_step += int(mask.sum()) + n_prefix * len(mb)
            computed_in_step += ids.numel() + n_prefix
        step_loss = total_over_processes(step_loss)
        tokens_in_step = int(total_over_processes(tokens_in_step))
        if accelerator is not None:
            accelerator.clip_grad_norm_(params, 1.0)
        else:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        loss_value = step_loss
        history.append(
            {
                "step": step + 1,
                "loss": round(step_loss, 6),
                "lr": sched.get_last_lr()[0],
                "tokens": tokens_in_step,
                "computed_tokens": int(total_over_processes(computed_in_step)),
                "seconds": round(time.time() - start, 3),
            }
        )
        bar.set_postfix_str(f"loss {step_loss:.4f}")
        if writer is not None:
            writer.add_scalar("train/loss", step_loss, step + 1)
            writer.add_scalar("train/lr", sched.get_last_lr()[0], step + 1)
            writer.add_scalar("train/tokens", tokens_in_step, step + 1)
    if writer is not None:
        writer.close()
    seconds = time.time() - start
    summary: dict[str, Any] = {
        "steps": total,
        "examples": len(data),
        "final_loss": loss_value,
        "seconds": round(seconds, 2),
        "bf16_autocast": bf16,
        "shared_prefix_tokens": n_prefix,
        "lr": peak,
        "effective_batch": cfg.batch_size,
        "init_adapter": str(init_adapter) if init_adapter else None,
    }
    handover = None
    if planned > total or first:
        summary["schedule"] = {"from_step": first, "to_step": first + total, "planned_steps": planned}
    if first + total < planned:
        handover = resume_state(opt, first + total, planned, digest, skipped + total * accum, peak)
    if accelerator is None:
        save_adapter(model, tok, history, summary, out_dir, resume=handover)
    else:
        summary["processes"] = world
        accelerator.wait_for_everyone()
        from accelerate.utils import DistributedType

        # FSDP and DeepSpeed hold the weights in pieces: gather them (every process takes part)
        sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        state = accelerator.get_state_dict(model) if sharded else None
        if is_main():
            save_adapter(accelerator.unwrap_model(model), tok, history, summary, out_dir, state_dict=state)
        accelerator.wait_for_everyone()
    if is_main():
        log(
            f"{desc}: {total} steps on {len(data)} examples in {seconds:.0f}s, final loss {loss_value:.4f} -> {out_dir}"
        )
    return TrainResult(out_dir, total, loss_value, seconds, len(data))


def save_adapter(
    model: Any,
    tok: Any,
    history: list[dict[str, float]],
    summary: dict[str, Any],
    out_dir: Path,
    state_dict: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> None:
    """Write the PEFT folder under a hidden temporary name, fsync it, then rename it into place.

    A new ``out_dir`` is one rename. Into an existing one (a stage folder holding its in-progress marker)
    each file is renamed on its own, ``adapter_config.json`` last, so a reader that finds the config finds
    the weights; the stage manifest written after that marks the whole folder finished.
    """
    fresh = not out_dir.exists()
    tmp = out_dir.with_name(f".{out_dir.name}.tmp") if fresh else out_dir / ".adapter.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if state_dict is None:
        model.save_pretrained(str(tmp))
    else:
        model.save_pretrained(str(tmp), state_dict=state_dict)
    tok.save_pretrained(str(tmp))  # the tokenizer beside the adapter lets vLLM and PEFT users load it alone
    with open(tmp / "train_log.jsonl", "w") as f:
        f.write("".join(json.dumps(h) + "\n" for h in history))
    (tmp / "train_summary.json").write_text(json.dumps(summary, indent=2))
    if resume is not None:
        import torch

        from .training_state import STATE_FILE

        torch.save(resume, tmp / STATE_FILE)
    files = sorted(tmp.iterdir(), key=lambda p: (p.name == "adapter_config.json", p.name))
    for p in files:
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(tmp)
    if fresh:
        os.rename(tmp, out_dir)
    else:
        for p in files:
            os.replace(p, out_dir / p.name)
        tmp.rmdir()
        fsync_dir(out_dir)
    fsync_dir(out_dir.parent)
