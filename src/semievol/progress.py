"""Progress on long loops: a tqdm bar with an ETA on a terminal, timestamped log lines elsewhere (CI, files).

``set_quiet(True)`` (the CLI's ``--quiet``) turns both off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_QUIET = False


def set_quiet(value: bool) -> None:
    global _QUIET
    _QUIET = value


def is_quiet() -> bool:
    return _QUIET


def log(msg: str) -> None:
    if not _QUIET:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class _Lines(Generic[T]):
    """A tqdm-like wrapper that prints a line every ~10% or 30 s when stderr is not a terminal."""

    def __init__(self, it: Iterable[T], desc: str, total: int | None, unit: str):
        self.it, self.desc, self.total, self.unit = it, desc, total, unit
        self.postfix = ""

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s

    def __iter__(self) -> Iterator[T]:
        start = last = time.time()
        step = max(1, (self.total or 10) // 10)
        n = 0
        for item in self.it:
            yield item
            n += 1
            now = time.time()
            if n % step == 0 or now - last > 30 or n == self.total:
                last = now
                rate = n / max(now - start, 1e-9)
                eta = f", eta {((self.total or n) - n) / rate:.0f}s" if self.total else ""
                tot = f"/{self.total}" if self.total else ""
                extra = f" {self.postfix}" if self.postfix else ""
                log(f"{self.desc}: {n}{tot} {self.unit}s ({now - start:.0f}s{eta}){extra}")


def progress(it: Iterable[T], desc: str, total: int | None = None, unit: str = "it", disable: bool = False) -> Any:
    if total is None and hasattr(it, "__len__"):
        total = len(it)  # type: ignore[arg-type]
    if _QUIET or disable:
        return _Silent(it)
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(it, desc=desc, total=total, unit=unit, dynamic_ncols=True)
    return _Lines(it, desc, total, unit)


class _Silent(Generic[T]):
    def __init__(self, it: Iterable[T]):
        self.it = it

    def set_postfix_str(self, s: str) -> None:
        pass

    def __iter__(self) -> Iterator[T]:
        return iter(self.it)
