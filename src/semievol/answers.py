"""Answer extraction, normalisation and comparison: small pure functions.

Free-form answers are compared after normalisation: numbers lose separators, currency signs, units and
percent signs, simple fractions become decimals, and numbers match within a relative tolerance of 1e-2;
text is lower-cased with punctuation (except between digits, so '1/2' never becomes '12') and articles
removed. Normalisation is idempotent. Choice answers are letters.
"""

from __future__ import annotations

import math
import re
import string
from decimal import Decimal

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REL_TOL = 1e-2

_FRACTION = r"(?<![\d/.])[-+]?\d+/\d+(?![\d/])"
_NUMBER = re.compile(_FRACTION + r"|[-+]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_ANSWER_TAG = re.compile(r"\banswers?\b\s*(?:is\b)?\s*(?::|-(?![\d.]))?\s*(.+)", re.IGNORECASE)
_BARE_IS = re.compile(r"is\W*", re.IGNORECASE)  # what the tag leaves of "The answer is" with nothing after
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_LETTER_AT_START = re.compile(r"^\W*\(?([A-Z])\)?(?:[\s.,:;)*]|$)")
# after an 'Answer:' tag: 'B', 'Option B', '(b)', a lone 'b' or 'b.' (but 'a good one' is a word, not A)
_TAGGED_LETTER = re.compile(
    r"^\W*(?:(?i:option|choice)\s*)?"
    r"(?:\(([A-Za-z])\)|([A-Z])(?:[\s.,:;)*]|$)|([a-z])(?:[.,:;)*]|$))"
)
_DECIMAL = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_PUNCT = re.escape(string.punctuation)
_PUNCT_NOT_IN_NUMBER = re.compile(rf"(?<!\d)[{_PUNCT}]|[{_PUNCT}](?!\d)")


def _fraction(raw: str) -> float | None:
    num, den = raw.split("/")
    return int(num) / int(den) if int(den) else None


def parse_number(text: str) -> float | None:
    """The last number in ``text`` (separators, '$' and '%' removed; 'a/b' as a fraction), or None."""
    found = _NUMBER.findall(text.replace("\u2212", "-"))
    if not found:
        return None
    raw = found[-1].replace(",", "").replace("$", "").replace(" ", "")
    try:
        value = _fraction(raw) if "/" in raw else float(raw)
    except (ValueError, OverflowError):
        return None
    return value if value is not None and math.isfinite(value) else None


def format_number(value: float) -> str:
    """A number in plain positional notation, exact to the float's shortest repr: '3', '0.5', '0.00001'."""
    if value.is_integer():
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def normalize_text(text: str) -> str:
    s = text.lower().strip()
    s = _PUNCT_NOT_IN_NUMBER.sub("", s)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _as_number(text: str) -> str | None:
    """The canonical number if ``text`` is one (with separators, currency, percent or a trailing unit)."""
    stripped = re.sub(r"[\s$€£%]|,(?=\d{3})", "", text.strip().replace("\u2212", "-"))
    stripped = re.sub(r"[a-zA-Z]+\.?$", "", stripped)  # trailing unit
    if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)", stripped):
        return format_number(float(stripped))
    if re.fullmatch(r"[-+]?\d+/\d+", stripped):
        value = _fraction(stripped)
        return None if value is None else format_number(value)
    return None


def normalize_free(text: str) -> str:
    """Canonical form of a free-form answer: a plain number if the text is numeric, else normalised text.

    Idempotent: ``normalize_free(normalize_free(t)) == normalize_free(t)``.
    """
    number = _as_number(text)
    if number is not None:
        return number
    norm = normalize_text(text)
    return _as_number(norm) or norm


def extract_free(response: str, numeric: bool = False) -> str | None:
    """The final answer of a free-form response: text after the last 'Answer:' tag that has some, else the
    last number. With ``numeric`` (a task whose answers are numbers, such as GSM8K) a tag followed by words
    alone ('the answer is below') is passed over like a tag with nothing after it."""
    lines = [ln for ln in response.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = _ANSWER_TAG.search(ln)
        if m:
            tail = m.group(1).strip()
            if _BARE_IS.fullmatch(tail):
                continue  # no answer on this line, not the answer 'is'
            num = parse_number(tail)
            if num is not None:
                return format_number(num)
            if numeric:
                continue
            norm = normalize_text(tail)
            if norm:
                return norm
    num = parse_number(response)
    return format_number(num) if num is not None else None


def extract_letter(response: str, letters: str | list[str]) -> str | None:
    """The option letter a response chose: after 'Answer:' if present, else at its start.

    After the tag a letter may be lower case ('(b)', a lone 'b'), follow 'Option', or sit in markdown bold.
    """
    valid = "".join(letters)
    for ln in reversed(response.strip().splitlines()):
        m = _ANSWER_TAG.search(ln)
        if m:
            m2 = _TAGGED_LETTER.match(m.group(1).strip())
            letter = m2 and (m2.group(1) or m2.group(2) or m2.group(3)).upper()
            if letter and letter in valid:
                return letter
    m = _LETTER_AT_START.match(response.strip())
    if m and m.group(1) in valid:
        return m.group(1)
    return None


def is_number(text: str) -> bool:
    """Whether ``text`` is a plain decimal number ('3', '-0.5', '1e3'); 'nan', 'inf' and '1_000' are not."""
    return _DECIMAL.fullmatch(text.strip()) is not None


def free_match(a: str | None, b: str | None) -> bool:
    """Equality of two normalised free-form answers (numbers within relative tolerance 1e-2)."""
    if a is None or b is None:
        return False
    if not (is_number(a) and is_number(b)):
        return normalize_text(a) == normalize_text(b)
    x, y = float(a), float(b)
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
