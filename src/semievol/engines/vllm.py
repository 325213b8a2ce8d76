"""The vLLM engine: offline ``vllm.LLM`` on this machine's GPUs, LoRA adapters as ``LoRARequest``s.

Prefix caching is on, so the many prompts that share a system message and retrieved demos reuse their
computed prefix. n samples come from one request (``SamplingParams(n=...)``) seeded per prompt. The
request and output mapping lives in ``vllm_mapping`` (pure, tested without vLLM); this file only calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..prompts import Prompt, render
from . import vllm_mapping as vm
from .base import EngineError, Sample

DTYPES = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise EngineError(
            "model.engine 'vllm' needs the vllm package (a GPU machine): pip install 'semievol[vllm]'"
        ) from None
    return vllm


class VLLMEngine:
    name = "vllm"

    def __init__(
        self, model: str = "embedded", dtype: str = "auto", max_lora_rank: int = 64, quiet: bool = False, **_: Any
    ) -> None:
        vllm = import_vllm()
        from ..models import load_tokenizer, resolve_model

        self.source = resolve_model(model)
        path = f"{self.source.path}/{self.source.gguf_file}" if self.source.gguf_file else self.source.path
        self.tokenizer = load_tokenizer(self.source)
        self.llm = vllm.LLM(
            model=path,
            tokenizer=self.source.path,
            dtype=DTYPES[dtype],
            enable_prefix_caching=True,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            max_logprobs=vm.TOP_LOGPROBS,
            logprobs_mode=vm.LOGPROB_MODE,
            seed=0,
        )
        self.letter_ids = vm.letter_token_ids(self.tokenizer)
        self.stop_ids = [
            t
            for t in {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
            if isinstance(t, int) and t >= 0
        ]
        self.adapters: dict[str, Any] = {}
        self.quiet = quiet
        self.options_outside_top = 0  # letters scored with the upper bound (outside the top log-probabilities)

    def model_id(self) -> str:
        return f"{self.source.label} (vllm, {vm.LOGPROB_MODE})"

    def describe(self) -> dict[str, Any]:
        return vm.describe(self.name, self.source.label, self.options_outside_top)

    def add_adapter(self, name: str, path: str) -> None:
        from vllm.lora.request import LoRARequest

        if name not in self.adapters:
            self.adapters[name] = LoRARequest(name, len(self.adapters) + 1, path)

    def _lora(self, adapter: str | None) -> Any:
        if adapter is not None and adapter not in self.adapters:
            raise EngineError(f"adapter '{adapter}' was not added")
        return None if adapter is None else self.adapters[adapter]

    def _generate(self, texts: list[str], params: list[dict[str, Any]], adapter: str | None) -> list[Any]:
        from vllm import SamplingParams

        return self.llm.generate(
            texts, [SamplingParams(**p) for p in params], lora_request=self._lora(adapter), use_tqdm=not self.quiet
        )

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        outs = self._generate([render(self.tokenizer, p) for p in prompts], [vm.score_params()] * len(prompts), adapter)
        result = []
        for o, n in zip(outs, n_options, strict=True):
            dist, missing = vm.option_distribution(o.outputs[0].logprobs[0], self.letter_ids, n)
            self.options_outside_top += missing
            result.append(dist)
        return result

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        params = [
            vm.generate_params(n, temperature, vm.prompt_seed(seed, p.key()), max_new_tokens, self.stop_ids)
            for p in prompts
        ]
        outs = self._generate([render(self.tokenizer, p) for p in prompts], params, adapter)
        samples = [
            [vm.sample_from_output(c.text, c.token_ids, c.logprobs, self.stop_ids) for c in o.outputs] for o in outs
        ]
        return [s * n for s in samples] if temperature <= 0 and n > 1 else samples
