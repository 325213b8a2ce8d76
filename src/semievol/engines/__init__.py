"""Inference engines behind one small interface (``base.Engine``), imported lazily by name."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .base import ACTOR_ENGINE, CallsFailed, Engine, EngineError, Sample

if TYPE_CHECKING:
    from ..config import ModelConfig

__all__ = ["ACTOR_ENGINE", "CallsFailed", "Engine", "EngineError", "Sample", "make_engine", "engine_for"]


def make_engine(name: str, **kwargs: Any) -> Engine:
    """Build an engine by name; optional engines are imported only when chosen."""
    if name == "hf":
        from .hf import HFEngine

        return HFEngine(**kwargs)
    if name == "fake":
        from .fake import FakeEngine

        return FakeEngine(**kwargs)
    if name == "openai":
        from .openai import OpenAIEngine

        return OpenAIEngine(**kwargs)
    if name == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(**kwargs)
    if name == "ray":
        from .ray_pool import RayEngine

        return RayEngine(**kwargs)
    if name == "ray-vllm":
        from .ray_vllm import RayVLLMEngine

        return RayVLLMEngine(**kwargs)
    raise EngineError(f"model.engine: unknown engine '{name}' (choose hf, openai, fake, vllm, ray or ray-vllm)")


def engine_for(cfg: ModelConfig, quiet: bool = False) -> Engine:
    """The engine ``cfg.engine`` names, given every model setting (each engine takes the ones it uses)."""
    settings = {k: v for k, v in asdict(cfg).items() if k != "engine"}
    return make_engine(cfg.engine, **settings, quiet=quiet)
