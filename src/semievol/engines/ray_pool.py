"""Propagate on a Ray cluster: the unlabeled rows streamed through Ray Data to a pool of actors, each holding
one engine (``hf`` for engine ``ray``, ``vllm`` for ``ray-vllm``), so the model is loaded once per actor.

``vote_on_cluster`` takes the chunks of rows propagate has not voted on yet, each row with the positions of
its retrieved demos in the labeled pool. It writes them to spool files in the stage folder (one chunk a
line; the folder must be on a file system every node sees, like the adapters), which Ray Data reads
(``read_text``) and maps one chunk at a time over ``ray.actors`` actors reserving ``ray.num_cpus`` CPUs
and ``ray.num_gpus`` GPUs each. An actor votes on a chunk with propagate's own ``vote_chunk``, the same
adapter switching and per-row seeds as one process, and the chunks come back to this process in order, to
be appended to ``votes.jsonl`` as they arrive: the file is byte-identical to a one-process run's. Ray
restarts a killed actor and runs its chunks again (Ray Data's actor tasks are retried without limit); a
chunk is written only once, when its result reaches this process, so no row is lost or doubled.

Outside propagate (select's justification, evaluate), engine ``ray`` answers in this process with an ``hf``
engine built on first use (``RayEngine``): those stages need all of their rows' results in one place.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..prompts import Prompt
from ..stages.voting import Voting, vote_chunk
from ..tasks import Example
from .base import ACTOR_ENGINE, Engine, EngineError, Sample

SPOOL_CHUNKS = 16  # chunks per spool file; Ray Data reads each file as one block
ROW_FIELDS = ("id", "question", "options", "subject", "row")  # what a vote needs (never the gold answer)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError("model.engine 'ray' needs Ray Data: pip install 'semievol[ray]'") from None
    return ray


def actor_engine(name: str, settings: dict[str, Any]) -> Engine:
    """The engine an actor holds: ``hf`` (CPU or GPU) or ``vllm``."""
    if name == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(**settings)
    from .hf import HFEngine

    return HFEngine(**settings)


class RayEngine:
    """Engine ``ray`` for the stages that stay in one process: an ``hf`` engine here, built on first use (a
    propagate run on the cluster never loads the model in this process)."""

    name = "ray"

    def __init__(self, quiet: bool = False, **settings: Any) -> None:
        _import_ray()
        self.settings = settings | {"quiet": quiet}
        self.adapters: dict[str, str] = {}
        self._local: Engine | None = None

    def local(self) -> Engine:
        if self._local is None:
            self._local = actor_engine("hf", self.settings)
            for name, path in self.adapters.items():
                self._local.add_adapter(name, path)
        return self._local

    def model_id(self) -> str:
        return self.local().model_id()

    def describe(self) -> dict[str, Any]:
        return self.local().describe() | {"engine": self.name, "runs_in": "this process (hf)"}

    def add_adapter(self, name: str, path: str) -> None:
        self.adapters[name] = path
        if self._local is not None:
            self._local.add_adapter(name, path)

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        return self.local().score_options(prompts, n_options, adapter)

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        return self.local().generate(prompts, n, temperature, seed, max_new_tokens, adapter)


class VoteActor:
    """One actor of the pool: builds its engine once, then votes on one spooled chunk per call."""

    def __init__(
        self,
        engine: str,
        settings: dict[str, Any],
        adapters: dict[str, str],
        how: Voting,
        pool: list[Example],
        threads: int,
    ) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.engine = actor_engine(engine, settings)
        for name, path in adapters.items():
            self.engine.add_adapter(name, path)
        self.how, self.pool = how, pool
        self.record = json.dumps(self.engine.describe())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for line in batch["text"]:
            item = json.loads(line)
            chunk = [Example(**{k: r[k] for k in ROW_FIELDS}) for r in item["rows"]]
            demos = [[self.pool[j] for j in r["nbrs"]] for r in item["rows"]]
            out.append(json.dumps({"chunk": item["chunk"], "votes": vote_chunk(self.engine, self.how, chunk, demos)}))
        return {"text": np.array(out, dtype=object), "engine": np.array([self.record] * len(out), dtype=object)}


def spool(chunks: Iterable[list[tuple[Example, list[int]]]], folder: Path) -> list[Path]:
    """Write the chunks, one JSON line each (``{"chunk": i, "rows": [...]}``), ``SPOOL_CHUNKS`` to a file.

    ASCII-only JSON: Ray Data splits the files at every line break, Unicode ones included."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files: list[Path] = []
    f: TextIO | None = None
    try:
        for i, chunk in enumerate(chunks):
            if i % SPOOL_CHUNKS == 0:
                if f is not None:
                    f.close()
                files.append(folder / f"rows-{i // SPOOL_CHUNKS:06d}.jsonl")
                f = open(files[-1], "w", encoding="ascii")
            rows = [{k: getattr(e, k) for k in ROW_FIELDS} | {"nbrs": nbrs} for e, nbrs in chunk]
            assert f is not None
            f.write(json.dumps({"chunk": i, "rows": rows}) + "\n")
    finally:
        if f is not None:
            f.close()
    return files


