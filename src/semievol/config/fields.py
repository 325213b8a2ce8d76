"""The base of every setting: the config error, and how a field declares whether it counts toward the
fingerprints of the stages that read it."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from ..errors import UserError


class ConfigError(UserError, ValueError):
    """A setting is unknown, of the wrong type or impossible. The message names the field and is one line."""


# How a setting counts toward the fingerprints of the stages that read it (``field(metadata=...)``).
# A setting without metadata decides what a stage computes, so a change re-runs that stage.
# A setting with ``engine`` in its metadata is read by that engine only.


def runtime(default: Any, engine: str | None = None) -> Any:
    """A setting that says where or how fast something runs, not what it computes: it enters no
    fingerprint, so changing it re-runs nothing."""
    return field(default=default, metadata={"fingerprint": "never", "engine": engine})


def added_later(default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    """A setting that decides results but came after runs existed: at its default (what those runs did) it
    enters no fingerprint, so a run folder made before it stays finished; set otherwise, it counts."""
    meta = {"fingerprint": "unless_default"}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def openai_only(default: Any) -> Any:
    """A setting that decides results, but only the openai engine reads it: it counts where model.engine
    is 'openai'."""
    return field(default=default, metadata={"fingerprint": "openai", "engine": "openai"})


# engines that run another one elsewhere give its results: 'ray' runs hf engines in Ray actors, so a stage
# finished with one is finished for the other (sft on one machine, then propagate on the cluster)
SAME_RESULTS = {"ray": "hf"}


def fingerprint_settings(section: Any) -> dict[str, Any]:
    """The settings of a config section that decide what a stage computes: its part of a fingerprint."""
    engine = getattr(section, "engine", None)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        counts = f.metadata.get("fingerprint", "always")
        if counts == "never" or (counts == "openai" and engine != "openai"):
            continue
        value = getattr(section, f.name)
        if counts == "unless_default" and value == (
            f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        ):
            continue
        out[f.name] = value
    if out.get("engine") in SAME_RESULTS:
        out["engine"] = SAME_RESULTS[out["engine"]]
    return out


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{name}: {msg}")
