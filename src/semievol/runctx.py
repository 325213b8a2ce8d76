"""What the stages share within one process: the config, the task, the run folder and one engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig, fingerprint_settings
from .engines import Engine, engine_for
from .engines.cached import CachedEngine, CallCache, adapter_digest
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
    adapter_digests: dict[str, str] = field(default_factory=dict)
    """Each adapter added to the engine, by name: a digest of its weights (the call cache's key part)."""
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
            self._cached = CachedEngine(engine, CallCache(self.run_dir / CACHE_FILE, model, self.adapter_digests))
        return self._cached

    def adapter(self, adapter: Adapter) -> str:
        """Add ``adapter`` to the engine (once; its weights' digest keys the call cache) and return its name.

        The cache itself is not read here: propagate adds the warm adapter and never uses the cache."""
        if adapter.name not in self.adapter_digests:
            self.get_engine().add_adapter(adapter.name, str(adapter.path))
            self.adapter_digests[adapter.name] = adapter_digest(adapter.path, adapter.name)
        return adapter.name