def _one_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[-1] if lines else type(e).__name__


def vote_on_cluster(
    cfg: Any,
    how: Voting,
    chunks: Iterable[list[tuple[Example, list[int]]]],
    pool: list[Example],
    adapters: dict[str, str],
    folder: Path,
    record: dict[str, Any],
) -> Iterator[list[dict[str, Any]]]:
    """The voted rows of each chunk, in the chunks' order, computed by the actor pool ``cfg.ray`` describes.

    Joins the cluster (``ray.address``) unless this process is already connected, and leaves it at the end;
    ``record`` receives what the pool ran (for ``configs.json``). The spool folder is removed at the end."""
    ray = _import_ray()
    rc, engine = cfg.ray, ACTOR_ENGINE[cfg.model.engine]
    record.update(
        {
            "engine": cfg.model.engine,
            "pool": {"actors": rc.actors, "engine": engine, "num_cpus": rc.num_cpus, "num_gpus": rc.num_gpus},
        }
    )
    joined = not ray.is_initialized()
    if joined:
        try:
            ray.init(
                address=rc.address or None, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise EngineError(f"ray.address '{rc.address}': cannot join the Ray cluster: {_one_line(e)}") from None
    try:
        # actors start in folders of their own: every path they read must be absolute
        files = spool(chunks, folder.resolve())
        if not files:
            return
        settings = {k: v for k, v in asdict(cfg.model).items() if k != "engine"} | {"quiet": True}
        if Path(settings["model"]).exists():
            settings["model"] = str(Path(settings["model"]).resolve())
        adapters = {name: str(Path(path).resolve()) for name, path in adapters.items()}
        ds = ray.data.read_text([str(f) for f in files], num_cpus=0)
        ds.context.execution_options.preserve_order = True
        ds.context.enable_progress_bars = False
        ds.context.target_max_block_size = 1  # a block per chunk: each streams out, and is retried, on its own
        ds = ds.map_batches(
            VoteActor,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=rc.actors),
            num_cpus=rc.num_cpus,
            num_gpus=rc.num_gpus,
            fn_constructor_kwargs={
                "engine": engine,
                "settings": settings,
                "adapters": adapters,
                "how": how,
                "pool": pool,
                "threads": cfg.model.threads or max(1, int(rc.num_cpus)),
            },
        )
        waiting: dict[int, list[dict[str, Any]]] = {}
        following = 0
        try:
            for out in ds.iter_rows():
                item = json.loads(out["text"])
                record.setdefault("actor_engine", json.loads(out["engine"]))
                waiting[item["chunk"]] = item["votes"]
                while following in waiting:  # in order even if the pool hands chunks back out of order
                    yield waiting.pop(following)
                    following += 1
        except ray.exceptions.RayError as e:
            raise EngineError(f"propagate on the Ray cluster failed: {_one_line(e)}") from None
        expected = (len(files) - 1) * SPOOL_CHUNKS + sum(1 for _ in open(files[-1], encoding="ascii"))
        if following != expected:
            raise EngineError(f"propagate on the Ray cluster: {following} of {expected} chunks came back")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if joined:
            ray.shutdown()
