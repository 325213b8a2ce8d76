"""Task loading: the real data sets, every option and answer shape, round trips through every file format."""

from __future__ import annotations

import csv
import io
import json
import os
import string
import tempfile
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semievol.answers import LETTERS
from semievol.cli import main
from semievol.config import TaskConfig
from semievol.tasks import DataError, load_task, read_records, to_examples
from semievol.tasks.columns import _invisible

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    d = Path(os.environ.get("SEMIEVOL_DATA_DIR") or REPO.parent / "shared" / "data")
    if not d.is_dir():
        pytest.skip(f"real data not found at {d} (set SEMIEVOL_DATA_DIR)")
    return d


def quiet_load(cfg: TaskConfig, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_task(cfg, **kw)


# ---------------------------------------------------------------- the real data sets (shared/data/README.md)

ROWS = {
    "arc": (518, 1554, 518),
    "fpb": (452, 1359, 453),
    "pubmedqa": (200, 600, 200),
    "gsm8k": (500, 1500, 1319),
    "sst2": (500, 1500, 500),
    "agnews": (500, 1500, 500),
    "emotion": (500, 1500, 500),
}


@pytest.fixture(scope="module")
def real_tasks():
    d = data_dir()
    return {name: quiet_load(TaskConfig(task=name, data_dir=str(d)), need_test=True) for name in ROWS}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_real_row_counts(real_tasks, name):
    task = real_tasks[name]
    assert (len(task.labeled), len(task.unlabeled), len(task.test)) == ROWS[name]
    for split in (task.labeled, task.unlabeled, task.test):
        ids = [e.id for e in split.examples]
        assert len(set(ids)) == len(ids)
        assert all(e.question and e.question == e.question.strip() for e in split.examples)


TOP_LETTER = {"arc": "E", "fpb": "C", "pubmedqa": "C", "sst2": "B", "agnews": "D", "emotion": "F"}


@pytest.mark.parametrize("name", sorted(TOP_LETTER))
def test_real_choice_answers_are_valid_letters(real_tasks, name):
    task = real_tasks[name]
    assert task.kind == "choice"
    top = TOP_LETTER[name]
    for split in (task.labeled, task.unlabeled, task.test):
        for e in split.examples:
            assert e.answer in e.letters, (split.source, e.row)
            assert e.answer <= top
            assert len(e.options) >= 2


def test_real_free_answers_are_the_numbers_in_the_file(real_tasks):
    d = data_dir()
    task = real_tasks["gsm8k"]
    assert task.kind == "free"
    for split in (task.labeled, task.unlabeled, task.test):
        lines = (d / "gsm8k" / f"{split.name}.jsonl").read_text(encoding="utf-8").split("\n")
        for e in split.examples:
            rec = json.loads(lines[e.row - 1])  # the row is the line number
            assert rec["id"] == e.id
            assert float(e.answer) == float(rec["answer"])
            assert e.options is None
        assert all(e.rationale for e in split.examples)


def test_real_arc_numeric_answer_keys_count_from_1(real_tasks):
    by_id = {e.id: e for e in real_tasks["arc"].unlabeled.examples}
    # answer '2' (1-based): 'the same kingdom, but different species'
    e = by_id["NYSEDREGENTS_2015_8_3"]
    assert e.answer == "B" and e.options[1] == "the same kingdom, but different species"
    e = by_id["NYSEDREGENTS_2008_8_32"]  # answer '1'
    assert e.answer == "A" and e.options[0] == "the arrival of an air mass"


@pytest.mark.parametrize("name", ["arc", "pubmedqa"])
def test_real_csv_rows_are_the_line_where_the_record_starts(real_tasks, name):
    d = data_dir()
    task = real_tasks[name]
    multi_line = 0
    for split in (task.labeled, task.unlabeled, task.test):
        lines = (d / name / f"{split.name}.csv").read_text(encoding="utf-8").splitlines()
        for e in split.examples:
            assert lines[e.row - 1].startswith(f"{e.id},"), (split.source, e.row)
        multi_line += sum("\n" in e.question for e in split.examples)
    if name == "pubmedqa":
        assert multi_line > 0  # the check above covered records that span lines


def test_real_unknown_columns_are_ignored():
    d = data_dir()
    header = next(csv.reader(open(d / "fpb" / "labeled.csv", encoding="utf-8")))
    assert "gt" in header  # fpb carries an extra column the loader must not trip on
    task = quiet_load(TaskConfig(task="fpb", data_dir=str(d)))
    assert task.labeled.examples[0].id == f"labeled-{task.labeled.examples[0].row}"


def test_real_data_check_command(capsys):
    d = data_dir()
    assert main(["data", "check", "--task", "pubmedqa", "--data-dir", str(d), "--engine", "fake"]) == 0
    out = capsys.readouterr().out
    assert "task pubmedqa (choice)" in out
    for split, n in zip(("labeled", "unlabeled", "test"), ROWS["pubmedqa"], strict=True):
        assert f"{split:10s} rows {n:6d}" in out


def test_real_overlap_warnings(real_tasks):
    # fpb repeats a few sentences across splits: the loader says so instead of failing
    assert any("unlabeled questions also appear" in w for w in real_tasks["fpb"].warnings)
    assert any("test questions also appear" in w for w in real_tasks["fpb"].warnings)
    assert real_tasks["gsm8k"].warnings == []


# ---------------------------------------------------------------- shapes of options and answers


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> str:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def examples(source: str, kind: str = "choice", split: str = "labeled", **cfg):
    return to_examples(read_records(source), source, split, kind, TaskConfig(**cfg), require_answer=True)


OPTS = ["red", "green", "blue", "yellow"]


def test_options_as_json_list_string(tmp_path):
    src = write_csv(tmp_path / "a.csv", ["question", "options", "answer"], [["q?", json.dumps(OPTS), "C"]])
    (e,) = examples(src)
    assert e.options == OPTS and e.answer == "C" and e.letters == ["A", "B", "C", "D"]


def test_options_as_python_list_string(tmp_path):
    src = write_csv(tmp_path / "a.csv", ["question", "options", "answer"], [["q?", repr(OPTS), "B"]])
    (e,) = examples(src)
    assert e.options == OPTS and e.answer == "B"


def test_options_as_list_in_jsonl(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [{"question": "q?", "options": OPTS, "answer": "D"}])
    (e,) = examples(src)
    assert e.options == OPTS and e.answer == "D"


def test_options_one_column_per_letter(tmp_path):
    src = write_csv(
        tmp_path / "a.csv",
        ["question", "opa", "opb", "opc", "opd", "answer"],
        [["q1", *OPTS, "B"], ["q2", "yes", "no", "", "", "A"]],
    )
    e1, e2 = examples(src, option_cols=["opa", "opb", "opc", "opd"])
    assert e1.options == OPTS and e1.answer == "B"
    assert e2.options == ["yes", "no"] and e2.answer == "A"  # empty trailing columns: fewer options


@pytest.mark.parametrize(
    ("raw", "index_base", "expected"),
    [
        ("C", -1, "C"),
        ("c", -1, "C"),
        (" C ", -1, "C"),
        ("2", -1, "C"),  # 0-based by default
        ("0", 0, "A"),
        ("3", 1, "C"),  # 1-based on request
        ("1", 1, "A"),
        ("blue", -1, "C"),
        ("Blue", -1, "C"),
    ],
)
def test_answer_forms_in_csv(tmp_path, raw, index_base, expected):
    src = write_csv(tmp_path / "a.csv", ["question", "options", "answer"], [["q?", json.dumps(OPTS), raw]])
    (e,) = examples(src, index_base=index_base)
    assert e.answer == expected


@pytest.mark.parametrize(("raw", "index_base", "expected"), [(2, 0, "C"), (2, 1, "B"), (2.0, 0, "C"), ("D", 0, "D")])
def test_answer_forms_in_jsonl(tmp_path, raw, index_base, expected):
    src = write_jsonl(tmp_path / "a.jsonl", [{"question": "q?", "options": OPTS, "answer": raw}])
    (e,) = examples(src, index_base=index_base)
    assert e.answer == expected


def test_arc_preset_counts_answer_indices_from_1(tmp_path):
    d = tmp_path / "data" / "arc"
    d.mkdir(parents=True)
    for split, raw in (("labeled", "1"), ("unlabeled", "2"), ("test", "D")):
        write_csv(
            d / f"{split}.csv", ["id", "question", "answer", "options"], [[split, f"q {split}", raw, json.dumps(OPTS)]]
        )
    task = quiet_load(TaskConfig(task="arc", data_dir=str(tmp_path / "data")))
    assert [s.examples[0].answer for s in (task.labeled, task.unlabeled, task.test)] == ["A", "B", "D"]
    zero = quiet_load(TaskConfig(task="arc", data_dir=str(tmp_path / "data"), index_base=0))
    assert [s.examples[0].answer for s in (zero.labeled, zero.unlabeled)] == ["B", "C"]  # explicit beats preset


def test_option_text_match_prefers_exact_case(tmp_path):
    # real ARC rows have options that differ only in case ('rr' and 'RR')
    opts = ["R", "rr", "Rr", "RR"]
    rows = [["q1", json.dumps(opts), "RR"], ["q2", json.dumps(opts), "rr"], ["q3", json.dumps(opts), "r"]]
    src = write_csv(tmp_path / "a.csv", ["question", "options", "answer"], rows)
    e1, e2, e3 = examples(src)
    assert (e1.answer, e2.answer, e3.answer) == ("D", "B", "A")


def test_a_letter_is_a_letter_even_where_an_option_reads_like_one(tmp_path):
    # a real ARC row (labeled.csv line 321) has options that are letters
    src = write_csv(
        tmp_path / "a.csv", ["question", "options", "answer"], [["q", json.dumps(["C", "D", "E", "F"]), "C"]]
    )
    (e,) = examples(src)
    assert e.answer == "C"


def test_numeric_option_text_equal_to_its_own_index_is_fine(tmp_path):
    src = write_csv(tmp_path / "a.csv", ["question", "options", "answer"], [["q", json.dumps(["1", "2", "3"]), "2"]])
    (e,) = examples(src, index_base=1)
    assert e.answer == "B"


def test_unknown_columns_ignored_and_ids_subjects_rationales_kept(tmp_path):
    src = write_csv(
        tmp_path / "a.csv",
        ["junk", "id", "question", "options", "answer", "Subject", "rationale", "x y"],
        [["1", "r1", "q?", json.dumps(OPTS), "A", "bio", "because", "zz"]],
    )
    (e,) = examples(src, subject_col="Subject")
    assert (e.id, e.subject, e.rationale) == ("r1", "bio", "because")


def test_missing_ids_become_split_and_row(tmp_path):
    src = write_csv(
        tmp_path / "a.csv",
        ["question", "options", "answer"],
        [["q1", json.dumps(OPTS), "A"], ["q2\nsecond line", json.dumps(OPTS), "B"], ["q3", json.dumps(OPTS), "C"]],
    )
    assert [e.id for e in examples(src, split="test")] == ["test-2", "test-3", "test-5"]


def test_free_answers_are_normalised(tmp_path):
    src = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": "1", "question": "q1", "answer": "1,234"},
            {"id": "2", "question": "q2", "answer": 18},
            {"id": "3", "question": "q3", "answer": "$5.50"},
            {"id": "4", "question": "q4", "answer": 2.0},
        ],
    )
    assert [e.answer for e in examples(src, kind="free")] == ["1234", "18", "5.5", "2"]


