"""The training loss over response tokens: hard targets (the answer's tokens) or, for multiple choice, soft
targets (a distribution over the option letters at the answer position), each row with its weight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UserError


class TrainingError(UserError):
    """Training cannot go on (for example a non-finite loss); nothing was written."""


@dataclass
class RowTarget:
    """How one training row's loss departs from plain cross-entropy: a weight, and optionally a soft target
    (``dist`` over the option tokens ``token_ids``) at label position ``position``."""

    weight: float = 1.0
    position: int = -1
    token_ids: list[int] | None = None
    dist: list[float] | None = None


def letter_token_ids(tok: Any, n: int) -> list[int]:
    """Token ids of ' A', ' B', ... as they follow 'Answer:' (the engines score the same tokens)."""
    from .answers import LETTERS

    return [tok.encode(" " + letter, add_special_tokens=False)[-1] for letter in LETTERS[:n]]


def row_targets(
    tok: Any,
    data: list[tuple[list[int], list[int]]],
    weights: list[float] | None,
    soft: list[list[float] | None] | None,
    desc: str,
) -> list[RowTarget] | None:
    """One RowTarget per row, or None when every row is a plain hard target of weight 1."""
    if weights is None and soft is None:
        return None
    out = []
    for i, (_, labels) in enumerate(data):
        t = RowTarget(weight=float(weights[i]) if weights is not None else 1.0)
        q = soft[i] if soft is not None else None
        if q is not None:
            ids = letter_token_ids(tok, len(q))
            found = [j for j, y in enumerate(labels) if y in ids]
            if not found:
                raise TrainingError(f"{desc}: row {i} has a soft target but no option letter in its response")
            t.position, t.token_ids, t.dist = found[-1], ids, [float(x) for x in q]
        out.append(t)
    return out


def response_loss(
    model: Any,
    ids: Any,
    mask: Any,
    labels: Any,
    bf16: bool,
    head_select: bool,
    targets: list[RowTarget] | None = None,
    prefix: Any = None,
    cache_arg: str = "cache",
) -> Any:
    """Summed cross-entropy of the target tokens (labels != -100) given everything before them.

    With ``head_select`` the output head runs only at the positions where some row has a target next
    (``logits_to_keep`` as indices): for a short response after a long prompt that is a few positions out
    of hundreds, and the [rows, positions, vocabulary] logits took most of a step's memory. ``targets``
    (one per row) weights each row's tokens and puts soft targets at answer letters.

    ``prefix`` ([1, P] token ids): every row begins with these tokens, and ``ids``, ``mask`` and ``labels`` hold
    only what follows them. The prefix runs once, its key/value cache is repeated for each row and the rows run
    on top of it; the gradient flows back through the repeated cache into the one prefix pass, so the loss and
    the gradients are those of the whole rows (up to rounding) for the prefix's compute once instead of once
    per row. ``cache_arg`` is the model's name for the cache argument (transformers 4.x: past_key_values).
    """
    import torch

    kind = "cuda" if ids.device.type == "cuda" else "cpu"
    keep = torch.nonzero((labels[:, 1:] != -100).any(0)).squeeze(-1)
    kw: dict[str, Any] = {"logits_to_keep": keep} if head_select else {}
    with torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=bf16):
        if prefix is not None:
            out = model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, logits_to_keep=1)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            cache.batch_repeat_interleave(ids.shape[0])
            mask = torch.cat(
                [torch.ones((ids.shape[0], prefix.shape[1]), dtype=mask.dtype, device=mask.device), mask], 1
            )
            kw |= {cache_arg: cache, "use_cache": True}
        logits = model(input_ids=ids, attention_mask=mask, **kw).logits
    if head_select:
        logits, target = logits.float(), labels[:, keep + 1]
    else:
        logits, target = logits[:, :-1].float(), labels[:, 1:]
    if targets is None:
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
        )
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
    ).view(target.shape)
    for r, t in enumerate(targets):
        if t.dist is None:
            continue
        # the logits that predict label position t.position sit at position - 1 of the input
        col = int(torch.nonzero(keep == t.position - 1)[0, 0]) if head_select else t.position - 1
        logp = torch.log_softmax(logits[r, col], dim=-1)[torch.tensor(t.token_ids, device=logits.device)]
        q = torch.tensor(t.dist, dtype=logp.dtype, device=logp.device)
        per_token[r, col] = -(q / q.sum() * logp).sum()
    w = torch.tensor([t.weight for t in targets], dtype=per_token.dtype, device=per_token.device)
    return (per_token * w[:, None]).sum()
