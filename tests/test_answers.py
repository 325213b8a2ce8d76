"""Answer extraction, normalisation and matching: tables of cases, then properties checked by hypothesis."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semievol.answers import (
    LETTERS,
    answers_match,
    canonical_vote,
    extract_free,
    extract_letter,
    format_number,
    free_match,
    is_number,
    normalize_free,
    parse_number,
)
from semievol.tasks import parse_choice_answer, parse_options
from semievol.tasks.columns import _invisible

NORMALIZE_FREE = [
    ("42", "42"),
    (" 42 ", "42"),
    ("1,234", "1234"),
    ("1,234,567", "1234567"),
    ("$1,234.50", "1234.5"),
    ("-$5", "-5"),
    ("$-5", "-5"),
    ("\u22125", "-5"),  # unicode minus sign
    ("+3", "3"),
    ("3.", "3"),
    ("3.0", "3"),
    (".5", "0.5"),
    ("007", "7"),
    ("-0", "0"),
    ("50%", "50"),
    ("12 apples", "12"),
    ("12.5 km", "12.5"),
    ("5 dollars.", "5"),
    ("1 000", "1000"),
    ("1/2", "0.5"),
    ("3/4 cup", "0.75"),
    ("1/0", "1/0"),  # no number: kept as text, not a crash
    ("0.000012345", "0.000012345"),  # positional, never '1.2345e-05'
    ("123456.7", "123456.7"),  # exact, not rounded to 6 digits
    ("The Cat", "cat"),
    ("the 1,000", "1000"),
    ("An Apple.", "apple"),
    ("Paris, France", "paris france"),
    ("1,23", "1,23"),  # a decimal comma is not a thousands separator, and not '123'
    ("0.1+0.2", "0.1+0.2"),  # punctuation between digits stays, so this is not '0102'
    ("1e3", "1e3"),
    ("(A)", ""),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZE_FREE)
def test_normalize_free(text, expected):
    assert normalize_free(text) == expected


EXTRACT_FREE = [
    ("The answer is 42.", "42"),
    ("Answer: $1,234", "1234"),
    ("So 3 apples + 4 = 7\nAnswer: 7", "7"),
    ("Answer: 12\nsome trailing 99", "12"),  # the tagged line wins over a later number
    ("I think 5. Final answer: 6", "6"),
    ("answer: -3.5%", "-3.5"),
    ("The answer is -1.", "-1"),  # the minus is the number's, not a separator
    ("Answer -5", "-5"),
    ("Answer: \u22124", "-4"),
    ("Answer: 1,000,000", "1000000"),
    ("Answer: 2.50 dollars", "2.5"),
    ("Answer: 0.1", "0.1"),
    ("The answer is: 1/2", "0.5"),
    ("Answer: 1/2/2020", "2020"),  # a date is not a fraction
    ("#### 72", "72"),
    ("x = 3\nThe final answer is \\boxed{18}.", "18"),
    ("18.", "18"),
    ("Answer: seven", "seven"),
    ("Answer: The Eiffel Tower", "eiffel tower"),
    ("no number here", None),
    ("Answer:", None),
    ("", None),
    # an answer tag with nothing after it is no answer (GSM8K's justification once gave the answer 'is')
    ("Martha gets 500 points.\nThe answer is", "500"),
    ("The answer is\n(final: is)", None),
    ("Answer: 12\nThe answer is ", "12"),
]


@pytest.mark.parametrize(("response", "expected"), EXTRACT_FREE)
def test_extract_free(response, expected):
    assert extract_free(response) == expected


def test_a_numeric_task_passes_over_an_answer_tag_without_a_number():
    text = "Tom has 3 bags of 4 apples, 12 in all.\nThe answer is below, in the last line."
    assert extract_free(text) == "below in last line"
    assert extract_free(text, numeric=True) == "12"
    assert extract_free("Answer: 7\nThe answer is given above.", numeric=True) == "7"
    assert extract_free("Answer: none of them", numeric=True) is None
    assert extract_free("Answer: $1,200", numeric=True) == "1200"


def test_the_gsm8k_task_is_numeric(tmp_path):
    from semievol.config import TaskConfig
    from semievol.tasks import load_task

    d = tmp_path / "gsm8k"
    d.mkdir()
    for split in ("labeled", "unlabeled", "test"):
        (d / f"{split}.jsonl").write_text(
            "".join(f'{{"id": "{split}{i}", "question": "q{i}?", "answer": "{i}"}}\n' for i in range(3))
        )
    assert load_task(TaskConfig(task="gsm8k", data_dir=str(tmp_path)), need_test=True).numeric is True


EXTRACT_LETTER = [
    ("A", "ABCD", "A"),
    ("B.", "ABCD", "B"),
    ("D)", "ABCD", "D"),
    ("(C) because", "ABCD", "C"),
    ("  **B**", "ABCD", "B"),
    ("Answer: D", "ABCD", "D"),
    ("Answer:B", "ABCD", "B"),
    ("Answer - B", "ABCD", "B"),
    ("Answer: A.", "ABCD", "A"),
    ("Answer: **C**", "ABCD", "C"),
    ("Answer: Option B", "ABCD", "B"),
    ("answer: OPTION (c)", "ABCD", "C"),
    ("answer: (b)", "ABCD", "B"),
    ("answer: a", "ABCD", "A"),
    ("Answer: b.", "ABCD", "B"),
    ("Answers: B", "ABCD", "B"),
    ("The answer is B", "ABCD", "B"),
    ("Answer is A", "ABCD", "A"),
    ("I think A is wrong. Answer: C", "ABCD", "C"),
    ("A\nAnswer: D", "ABCD", "D"),  # the last tagged line wins over the first letter
    ("I answered B but the answer is C", "ABCD", "C"),  # 'answered' is not an answer tag
    ("Answer: a good one is B", "ABCD", None),  # the article 'a' is not option A
    ("E", "ABCD", None),
    ("Answer: E", "ABCD", None),
    ("Answer: E", "ABCDE", "E"),
    ("Answer: C", ["A", "B", "C"], "C"),
    ("The correct option is C.", "ABCD", None),
    ("", "ABCD", None),
]


@pytest.mark.parametrize(("response", "letters", "expected"), EXTRACT_LETTER)
def test_extract_letter(response, letters, expected):
    assert extract_letter(response, letters) == expected


FREE_MATCH = [
    ("42", "42", True),
    ("42", "42.0", True),
    ("100", "101", True),  # |1| / 101 < 1e-2: the documented relative tolerance
    ("100", "99", True),  # the bound is inclusive: |1| <= 1e-2 * 100
    ("100", "98.9", False),
    ("1000", "1009", True),
    ("1000", "1011", False),
    ("0.5", "0.504", True),
    ("0.5", "0.51", False),
    ("0", "0", True),
    ("0", "0.001", False),
    ("-5", "5", False),
    ("1e2", "100", True),
    ("cat", "cat", True),
    ("cat", "Cat.", True),
    ("cat", "dog", False),
    ("nan", "nan", True),  # text, not a float that never equals itself
    ("inf", "1e400", False),
    ("12", "twelve", False),
    (None, "1", False),
    ("1", None, False),
    (None, None, False),
]


@pytest.mark.parametrize(("a", "b", "expected"), FREE_MATCH)
def test_free_match(a, b, expected):
    assert free_match(a, b) is expected
    assert free_match(b, a) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", True),
        ("-0.5", True),
        (".5", True),
        ("1e3", True),
        (" 7 ", True),
        ("nan", False),
        ("inf", False),
        ("1_000", False),
        ("1,000", False),
        ("", False),
        ("3 apples", False),
    ],
)
def test_is_number(text, expected):
    assert is_number(text) is expected


@pytest.mark.parametrize(
    ("pred", "gold", "kind", "expected"),
    [
        ("b", "B", "choice", True),
        (" C ", "C", "choice", True),
        ("A", "B", "choice", False),
        ("100", "101", "free", True),
        ("100", "100", "choice", True),
        (None, "A", "choice", False),
    ],
)
def test_answers_match(pred, gold, kind, expected):
    assert answers_match(pred, gold, kind) is expected


CANONICAL_VOTE = [
    (["A", "B", "A"], "choice", ["A", "B", "A"]),
    (["42", "42.0", "43"], "free", ["42", "42", "43"]),
    (["100", "100.5", None, "7"], "free", ["100", "100", None, "7"]),
    (["cat", "Cat", "dog"], "free", ["cat", "cat", "dog"]),
    ([None, None], "free", [None, None]),
    ([], "free", []),
]


@pytest.mark.parametrize(("answers", "kind", "expected"), CANONICAL_VOTE)
def test_canonical_vote(answers, kind, expected):
    assert canonical_vote(answers, kind) == expected


def test_canonical_vote_representatives_are_inputs_and_first_seen():
    votes = ["7", "1000", "1005", "7.0", "1004"]
    out = canonical_vote(votes, "free")
    assert out == ["7", "1000", "1000", "7", "1000"]
    assert set(out) <= set(votes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", 12.0),
        ("a 1,234 b", 1234.0),
        ("first 3 then 4", 4.0),
        ("$5.25", 5.25),
        ("\u22122", -2.0),
        ("3/4", 0.75),
        ("none", None),
        ("1/0", None),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


# ---------------------------------------------------------------- properties

free_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
answer_like = st.one_of(
    free_text,
    st.from_regex(r"[-+$\u2212]?\d{1,7}(,\d{3})?(\.\d{0,4})?\s?(%|km|dollars|\.)?", fullmatch=True),
    st.from_regex(r"(the |an? )?[A-Za-z]{1,8}( [A-Za-z0-9,./+-]{1,8}){0,3}[.!?]?", fullmatch=True),
    st.from_regex(r"\d{1,4}/\d{1,4}", fullmatch=True),
)


@given(answer_like)
def test_normalize_free_is_idempotent(text):
    once = normalize_free(text)
    assert normalize_free(once) == once


@given(answer_like)
def test_normalized_answer_matches_itself(text):
    norm = normalize_free(text)
    if norm:
        assert free_match(norm, norm)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(finite)
def test_number_round_trip(x):
    text = format_number(x)
    assert "e" not in text.lower()
    assert float(text) == x
    assert normalize_free(text) == text
    assert free_match(text, repr(x))


@given(finite)
def test_extracted_number_matches_gold(x):
    gold = normalize_free(format_number(x))
    for response in (f"Answer: {format_number(x)}", f"Some working.\nThe answer is {format_number(x)}."):
        assert free_match(extract_free(response), gold), response


@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_thousands_separators_and_currency(n):
    assert normalize_free(f"{n:,}") == str(n)
    assert normalize_free(f"${n:,}" if n >= 0 else f"-${-n:,}") == str(n)
    assert extract_free(f"Answer: {n:,}") == str(n)


option_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
# an option shows at least one character: one of only format characters or separators (a soft hyphen, a
# zero-width space) is an empty option, rejected as such (tests/test_bad_input.py)
options = st.lists(option_text.map(str.strip).filter(lambda s: not _invisible(s)), min_size=2, max_size=8)


@given(options)
def test_options_parse_from_json_and_python_literals(opts):
    assert parse_options(json.dumps(opts)) == opts
    assert parse_options(json.dumps(opts, ensure_ascii=False)) == opts
    assert parse_options(repr(opts)) == opts
    assert parse_options(opts) == opts
    assert parse_options(tuple(opts)) == opts


@given(options, st.data())
def test_choice_answer_forms_agree(opts, data):
    i = data.draw(st.integers(min_value=0, max_value=len(opts) - 1))
    letter = LETTERS[i]
    assert parse_choice_answer(letter, opts) == letter
    assert parse_choice_answer(letter.lower(), opts) == letter
    assert parse_choice_answer(i, opts, 0) == letter
    assert parse_choice_answer(i + 1, opts, 1) == letter
    assert parse_choice_answer(float(i), opts, 0) == letter
    text = opts[i]
    ambiguous = (
        (len(text) == 1 and text.upper() in LETTERS)
        or text.isdigit()
        or len({o for o in opts if o.lower() == text.lower()}) > 1
        or opts.index(text) != i
    )
    if not ambiguous:
        assert parse_choice_answer(text, opts) == letter


def test_letter_extraction_after_tag_for_every_letter():
    for n in range(2, 27):
        letters = LETTERS[:n]
        for letter in letters:
            assert extract_letter(f"Reasoning...\nAnswer: {letter}", letters) == letter
            assert extract_letter(f"Answer: ({letter.lower()})", letters) == letter
        assert extract_letter(f"Answer: {LETTERS[n]}" if n < 26 else "Answer: 7", letters) is None


@settings(max_examples=50)
@given(st.floats(min_value=1e-3, max_value=1e9), st.floats(min_value=-0.03, max_value=0.03))
def test_tolerance_is_relative_1e_2(x, rel):
    y = x * (1 + rel)
    if abs(rel) < 0.0099:
        assert free_match(format_number(x), format_number(y))
    elif abs(rel) > 0.0102:
        assert not free_match(format_number(x), format_number(y))
