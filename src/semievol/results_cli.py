"""Sub-commands that work on a finished run directory (report, pseudo-label browser, export, merge)."""

from __future__ import annotations

import argparse

COMMANDS: dict[str, str] = {}


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the main parser."""


def dispatch(args: argparse.Namespace) -> int:
    raise AssertionError(args.command)