def test_kind_is_guessed_from_the_columns(tmp_path):
    lab = write_jsonl(tmp_path / "l.jsonl", [{"question": "q1", "answer": "3"}])
    unl = write_jsonl(tmp_path / "u.jsonl", [{"question": "q2"}])
    assert quiet_load(TaskConfig(labeled=lab, unlabeled=unl)).kind == "free"
    lab = write_jsonl(tmp_path / "l2.jsonl", [{"question": "q1", "options": ["a", "b"], "answer": "B"}])
    unl = write_jsonl(tmp_path / "u2.jsonl", [{"question": "q2", "options": ["a", "b"]}])
    task = quiet_load(TaskConfig(labeled=lab, unlabeled=unl))
    assert task.kind == "choice"
    assert task.unlabeled.examples[0].answer is None  # unlabeled rows need no answer


def test_limits_subsample_with_a_seed(tmp_path):
    rows = [[f"q{i}", json.dumps(OPTS), "A"] for i in range(40)]
    lab = write_csv(tmp_path / "l.csv", ["question", "options", "answer"], rows)
    unl = write_csv(
        tmp_path / "u.csv", ["question", "options", "answer"], [[f"u{i}", json.dumps(OPTS), ""] for i in range(40)]
    )
    cfg = TaskConfig(labeled=lab, unlabeled=unl, limit_labeled=5, limit_unlabeled=7)
    a, b, c = quiet_load(cfg, seed=1), quiet_load(cfg, seed=1), quiet_load(cfg, seed=2)
    assert (len(a.labeled), len(a.unlabeled)) == (5, 7)
    assert [e.id for e in a.labeled.examples] == [e.id for e in b.labeled.examples]
    assert [e.id for e in a.labeled.examples] != [e.id for e in c.labeled.examples]
    rows_seen = [e.row for e in a.labeled.examples]
    assert rows_seen == sorted(rows_seen)  # file order kept


