"""What makes a LoRA training step cheap on a CPU without changing what it computes: bf16 autocast where the CPU
has fast bf16 (``use_bf16``), the prompt prefix every row shares run once per micro-batch (``shared_prefix``;
``losses.response_loss`` runs it), and two changes to the PEFT model (``speed_up_lora``):

* **LoRA dropout from 16-bit random numbers.** torch's CPU dropout draws a float per element through
  ``bernoulli_``; in a LoRA step of the embedded model on 8 rows that took 40% of the step (210 draws, one per
  adapted layer). ``Int16Dropout`` keeps each element with the same probability (``p`` rounded to 1/65536) and
  scales by 1/(1 - p) as ``nn.Dropout`` does, from four 16-bit lanes of each 64-bit random integer: about a
  seventh of the time. Seeded by torch's generator like the dropout it replaces.
* **Frozen base weights held in bf16 under bf16 autocast.** Autocast casts an fp32 weight that does not require
  a gradient to bf16 on every call (its cast cache keeps only trainable ones); the cast of the same values
  stored once gives the same bf16 numbers without the copy in every forward and backward pass.

And one choice of kernel per forward pass (``attention_for``): on a CPU, eager attention (matmul, softmax, matmul)
where a row sees at most ``EAGER_MAX_KEYS`` keys, the model's SDPA otherwise. torch's CPU SDPA kernel is a flash
attention whose backward pass is slow for short rows: forward and backward of one layer's attention on one thread
of a 2-core EPYC took 25 ms eager against 46 ms SDPA for 8 rows of 128 tokens, 93 against 110 ms at 256, 242
against 175 ms for 4 rows of 512 (SmolLM2-135M's 9 query and 3 key/value heads of 64). Eager also keeps the
[rows, heads, queries, keys] weights for the backward pass, which grow with the square of the length: at 8 rows
of 256 keys about 28 MB a layer (the fp32 softmax and its bf16 copy), hence the bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .config import TrainConfig


class Int16Dropout(nn.Module):
    """Inverted dropout whose mask comes from 16-bit random integers (see the module docstring)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(p * 65536) - 32768  # keep where the draw, uniform on [-32768, 32767], is at least this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = draws.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def speed_up_lora(model: Any, bf16: bool, fast_dropout: bool = True) -> None:
    """With ``fast_dropout``, swap every LoRA dropout for ``Int16Dropout``; with ``bf16`` autocast on a CPU, store
    the frozen base weights of the adapted linear layers in bf16."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name, drop in list(module.lora_dropout.items()):
            if fast_dropout and isinstance(drop, nn.Dropout) and drop.p > 0:
                module.lora_dropout[name] = Int16Dropout(drop.p)
        base = module.get_base_layer()
        if bf16 and isinstance(base, nn.Linear) and base.weight.device.type == "cpu" and not base.weight.requires_grad:
            base.weight.data = base.weight.data.to(torch.bfloat16)


def use_bf16(cfg: TrainConfig, device: str) -> bool:
    if cfg.bf16 == "off":
        return False
    if cfg.bf16 == "on":
        return True
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    # On a CPU whose bf16 matmul is clearly faster than fp32 (avx512_bf16 on AMD EPYC, AMX on Xeon), bf16
    # autocast over fp32 weights: about 1.9x per LoRA step on a 2-core EPYC (docs/results/run_time.md).
    # Where bf16 is emulated or slow (AVX2-only CPUs, some Xeons) it stays off.
    from .models import cpu_bf16_is_faster

    return cpu_bf16_is_faster()


MIN_SHARED_PREFIX = 16


def shared_prefix(data: list[tuple[list[int], list[int]]]) -> int:
    """Length of the token prefix every training row begins with (the system turn, an instruction every
    question repeats), or 0 when it is shorter than ``MIN_SHARED_PREFIX``.

    It ends at least one token before every row's first target, so the token right after it is never a
    target (its prediction would belong to the prefix's own pass)."""
    if len(data) < 2:
        return 0
    first = data[0][0]
    n = min(next((j for j, y in enumerate(labels) if y != -100), len(labels)) for _, labels in data) - 1
    for x, _ in data[1:]:
        j = 0
        while j < n and x[j] == first[j]:
            j += 1
        n = j
    return n if n >= MIN_SHARED_PREFIX else 0


EAGER_MAX_KEYS = 256


@contextlib.contextmanager
def attention_for(model: Any, keys: int, enabled: bool = True) -> Iterator[None]:
    """Within the block, a CPU model that runs SDPA attention runs eager attention instead when a row sees at most
    ``EAGER_MAX_KEYS`` keys (prefix included); the same function up to rounding, about half the attention time of
    a training step (see the module docstring). Any other model, device or kernel is left as it is."""
    config: Any = getattr(model, "config", None)  # a PEFT model's is its base model's
    switch = (
        enabled
        and keys <= EAGER_MAX_KEYS
        and getattr(config, "_attn_implementation", None) == "sdpa"
        and next(model.parameters()).device.type == "cpu"
    )
    if not switch:
        yield
        return
    config._attn_implementation = "eager"  # read at each forward by the attention layers and the mask builder
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
