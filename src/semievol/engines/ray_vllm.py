"""The ``ray-vllm`` engine outside propagate: cluster-scale calls through Ray Data's LLM processor over vLLM
replicas. (Propagate with ``ray-vllm`` runs like engine ``ray``, through ``ray_pool``: Ray Data over the
unlabeled rows, with actors that each hold a ``vllm`` engine instead of an ``hf`` one.)

Each engine call becomes a Ray dataset of rows (the prompt rendered here with the model's chat template,
its SamplingParams, the LoRA adapter folder as ``model``), run through a processor built from
``vLLMEngineProcessorConfig`` with one vLLM replica per ``concurrency``. Starting the replicas takes
minutes, and a processor runs once per call, so select and evaluate pay that start-up once per call.
Ray's rows hold one completion each, so n samples are n rows with their own seeds. Adapter folders must
be readable from every node (a shared file system). The row mapping lives in ``vllm_mapping`` (pure,
tested without Ray).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..prompts import Prompt, render
from . import vllm_mapping as vm
from .base import EngineError, Sample
from .vllm import DTYPES

KEEP = ("semievol_index", "generated_text", "generated_tokens", "logprobs", "prompt_logprobs", "prompt_token_ids")


class RayVLLMEngine:
    name = "ray-vllm"

    def __init__(
        self,
        model: str = "embedded",
        dtype: str = "auto",
        batch_size: int = 64,
        concurrency: int = 1,
        tensor_parallel_size: int = 1,
        max_lora_rank: int = 64,
        quiet: bool = False,
        **_: Any,
    ) -> None:
        try:
            import ray  # noqa: F401
            import vllm  # noqa: F401
            from ray.data import llm  # noqa: F401
        except ImportError:
            raise EngineError(
                "model.engine 'ray-vllm' needs Ray Data's LLM support and vLLM: pip install 'semievol[ray-vllm]'"
            ) from None
        from ..models import load_tokenizer, resolve_model

        self.source = resolve_model(model)
        self.tokenizer = load_tokenizer(self.source)
        self.letter_ids = vm.letter_token_ids(self.tokenizer)
        self.stop_ids = [
            t
            for t in {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
            if isinstance(t, int) and t >= 0
        ]
        path = f"{self.source.path}/{self.source.gguf_file}" if self.source.gguf_file else self.source.path
        self.processor_config = {
            "model_source": path,
            "batch_size": batch_size,
            "concurrency": concurrency,
            "apply_chat_template": False,  # prompts arrive rendered: the option prefix follows the template
            "tokenize": True,
            "detokenize": True,
            "engine_kwargs": {
                "dtype": DTYPES[dtype],
                "enable_prefix_caching": True,
                "enable_lora": True,
                "max_lora_rank": max_lora_rank,
                "max_logprobs": vm.TOP_LOGPROBS,
                "logprobs_mode": vm.LOGPROB_MODE,
                "tensor_parallel_size": tensor_parallel_size,
            },
        }
        self.adapters: dict[str, str] = {}
        self.options_outside_top = 0

    def model_id(self) -> str:
        return f"{self.source.label} (vllm, {vm.LOGPROB_MODE})"

    def describe(self) -> dict[str, Any]:
        return vm.describe(self.name, self.source.label, self.options_outside_top)

    def add_adapter(self, name: str, path: str) -> None:
        self.adapters[name] = path

    def _lora(self, adapter: str | None) -> str | None:
        if adapter is not None and adapter not in self.adapters:
            raise EngineError(f"adapter '{adapter}' was not added")
        return None if adapter is None else self.adapters[adapter]

    def _run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import ray
        from ray.data import llm

        build = getattr(llm, "build_processor", None) or llm.build_llm_processor  # type: ignore[attr-defined]
        config: Any = llm.vLLMEngineProcessorConfig
        processor = build(config(**self.processor_config), postprocess=lambda row: {k: row.get(k) for k in KEEP})
        return processor(ray.data.from_items(rows)).take_all()

    def _texts(self, prompts: list[Prompt]) -> list[str]:
        return [render(self.tokenizer, p) for p in prompts]

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        lora = self._lora(adapter)
        rows = [vm.processor_row(i, t, vm.score_params(), lora) for i, t in enumerate(self._texts(prompts))]
        out: list[np.ndarray] = [np.zeros(0)] * len(prompts)
        for r in self._run(rows):
            i = int(r["semievol_index"])
            out[i], missing = vm.option_distribution(r["logprobs"][0], self.letter_ids, n_options[i])
            self.options_outside_top += missing
        return out

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        rows = vm.sample_rows(
            self._texts(prompts),
            [p.key() for p in prompts],
            n,
            temperature,
            seed,
            max_new_tokens,
            self.stop_ids,
            self._lora(adapter),
        )
        return vm.gather_samples(self._run(rows), len(prompts), n, temperature, self.stop_ids)