def test_k_larger_than_labeled_set_is_refused_at_load_time(tmp_path):
    lab = write_csv(
        tmp_path / "l.csv",
        ["question", "options", "answer"],
        [["q1", json.dumps(OPTS), "A"], ["q2", json.dumps(OPTS), "B"]],
    )
    unl = write_csv(tmp_path / "u.csv", ["question", "options"], [["u1", json.dumps(OPTS)]])
    cfg = TaskConfig(labeled=lab, unlabeled=unl)
    assert len(quiet_load(cfg, min_labeled=2).labeled) == 2
    from semievol.config import ConfigError

    with pytest.raises(ConfigError, match=r"propagate\.k: 3 neighbours .* only 2 rows"):
        quiet_load(cfg, min_labeled=3)


# ---------------------------------------------------------------- row numbers


def test_csv_rows_with_multi_line_fields_blank_lines_and_crlf(tmp_path):
    text = (
        "id,question,options,answer\r\n"
        'a,"one line",'
        '"[""x"",""y""]",A\r\n'  # line 2
        'b,"two\r\nlines",'
        '"[""x"",""y""]",B\r\n'  # lines 3-4
        "\r\n"  # line 5: blank
        'c,"three\nlines\nhere",'
        '"[""x"",""y""]",A\n'  # lines 6-8
        'd,plain,"[""x"",""y""]",B\n'  # line 9
    )
    p = tmp_path / "a.csv"
    p.write_bytes(text.encode())
    got = examples(str(p))
    assert [(e.id, e.row) for e in got] == [("a", 2), ("b", 3), ("c", 6), ("d", 9)]
    assert got[1].question == "two\r\nlines"
    # and an error in a record after them names its own line
    p.write_bytes((text + 'e,"four\nlines",' + '"[""x"",""y""]",Z\n').encode())
    with pytest.raises(DataError) as err:
        examples(str(p))
    assert (err.value.row, err.value.column) == (10, "answer")


