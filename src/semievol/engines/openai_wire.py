"""What the openai engine reads off a server's replies: an option distribution from one position's
``top_logprobs``, the wait a Retry-After header asks for, and the errors retrying cannot mend."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..answers import LETTERS

BACKOFF_CAP = 60.0  # seconds: the longest wait between two tries of a request


FATAL = {
    401: "the API key was refused",
    403: "access is forbidden",
    404: "not found (check model.api_base and model.served_model)",
}


class Failed(Exception):
    """One request failed for good: retries ran out, or the server refused it in a way retrying cannot mend."""


def letter_distribution(top: dict[str, float], n: int) -> tuple[np.ndarray, float, int]:
    """The probabilities of the first ``n`` option letters from one position's top log-probabilities.

    ``top`` maps a token's text to its log-probability. Tokens that strip to the same letter (' A', 'A')
    are pooled. A letter absent from the top-k has at most the smallest listed probability, and the
    letters absent share at most the mass the list leaves out: it gets the smaller of the two. Returns the
    distribution renormalised over the letters, the mass the letters found in the list covered, and the
    number of letters that were not in it.
    """
    letters = list(LETTERS[:n])  # a list: '' (a whitespace token, stripped) is in every string
    probs = {t: math.exp(lp) for t, lp in top.items() if lp is not None and math.isfinite(lp)}
    found = np.zeros(n)
    for token, p in probs.items():
        s = token.strip()
        if s in letters:
            found[letters.index(s)] += p
    covered = float(found.sum())
    missing = found == 0
    if missing.any():
        listed = min(probs.values()) if probs else 1.0
        left = max(0.0, 1.0 - sum(probs.values()))
        found[missing] = max(min(listed, left / int(missing.sum())), 1e-12)
    return found / found.sum(), covered, int(missing.sum())


def retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
