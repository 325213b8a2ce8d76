"""Answer extraction, normalisation and comparison: small pure functions.

Free-form answers are compared after normalisation: numbers lose separators, currency signs, units and
percent signs and match within a relative tolerance of 1e-2; text is lower-cased with punctuation and
articles removed. Choice answers are letters.
"""

from __future__ import annotations

import math
import re
import string

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REL_TOL = 1e-2

_NUMBER = re.compile(r"[-+]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_ANSWER_TAG = re.compile(r"answer\s*(?:is)?\s*[:\-]?\s*(.+)", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_LETTER_AT_START = re.compile(r"^\W*\(?([A-Z])\)?(?:[\s.,:;)]|$)")


def parse_number(text: str) -> float | None:
    """The last number in ``text`` (separators, '$' and '%' removed), or None."""
    found = _NUMBER.findall(text.replace("\u2212", "-"))
    if not found:
        return None
    raw = found[-1].replace(",", "").replace("$", "").replace(" ", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def format_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def normalize_text(text: str) -> str:
    s = text.lower().strip()
    s = "".join(ch for ch in s if ch not in string.punctuation)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def normalize_free(text: str) -> str:
    """Canonical form of a free-form answer: a plain number if the text is numeric, else normalised text."""
    t = text.strip()
    stripped = re.sub(r"[\s$€£%]|,(?=\d{3})", "", t)
    stripped = re.sub(r"[a-zA-Z]+\.?$", "", stripped)  # trailing unit
    if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)", stripped):
        return format_number(float(stripped))
    return normalize_text(t)


def extract_free(response: str) -> str | None:
    """The final answer of a free-form response: text after the last 'Answer:' tag, else the last number."""
    lines = [ln for ln in response.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = _ANSWER_TAG.search(ln)
        if m:
            tail = m.group(1).strip()
            num = parse_number(tail)
            if num is not None:
                return format_number(num)
            norm = normalize_text(tail)
            return norm or None
    num = parse_number(response)
    return format_number(num) if num is not None else None


def extract_letter(response: str, letters: str | list[str]) -> str | None:
    """The option letter a response chose: after 'Answer:' if present, else at its start."""
    valid = "".join(letters)
    for ln in reversed(response.strip().splitlines()):
        m = _ANSWER_TAG.search(ln)
        if m:
            m2 = _LETTER_AT_START.match(m.group(1).strip())
            if m2 and m2.group(1) in valid:
                return m2.group(1)
    m = _LETTER_AT_START.match(response.strip())
    if m and m.group(1) in valid:
        return m.group(1)
    return None


def free_match(a: str | None, b: str | None) -> bool:
    """Equality of two normalised free-form answers (numbers within relative tolerance 1e-2)."""
    if a is None or b is None:
        return False
    try:
        x, y = float(a), float(b)
    except ValueError:
        return normalize_text(a) == normalize_text(b)
    if x == y:
        return True
    return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=1e-9)


def answers_match(pred: str | None, gold: str | None, kind: str) -> bool:
    if pred is None or gold is None:
        return False
    if kind == "choice":
        return pred.strip().upper() == gold.strip().upper()
    return free_match(pred, gold)


def canonical_vote(answers: list[str | None], kind: str) -> list[str | None]:
    """Map free-form answers that match each other onto one representative so votes can be counted."""
    if kind == "choice":
        return answers
    reps: list[str] = []
    out: list[str | None] = []
    for a in answers:
        if a is None:
            out.append(None)
            continue
        for r in reps:
            if free_match(a, r):
                out.append(r)
                break
        else:
            reps.append(a)
            out.append(a)
    return out