def test_jsonl_rows_are_lines_and_unicode_line_separators_stay_inside_strings(tmp_path):
    p = tmp_path / "a.jsonl"
    recs = [{"id": "a", "question": "x\u2028y", "answer": "1"}, {"id": "b", "question": "p\x85q\u2029r", "answer": "2"}]
    p.write_text(
        json.dumps(recs[0], ensure_ascii=False) + "\n\n" + json.dumps(recs[1], ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    got = examples(str(p), kind="free")
    assert [(e.id, e.row, e.question) for e in got] == [("a", 1, "x\u2028y"), ("b", 3, "p\x85q\u2029r")]


# ---------------------------------------------------------------- round trips through every format

CHOICE = [
    {"id": "r1", "question": "Plain question?", "options": ["alpha", "beta", "gamma"], "answer": "B"},
    {
        "id": "r2",
        "question": 'Commas, "quotes" and\na second line',
        "options": ["a, b", 'say "hi"', "c\nd"],
        "answer": "C",
    },
    {
        "id": "r3",
        "question": "Unicode: café ☕ 数学 \u2028 (line separator)",
        "options": ["ü", "ß", "Ω", "∞", "é"],
        "answer": "E",
    },
    {"id": "r4", "question": "Options that look like numbers", "options": ["10", "20"], "answer": "A"},
    {"id": "r5", "question": "NA", "options": ["None", "null"], "answer": "A"},
]
FREE = [
    {"id": "f1", "question": "How many?", "answer": "42", "rationale": "6 * 7 = <<6*7=42>>42"},
    {"id": "f2", "question": "Money, with\nlines", "answer": "1,234.5", "rationale": "sum\nof parts"},
    {"id": "f3", "question": "Negative", "answer": "-3", "rationale": "3 - 6 = -3"},
    {"id": "007", "question": "Leading zeros in the id", "answer": "0.5", "rationale": "half"},
]


def _write_all(tmp: Path, recs: list[dict], options_as_text: bool) -> dict[str, str]:
    """The same records as CSV, JSONL, JSON and Parquet; keys name the format."""
    cols = list(recs[0])
    flat = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v) for k, v in r.items()} for r in recs]
    out = {"csv": write_csv(tmp / "d.csv", cols, [[r[c] for c in cols] for r in flat])}
    out["jsonl"] = write_jsonl(tmp / "d.jsonl", flat if options_as_text else recs)
    (tmp / "d.json").write_text(json.dumps({"data": recs}, ensure_ascii=False), encoding="utf-8")
    out["json"] = str(tmp / "d.json")
    pq.write_table(pa.Table.from_pylist(recs), tmp / "d.parquet")
    out["parquet"] = str(tmp / "d.parquet")
    return out


