"""The one base of every error a user can fix: the CLI prints it as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's config, data, run folder or environment. The message is one line: it names the
    file, row and column or the setting, and says what to do."""

    def __init__(self, msg: object = "") -> None:
        super().__init__(str(msg).replace("\r", "\\r").replace("\n", "\\n"))
