"""A config from a YAML file and flags: values checked and converted to the annotated types, unknown keys
refused with the closest setting, and the table of flags and docstrings the CLI is generated from."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from .fields import ConfigError
from .stages import SECTIONS, RunConfig


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check and convert one value to the annotated type; ConfigError names the field."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        last: ConfigError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, name)
            except ConfigError as e:
                last = e
        raise last or ConfigError(f"{name}: bad value {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):  # YAML 1.1 reads a bare on/off as a bool
            value = "on" if value else "off"
        if value not in choices:
            raise ConfigError(f"{name}: must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin is list:
        (inner,) = get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: must be a list, got {type(value).__name__}")
        return [_coerce(v, inner, name) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{name}: must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: must be a number, got {value!r}")
        number: float | None = None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{name}: must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{name}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name}: must be a string, got {value!r}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def _all_settings() -> list[str]:
    """Every setting as written in a YAML file: 'seed', 'select.theta', ..."""
    out = []
    for f in dataclasses.fields(RunConfig):
        if f.name in SECTIONS:
            out += [f"{f.name}.{sf.name}" for sf in dataclasses.fields(_hints(RunConfig)[f.name])]
        else:
            out.append(f.name)
    return out


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    """An unknown key, with the closest setting in its own section or, failing that, in any section."""
    close = difflib.get_close_matches(key, known, n=1)
    if not close:  # perhaps another section's setting: 'theta' at the top means 'select.theta'
        dotted = _all_settings()
        leaves = sorted({d.rsplit(".", 1)[-1] for d in dotted})
        leaf = key if key in leaves else next(iter(difflib.get_close_matches(key, leaves, n=1)), None)
        close = [d for d in dotted if d.rsplit(".", 1)[-1] == leaf]
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return ConfigError(f"{where}{key}: unknown setting{hint}")


def build_section(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise _unknown(key, list(fields), prefix)
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(prefix) else f"{prefix}{msg}") from None


def build_config(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from a nested dict (a parsed YAML file merged with flag overrides)."""
    if not isinstance(values, dict):
        raise ConfigError("config: the file must hold a mapping of settings")
    from ..secret_values import check_no_secrets

    check_no_secrets(values)  # first: a key must not reach config.yaml, nor an error message
    top: dict[str, Any] = {}
    known = [f.name for f in dataclasses.fields(RunConfig)]
    for key, value in values.items():
        k = key.replace("-", "_")
        if k not in known:
            raise _unknown(k, known, "")
        if k in SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{k}: must be a mapping of settings")
            sec_cls = _hints(RunConfig)[k]
            top[k] = build_section(sec_cls, value, prefix=f"{k}.")
        else:
            top[k] = _coerce(value, _hints(RunConfig)[k], k)
    return RunConfig(**top)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: config file is not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{p}:{where} not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to read") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the file must hold a mapping of settings")
    from ..secret_values import check_no_secrets

    try:  # a key in the file is refused even where a flag overrides it
        check_no_secrets(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    for key in SECTIONS:  # checked here: a flag for the same section would otherwise replace the bad value
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ConfigError(f"{p}: {key}: must be a mapping of settings")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a config dataclass.

    Cached: reading a class's source is slow next to the rest of building the CLI, which asks once per
    sub-command."""
    import ast
    import inspect
    import textwrap

    src = textwrap.dedent(inspect.getsource(cls))
    tree = ast.parse(src)
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())  # one line, however wrapped
    return docs


def flag_table() -> list[tuple[str, str | None, str, str, Any, Any]]:
    """(dotted name, short alias or None, section, field, type, default) for every setting."""
    rows: list[tuple[str, str | None, str, str, Any, Any]] = []
    names: dict[str, int] = {}
    hints_run = _hints(RunConfig)
    entries: list[tuple[str, str, Any, Any]] = []
    for f in dataclasses.fields(RunConfig):
        if f.name in SECTIONS:
            cls = hints_run[f.name]
            inst, hints = cls(), _hints(cls)
            for sf in dataclasses.fields(cls):
                entries.append((f.name, sf.name, hints[sf.name], getattr(inst, sf.name)))
        else:
            entries.append(("", f.name, hints_run[f.name], getattr(RunConfig(), f.name)))
    for _, fname, _, _ in entries:
        names[fname] = names.get(fname, 0) + 1
    for sec, fname, tp, default in entries:
        dotted = f"{sec}.{fname}" if sec else fname
        alias = fname if names[fname] == 1 and sec else None
        rows.append((dotted, alias, sec, fname, tp, default))
    return rows