def _key(e) -> tuple:
    return (e.id, e.question, e.options, e.answer, e.rationale)


@pytest.mark.parametrize(("recs", "kind"), [(CHOICE, "choice"), (FREE, "free")], ids=["choice", "free"])
def test_round_trip_every_file_format(tmp_path, recs, kind):
    files = _write_all(tmp_path, recs, options_as_text=False)
    loaded = {fmt: examples(src, kind=kind) for fmt, src in files.items()}
    expected = [_key(e) for e in loaded["jsonl"]]
    assert [e.id for e in loaded["jsonl"]] == [r["id"] for r in recs]
    for fmt, got in loaded.items():
        assert [_key(e) for e in got] == expected, fmt
    assert [e.row for e in loaded["json"]] == list(range(1, len(recs) + 1))
    assert [e.row for e in loaded["parquet"]] == list(range(1, len(recs) + 1))
    assert [e.row for e in loaded["jsonl"]] == list(range(1, len(recs) + 1))
    csv_lines = Path(files["csv"]).read_text(encoding="utf-8").split("\n")
    for e in loaded["csv"]:
        assert csv_lines[e.row - 1].startswith(e.id + ",")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    # keep the datasets cache of these small files out of the user's home
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path


@pytest.mark.parametrize(("recs", "kind"), [(CHOICE, "choice"), (FREE, "free")], ids=["choice", "free"])
def test_round_trip_through_hf_datasets(hf_cache, recs, kind):
    files = _write_all(hf_cache, recs, options_as_text=True)
    expected = [_key(e) for e in examples(files["jsonl"], kind=kind)]
    for fmt in ("csv", "jsonl", "parquet"):
        got = examples(f"hf:{files[fmt]}", kind=kind)
        assert [_key(e) for e in got] == expected, fmt
        assert [e.row for e in got] == list(range(1, len(recs) + 1))  # record numbers
    unlabeled = write_jsonl(hf_cache / "u.jsonl", [{"question": "other", "options": ["x", "y"]}])
    task = quiet_load(TaskConfig(labeled=f"hf:{files['parquet']}", unlabeled=unlabeled, test=f"hf:{files['csv']}"))
    assert task.kind == kind and [_key(e) for e in task.test.examples] == expected


# hypothesis: any text the formats can hold comes back unchanged

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
# text that shows something: a value of only zero-width or other invisible characters is empty (issue 21)
_clean = _text.map(str.strip).filter(lambda s: bool(s) and s == s.strip() and not _invisible(s))


@st.composite
def choice_records(draw):
    n = draw(st.integers(min_value=1, max_value=6))
    out = []
    for i in range(n):
        opts = draw(st.lists(_clean, min_size=2, max_size=6))
        out.append(
            {
                "id": f"id{i}",
                "question": draw(_clean),
                "options": opts,
                "answer": LETTERS[draw(st.integers(min_value=0, max_value=len(opts) - 1))],
            }
        )
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice_records())
def test_round_trip_property(recs):
    with tempfile.TemporaryDirectory() as tmp:
        files = _write_all(Path(tmp), recs, options_as_text=False)
        for fmt, src in files.items():
            got = [(e.id, e.question, e.options, e.answer) for e in examples(src)]
            assert got == [(r["id"], r["question"], r["options"], r["answer"]) for r in recs], fmt


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.text(alphabet=string.ascii_letters + string.digits + ' ,"\n', min_size=1, max_size=12).filter(
            lambda s: s.strip()
        ),
        min_size=1,
        max_size=8,
    )
)
def test_csv_row_numbers_property(questions):
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "question", "options", "answer"])
    starts = []
    for i, q in enumerate(questions):
        starts.append(buf.getvalue().count("\n") + 1)
        w.writerow([f"id{i}", q, '["x", "y"]', "A"])
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "a.csv"
        p.write_text(buf.getvalue(), encoding="utf-8", newline="")
        assert [e.row for e in examples(str(p))] == starts
