"""Keys never enter a run: config values shaped like a credential are refused, and error text is scrubbed.

``check_no_secrets`` walks a config (names and values, at any depth) before anything is built or written
and refuses a value shaped like an API key or token: it would otherwise be written to ``RUN_DIR/config.yaml``.
The message names the setting and the kind of key, never the key. ``scrub`` cuts known secrets out of text
(a server's error reply, say) in every form a server may echo them: raw, and escaped inside a JSON string,
where a ``"`` or ``\\`` in the key becomes ``\\"`` or ``\\\\``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .config.fields import ConfigError

_EDGE = r"(?<![A-Za-z0-9])"
KEY_SHAPES: list[tuple[str, re.Pattern[str]]] = [
    ("a Hugging Face token (hf_...)", re.compile(_EDGE + r"hf_[A-Za-z0-9]{30,}")),
    (
        "a live or test secret key (sk_live_..., rk_test_...)",
        re.compile(_EDGE + r"[sr]k_(?:live|test)_[A-Za-z0-9]{8,}"),
    ),
    ("an API key (sk-...)", re.compile(_EDGE + r"sk-[A-Za-z0-9_\-]{20,}")),
    ("a GitHub token (ghp_...)", re.compile(_EDGE + r"gh[pousr]_[A-Za-z0-9]{30,}")),
    ("an AWS access key id (AKIA...)", re.compile(_EDGE + r"AKIA[0-9A-Z]{16}(?![A-Za-z0-9])")),
    (
        "a URL with a key in its query string",
        re.compile(
            r"[?&;](?:api[_-]?key|key|token|access[_-]?token|auth|secret|password|sig|signature|x-amz-signature)=[^&#\s]+",
            re.IGNORECASE,
        ),
    ),
]  # a password in a URL (user:pass@host) is refused by model.api_base's own check, with its own message


def key_shape(text: str) -> str | None:
    """What kind of credential ``text`` holds, or None."""
    for what, pattern in KEY_SHAPES:
        if pattern.search(text):
            return what
    return None


def check_no_secrets(values: Any, where: str = "") -> None:
    """ConfigError naming the first setting (or setting name) shaped like a key; the key is not echoed."""
    if isinstance(values, dict):
        for k, v in values.items():
            name = f"{where}{k}"
            if isinstance(k, str) and (what := key_shape(k)):
                raise ConfigError(f"{where.rstrip('.') or 'config'}: a setting's name looks like {what}; {_ADVICE}")
            check_no_secrets(v, f"{name}.")
    elif isinstance(values, list | tuple):
        for v in values:
            check_no_secrets(v, where)
    elif isinstance(values, str) and (what := key_shape(values)):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: the value looks like {what}; {_ADVICE}")


_ADVICE = (
    "a key is never a setting (settings are saved in RUN_DIR/config.yaml): put it in the environment "
    "variable that model.api_key_env names"
)


def secret_forms(secret: str) -> list[str]:
    """``secret`` as text may carry it: raw, and JSON-escaped (ASCII-only and not), longest first."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    return sorted((f for f in forms if f), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every form of each secret replaced by ``***``."""
    for s in secrets:
        for form in secret_forms(s):
            text = text.replace(form, "***")
    return text
