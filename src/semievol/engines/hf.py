"""The transformers engine: one base model, LoRA adapters switched on and off, batched by length.

Prompts are rendered with the tokenizer's chat template, sorted by token length so a batch pads little,
left-padded, and run under ``torch.inference_mode``. Base and warm models are the same weights: PEFT's
``disable_adapter()`` gives the base model, ``set_adapter(name)`` a warm or evolved one.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..answers import LETTERS
from ..progress import progress
from ..prompts import Prompt, render
from .base import EngineError, Sample


def _contiguous_input(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Hand the output head a contiguous input.

    With ``logits_to_keep=1`` the head gets ``hidden[:, -1:, :]``, a strided view; torch's CPU linear on
    such a view computes logits for every position of the batch before keeping the last one (memory and
    FLOPs for nothing). A copy of one row per prompt avoids both.
    """
    return (args[0].contiguous(), *args[1:])


class HFEngine:
    name = "hf"

    def __init__(
        self,
        model: str = "embedded",
        dtype: str = "auto",
        batch_size: int = 16,
        batch_tokens: int = 4096,
        device: str | None = None,
        max_length: int = 2048,
        quiet: bool = False,
        prefix_reuse: bool = True,
        **_: Any,
    ) -> None:
        from ..models import default_device, load_model, load_tokenizer, pick_dtype, resolve_model

        self.source = resolve_model(model)
        self.device = device or default_device()
        self.dtype = pick_dtype(dtype, self.device)
        self.tokenizer = load_tokenizer(self.source)
        self.model = load_model(self.source, self.dtype, self.device)
        head = self.model.get_output_embeddings()
        if head is not None:
            head.register_forward_pre_hook(_contiguous_input)
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.max_length = max_length
        self.quiet = quiet
        self.prefix_reuse = prefix_reuse
        self._system_ids: dict[tuple[str, bool], list[int]] = {}
        # transformers 5 takes the KV cache as 'cache', 4.x as 'past_key_values'
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.adapters: dict[str, str] = {}
        self._letter_ids = self._option_token_ids()

    # ------------------------------------------------------------------ set-up

    def model_id(self) -> str:
        return self.source.label

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.source.label,
            "logprob_mode": "exact: softmax of the next-token logits over the option-letter tokens after the prompt",
        }

    def _option_token_ids(self) -> list[int]:
        """Token id of ' A', ' B', ... (the letter as it follows 'Answer:')."""
        ids = []
        for letter in LETTERS:
            toks = self.tokenizer.encode(" " + letter, add_special_tokens=False)
            if not toks:
                raise EngineError(f"the tokenizer cannot encode the option letter {letter}")
            ids.append(toks[0] if len(toks) == 1 else toks[-1])
        return ids

    def add_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        if name in self.adapters:
            return
        if not name.replace("-", "_").isidentifier():
            raise EngineError(f"adapter name '{name}' must be letters, digits, '-' or '_'")
        if not self.adapters:
            self.model = PeftModel.from_pretrained(self.model, path, adapter_name=self._peft_name(name))
        else:
            self.model.load_adapter(path, adapter_name=self._peft_name(name))
        self.model.to(device=self.device, dtype=self.dtype)
        self.model.eval()
        self.adapters[name] = path

    @staticmethod
    def _peft_name(name: str) -> str:
        """PEFT keeps adapters as submodule keys, so a name like 'eval' or 'train' would clash with torch's
        Module attributes; every name gets a prefix no attribute has."""
        return "sv_" + name.replace("-", "_")

    @contextlib.contextmanager
    def _use(self, adapter: str | None) -> Iterator[Any]:
        if adapter is not None and adapter not in self.adapters:
            raise EngineError(f"adapter '{adapter}' was not added")
        if not self.adapters:
            yield self.model
        elif adapter is None:
            with self.model.disable_adapter():
                yield self.model
        else:
            self.model.set_adapter(self._peft_name(adapter))
            yield self.model

    # ------------------------------------------------------------------ rendering

    def render(self, prompt: Prompt) -> str:
        return render(self.tokenizer, prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        ids = self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"]
        return ids[-self.max_length :]

    def _batches(self, lengths: list[int], desc: str, extra: int = 0) -> Iterator[list[int]]:
        """Indices grouped into batches of similar length, longest first (memory peaks early).

        A batch holds at most ``batch_size`` prompts and, when ``batch_tokens`` is set, at most that many
        padded tokens (``extra`` tokens of shared prefix count for each row): attention memory grows with
        rows x length^2, so a fixed row count let a few long prompts take gigabytes.
        """
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            b = batches[-1] if batches else None
            width = lengths[b[0]] + extra if b else 0  # the first (longest) row sets the padded width
            if (
                b is None
                or len(b) >= self.batch_size
                or (self.batch_tokens and (len(b) + 1) * width > self.batch_tokens)
            ):
                batches.append([i])
            else:
                b.append(i)
        yield from progress(batches, desc=desc, unit="batche", disable=self.quiet or len(batches) < 2)

    def _pad_left(self, seqs: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ the interface

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        import torch

        encoded = [self.encode(p) for p in prompts]
        out: list[np.ndarray | None] = [None] * len(prompts)
        groups: dict[tuple[int, ...], list[int]] = {}  # prompts by the system turn they share (() = none)
        for i, p in enumerate(prompts):
            groups.setdefault(tuple(encoded[i][: self._system_tokens(p, encoded[i])]), []).append(i)
        with torch.inference_mode(), self._use(adapter) as model:
            for prefix, members in groups.items():
                shared = len(prefix)
                cache = self._prefix_cache(model, list(prefix)) if shared else None
                for part in self._batches([len(encoded[i]) - shared for i in members], "scoring", extra=shared):
                    batch = [members[j] for j in part]
                    if cache is None:
                        ids, mask = self._pad_left([encoded[i] for i in batch])
                        # no KV cache: scoring needs none, and building it costs memory per token
                        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, use_cache=False).logits[
                            :, -1, :
                        ]
                    else:
                        logits = self._last_logits_after_prefix(
                            model, cache, shared, [encoded[i][shared:] for i in batch]
                        )
                    logits = logits.float()
                    for row, i in enumerate(batch):
                        sel = logits[row, self._letter_ids[: n_options[i]]]
                        out[i] = torch.softmax(sel, dim=-1).cpu().numpy().astype(np.float64)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ shared-prefix reuse
    # A prompt marked ``shared_system`` (the same instructions for every question) is split after its
    # system turn. That turn is run once per call; its KV cache is repeated across each batch and only the
    # rest of each prompt is computed, right-padded, with the logits taken at each row's last real token.
    # Whether and where a prompt is split depends on the prompt alone, never on the other prompts of the
    # call, so a row's scores do not change with chunking, sharding or resumption. A prompt whose system
    # message carries its own demos or candidate answers declares how many of its first characters every
    # prompt of its kind shares (``shared_chars``, the instructions before them); those tokens are run once
    # the same way.

    MIN_SHARED = 16

    def _system_tokens(self, prompt: Prompt, ids: list[int]) -> int:
        """Length of the prompt's shared prefix at the start of ``ids`` (0: do not split this prompt): its whole
        system turn (``shared_system``) or the tokens of its system message's first ``shared_chars`` characters."""
        if not self.prefix_reuse or not prompt.messages or prompt.messages[0][0] != "system":
            return 0
        if prompt.shared_system:
            key = prompt.messages[0][1]
        elif prompt.shared_chars:
            key = prompt.messages[0][1][: prompt.shared_chars]
        else:
            return 0
        turn = self._system_ids.get((key, prompt.shared_system))
        if turn is None:
            text = self.tokenizer.apply_chat_template(
                [{"role": "system", "content": key}], tokenize=False, add_generation_prompt=False
            )
            if not prompt.shared_system:  # the template's text up to the end of the shared characters
                text = text[: text.rfind(key) + len(key)]
            turn = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not prompt.shared_system:
                turn = turn[:-1]  # the last token may merge with the characters that follow it
            self._system_ids[(key, prompt.shared_system)] = turn
        # the turn must be a true token prefix (a template may rewrite it) and leave the prompt a token
        n = len(turn)
        return n if self.MIN_SHARED <= n < len(ids) and ids[:n] == turn else 0

    def _prefix_cache(self, model: Any, prefix: list[int]) -> Any:
        import torch

        ids = torch.tensor([prefix], device=self.device)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        # transformers 5 names the cache 'cache'; 4.x 'past_key_values'
        return out.cache if getattr(out, "cache", None) is not None else out.past_key_values

    def _last_logits_after_prefix(self, model: Any, prefix_cache: Any, shared: int, suffixes: list[list[int]]) -> Any:
        import copy

        import torch

        width = max(len(s) for s in suffixes)
        ids = torch.full((len(suffixes), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(suffixes), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for i, s in enumerate(suffixes):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, shared : shared + len(s)] = 1
        last = torch.tensor([[len(s) - 1] for s in suffixes])
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(suffixes))
        out = model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            logits_to_keep=last.to(self.device),
            use_cache=True,
            **{self._cache_arg: cache},
        )
        return out.logits[:, -1, :]

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        import torch

        encoded = [self.encode(p) for p in prompts]
        out: list[list[Sample]] = [[] for _ in prompts]
        greedy = temperature <= 0
        stop = [
            t
            for t in {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
            if isinstance(t, int) and t >= 0
        ]
        with torch.inference_mode(), self._use(adapter) as model:
            for b, batch in enumerate(self._batches([len(e) for e in encoded], "generating")):
                ids, mask = self._pad_left([encoded[i] for i in batch])
                torch.manual_seed(seed * 1_000_003 + b)
                gen = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    do_sample=not greedy,
                    temperature=temperature if not greedy else None,
                    top_p=None,
                    top_k=None,
                    num_return_sequences=1 if greedy else n,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=stop,
                    pad_token_id=self.tokenizer.pad_token_id,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
                new = gen.sequences[:, ids.shape[1] :]
                # log-probabilities of the chosen tokens under the (temperature-scaled) sampling distribution
                # one step at a time: a [batch, steps, vocab] copy would be gigabytes for long answers
                chosen = torch.stack(
                    [
                        torch.log_softmax(s.float(), dim=-1).gather(-1, new[:, t : t + 1]).squeeze(-1)
                        for t, s in enumerate(gen.scores)
                    ],
                    dim=1,
                )
                del gen
                per = 1 if greedy else n
                for r in range(new.shape[0]):
                    toks = new[r].tolist()
                    length = len(toks)
                    for j, t in enumerate(toks):
                        if t in stop:
                            length = j
                            break
                    text = self.tokenizer.decode(toks[:length], skip_special_tokens=True)
                    lps = [float(x) for x in chosen[r, : max(length, 1)].tolist() if math.isfinite(x)]
                    out[batch[r // per]].append(Sample(text, lps))
        if greedy and n > 1:
            out = [s * n for s in out]
        return out
