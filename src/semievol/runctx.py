"""What the stages share within one process: the config, the task, the run folder and one engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig, fingerprint_settings
from .engines import Engine, engine_for
from .engines.cached import CachedEngine, CallCache
from .rundir import CACHE_FILE, fingerprint
from .tasks import Task


@dataclass(frozen=True)
class Adapter:
    """A trained LoRA adapter folder, named for the engine by its role and the fingerprint of its stage."""

    role: str
    path: Path
    fingerprint: str

    @property
    def name(self) -> str:
        return f"{self.role}-{self.fingerprint}"


@dataclass
class RunContext:
    cfg: RunConfig
    task: Task
    run_dir: Path
    engine: Engine | None = None
    quiet: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    _cached: CachedEngine | None = field(default=None, repr=False)

    def get_engine(self) -> Engine:
        """The run's engine, built on first use."""
        if self.engine is None:
            self.engine = engine_for(self.cfg.model, quiet=self.quiet)
        return self.engine

    def cached_engine(self) -> CachedEngine:
        """The run's engine with its calls remembered in ``RUN_DIR/cache/model_calls.jsonl``."""
        if self._cached is None:
            engine = self.get_engine()
            model = fingerprint(engine.name, engine.model_id(), fingerprint_settings(self.cfg.model))
            self._cached = CachedEngine(engine, CallCache(self.run_dir / CACHE_FILE, model))
        return self._cached

    def adapter(self, adapter: Adapter) -> str:
        """Add ``adapter`` to the engine (once; its weights' digest keys the cache) and return its name."""
        cached = self.cached_engine()
        if adapter.name not in cached.cache.adapters:
            cached.add_adapter(adapter.name, str(adapter.path))
        return adapter.name
