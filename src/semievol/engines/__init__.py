"""Inference engines behind one small interface (``base.Engine``), imported lazily by name."""

from __future__ import annotations

from typing import Any

from .base import Engine, EngineError, Sample

__all__ = ["Engine", "EngineError", "Sample", "make_engine"]


def make_engine(name: str, **kwargs: Any) -> Engine:
    """Build an engine by name; optional engines are imported only when chosen."""
    if name == "hf":
        from .hf import HFEngine

        return HFEngine(**kwargs)
    if name == "fake":
        from .fake import FakeEngine

        return FakeEngine(**kwargs)
    if name == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(**kwargs)
    if name == "ray-vllm":
        from .ray_vllm import RayVLLMEngine

        return RayVLLMEngine(**kwargs)
    raise EngineError(f"model.engine: unknown engine '{name}' (choose hf, fake, vllm or ray-vllm)")
