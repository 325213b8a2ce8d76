"""A corpus of malformed inputs, each run through the real command line.

Every bad input must end with exit code 2 and exactly one line on stderr ('semievol: error: ...') that
names the file, row and column where there is one, with no traceback, and nothing written: the run
directory is never created. Inputs that are unusual but fine (a byte-order mark, CRLF line ends, a field
of several megabytes) must load; overlaps between splits load with a warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semievol.cli import main
from semievol.config import TaskConfig
from semievol.tasks import load_task

HEADER = "id,question,options,answer\n"
OPTS = '"[""up"",""flat"",""down""]"'


def _rows(prefix: str, n: int, answers: str = "ABCA") -> str:
    return "".join(
        f"{prefix}{i},{prefix} question {i},{OPTS},{answers[i % len(answers)] if answers else ''}\n"
        for i in range(1, n + 1)
    )


GOOD = {
    "lab.csv": HEADER + _rows("l", 4),
    "unl.csv": HEADER + _rows("u", 3, answers=""),
    "test.csv": HEADER + _rows("t", 2),
}
BASE_ARGS = [
    "run",
    "--labeled",
    "lab.csv",
    "--unlabeled",
    "unl.csv",
    "--test",
    "test.csv",
    "--engine",
    "fake",
    "--embedder",
    "hash",
    "--model",
    "no-such-model.gguf",
    "--run-dir",
    "run",
]


def parquet(records: list[dict]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue().to_pybytes()


@dataclass
class Case:
    id: str
    expect: str  # must appear in the single error line
    files: dict[str, str | bytes] = field(default_factory=dict)  # written over GOOD
    args: list[str] = field(default_factory=list)  # appended to BASE_ARGS (a later flag wins)


def jsonl(*recs: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs)


Q = {"question": "q", "options": ["a", "b", "c"]}
# shaped like real credentials (random letters, no real account)
HF_TOKEN = "hf_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h"
LIVE_KEY = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
SK_KEY = "sk-" + "proj-Zq8XbN3vT6yW1aR4dF7gH0jK2LmP5sU9"

DATA_CASES = [
    Case(
        "missing question column",
        "lab.csv, row 2, column 'question': missing column (found: answer, id, options, query)",
        {"lab.csv": "id,query,options,answer\n" + _rows("l", 2)},
    ),
    Case(
        "missing options column",
        "lab.csv, row 2, column 'options': missing column",
        {"lab.csv": "id,question,choices,answer\n" + _rows("l", 2)},
        ["--answer-kind", "choice"],
    ),
    Case(
        "missing answer column",
        "lab.csv, row 2, column 'answer': missing column",
        {"lab.csv": "id,question,options\n" + "".join(f"l{i},q{i},{OPTS}\n" for i in range(3))},
    ),
    Case("empty file", "lab.csv: file is empty", {"lab.csv": ""}),
    Case("whitespace only", "lab.csv: file is empty", {"lab.csv": "\n  \n\n"}),
    Case("header only", "lab.csv: no data rows (header only or empty)", {"lab.csv": HEADER}),
    Case(
        "invalid JSON in options",
        "lab.csv, row 3, column 'options': options are not a JSON list",
        {"lab.csv": HEADER + _rows("l", 1) + 'l9,q,"[""a"", ""b""",A\n'},
    ),
    Case(
        "options not a list",
        "lab.csv, row 2, column 'options': options must be a list",
        {"lab.csv": HEADER + 'l1,q,"{""a"": 1}",A\n'},
    ),
    Case(
        "one option",
        "lab.csv, row 2, column 'options': needs at least 2 options, found 1",
        {"lab.csv": HEADER + 'l1,q,"[""only""]",A\n'},
    ),
    Case(
        "empty option",
        "lab.csv, row 2, column 'options': option B is empty",
        {"lab.csv": HEADER + 'l1,q,"[""a"", "" "", ""c""]",A\n'},
    ),
    Case(
        "27 options",
        "lab.jsonl, row 1, column 'options': at most 26 options are supported, found 27",
        {"lab.jsonl": jsonl({"question": "q", "options": [str(i) for i in range(27)], "answer": "A"})},
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "nested option",
        "lab.jsonl, row 2, column 'options': option A is a list, not text",
        {"lab.jsonl": jsonl(Q | {"answer": "A"}, {"question": "q2", "options": [["a"], "b"], "answer": "A"})},
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "letter outside the options",
        "lab.csv, row 4, column 'answer': answer 'D' is outside the options A-C",
        {"lab.csv": HEADER + _rows("l", 2) + f"l9,q,{OPTS},D\n"},
    ),
    Case(
        "answer text not an option",
        "lab.csv, row 2, column 'answer': answer 'sideways' is not a letter, an index or one of the options",
        {"lab.csv": HEADER + f"l1,q,{OPTS},sideways\n"},
    ),
    Case(
        "index out of range",
        "lab.csv, row 2, column 'answer': answer index 7 is outside 0..2",
        {"lab.csv": HEADER + f"l1,q,{OPTS},7\n"},
    ),
    Case(
        "index out of range 1-based",
        "lab.csv, row 2, column 'answer': answer index 0 is outside 1..3",
        {"lab.csv": HEADER + f"l1,q,{OPTS},0\n"},
        ["--index-base", "1"],
    ),
    Case(
        "numeric answer both index and option text",
        "lab.csv, row 2, column 'answer': answer '2' is ambiguous",
        {"lab.csv": HEADER + 'l1,q,"[""1"",""2"",""3""]",2\n'},
    ),
    Case(
        "fractional index",
        "lab.json, row 1, column 'answer': answer 1.5 is a number but not a whole one",
        {"lab.json": json.dumps([Q | {"answer": 1.5}])},
        ["--labeled", "lab.json"],
    ),
    Case(
        "boolean answer",
        "lab.jsonl, row 1, column 'answer': answer True is not a letter",
        {"lab.jsonl": jsonl(Q | {"answer": True})},
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "empty answer in labeled",
        "lab.csv, row 3, column 'answer': empty answer",
        {"lab.csv": HEADER + _rows("l", 1) + f"l9,q,{OPTS},  \n"},
    ),
    Case(
        "empty answer in test",
        "test.csv, row 2, column 'answer': empty answer",
        {"test.csv": HEADER + f"t1,q,{OPTS},\n"},
    ),
    Case(
        "empty question",
        "lab.csv, row 3, column 'question': empty question",
        {"lab.csv": HEADER + _rows("l", 1) + f'l9,"",{OPTS},A\n'},
    ),
    Case(
        "question of invisible characters only",
        "lab.csv, row 3, column 'question': empty question",
        {"lab.csv": HEADER + _rows("l", 1) + f"l9,\u200b\u2060\u200d \u00a0,{OPTS},A\n"},
    ),
    Case(
        "option of a zero-width space",
        "lab.csv, row 2, column 'options': option B is empty",
        {"lab.csv": HEADER + 'l1,q,"[""a"", ""\u200b"", ""c""]",A\n'},
    ),
    Case(
        "question is a list",
        "lab.jsonl, row 1, column 'question': the question is a list, not text",
        {"lab.jsonl": jsonl({"question": ["q"], "options": ["a", "b"], "answer": "A"})},
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "duplicate ids",
        "lab.csv, row 4, column 'id': duplicate id 'x' (also at row 2)",
        {"lab.csv": HEADER + f"x,q1,{OPTS},A\ny,q2,{OPTS},B\nx,q3,{OPTS},C\n"},
    ),
    Case(
        "id shared by labeled and unlabeled",
        "unl.csv, row 3, column 'id': id 'l2' is also used in the labeled split",
        {"unl.csv": HEADER + f"u1,other,{OPTS},\nl2,another,{OPTS},\n"},
    ),
    Case(
        "non-UTF-8 bytes",
        "lab.csv, row 3: not UTF-8 (byte 0xe9",
        {"lab.csv": (HEADER + _rows("l", 1) + f"l9,caf\xe9,{OPTS},A\n").encode("latin-1")},
    ),
    Case(
        "too many cells",
        "lab.csv, row 3: 5 cells but the header has 4 columns",
        {"lab.csv": HEADER + _rows("l", 1) + f"l9,q,{OPTS},A,extra\n"},
    ),
    Case(
        "too few cells",
        "lab.csv, row 3: 3 cells but the header has 4 columns",
        {"lab.csv": HEADER + _rows("l", 1) + f"l9,q,{OPTS}\n"},
    ),
    Case(
        "unterminated quote",
        "lab.csv, row 3: bad CSV: a quoted field that starts in this record is never closed",
        {"lab.csv": HEADER + _rows("l", 1) + 'l9,"q is never closed,x,A\nl10,q,x,A\n'},
    ),
    Case(
        "stray quote",
        "lab.csv, row 3: bad CSV: a quote inside a quoted field must be doubled",
        {"lab.csv": HEADER + _rows("l", 1) + f'l9,"say "hi"",{OPTS},A\n'},
    ),
    Case(
        "duplicate header column",
        "lab.csv, row 1, column 'question': column name appears twice in the header",
        {"lab.csv": "id,question,options,answer,question\n" + f"l1,q,{OPTS},A,q\n"},
    ),
    Case(
        "JSONL invalid line",
        "lab.jsonl, row 3: invalid JSON",
        {"lab.jsonl": jsonl(Q | {"answer": "A"}, "", "{'question': 'single quotes'}")},
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "JSONL line not an object",
        "lab.jsonl, row 2: each line must be a JSON object",
        {"lab.jsonl": jsonl(Q | {"answer": "A"}, ["q", "a"])},
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "JSON syntax error",
        "lab.json: invalid JSON at line 3, character",
        {"lab.json": '[\n  {"question": "q", "options": ["a", "b"], "answer": "A"},\n  {"question": }\n]'},
        ["--labeled", "lab.json"],
    ),
    Case(
        "JSON not a list",
        "lab.json: expected a JSON list of records",
        {"lab.json": '{"a": [1], "b": [2]}'},
        ["--labeled", "lab.json"],
    ),
    Case(
        "parquet null question",
        "lab.parquet, row 2, column 'question': empty question",
        {"lab.parquet": parquet([Q | {"answer": "A"}, {"question": None, "options": ["a", "b"], "answer": "B"}])},
        ["--labeled", "lab.parquet"],
    ),
    Case(
        "parquet NaN answer",
        "lab.parquet, row 2, column 'answer': empty answer",
        {"lab.parquet": parquet([Q | {"answer": 0.0}, Q | {"question": "q2", "answer": float("nan")}])},
        ["--labeled", "lab.parquet"],
    ),
    Case(
        "parquet null option",
        "lab.parquet, row 1, column 'options': option B is empty",
        {"lab.parquet": parquet([{"question": "q", "options": ["a", None], "answer": "A"}])},
        ["--labeled", "lab.parquet"],
    ),
    Case(
        "corrupt parquet",
        "lab.parquet: not a readable Parquet file",
        {"lab.parquet": b"PAR1 this is not really parquet"},
        ["--labeled", "lab.parquet"],
    ),
    Case(
        "unsupported file type",
        "lab.txt: unsupported file type '.txt'",
        {"lab.txt": "question\nq\n"},
        ["--labeled", "lab.txt"],
    ),
    Case("file not found", "missing.csv: file not found", {}, ["--unlabeled", "missing.csv"]),
    Case(
        "gap in option columns",
        "lab.csv, row 3, column 'opb': empty option, but a later option column is filled",
        {
            "lab.csv": "question,opa,opb,opc,answer\nq1,x,y,z,A\nq2,x,,z,A\n",
            "unl.csv": "question,opa,opb,opc\nu1,x,y,z\n",
            "test.csv": "question,opa,opb,opc,answer\nt1,x,y,z,B\n",
        },
        ["--option-cols", "opa,opb,opc"],
    ),
    Case(
        "missing option column",
        "lab.csv, row 2, column 'opd': missing option column",
        {"lab.csv": "question,opa,opb,opc,answer\nq1,x,y,z,A\n"},
        ["--option-cols", "opa,opb,opc,opd"],
    ),
    Case(
        "free-form answer is a list",
        "lab.jsonl, row 1, column 'answer': a free-form answer must be a number or text",
        {
            "lab.jsonl": jsonl({"question": "q", "answer": [1, 2]}),
            "unl.jsonl": jsonl({"question": "u"}),
            "test.jsonl": jsonl({"question": "t", "answer": "3"}),
        },
        ["--labeled", "lab.jsonl", "--unlabeled", "unl.jsonl", "--test", "test.jsonl"],
    ),
    Case(
        "free-form answer empty after normalisation",
        "lab.jsonl, row 2, column 'answer': answer is empty after normalisation",
        {
            "lab.jsonl": jsonl({"question": "q", "answer": "4"}, {"question": "q2", "answer": "?!"}),
            "unl.jsonl": jsonl({"question": "u"}),
            "test.jsonl": jsonl({"question": "t", "answer": "3"}),
        },
        ["--labeled", "lab.jsonl", "--unlabeled", "unl.jsonl", "--test", "test.jsonl"],
    ),
    Case(
        "JSON nested 100,000 deep in a CSV cell",
        "lab.csv, row 3, column 'options': JSON nested too deeply to read",
        {"lab.csv": HEADER + _rows("l", 1) + 'l9,q,"' + "[" * 100_000 + "]" * 100_000 + '",A\n'},
    ),
    Case(
        "JSONL record nested 100,000 deep",
        "lab.jsonl, row 2: JSON nested too deeply to read",
        {
            "lab.jsonl": jsonl(
                Q | {"answer": "A"}, '{"question": "q", "options": ' + "[" * 100_000 + "]" * 100_000 + "}"
            )
        },
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "JSON file nested 100,000 deep",
        "lab.json: JSON nested too deeply to read",
        {"lab.json": "[" * 100_000 + "]" * 100_000},
        ["--labeled", "lab.json"],
    ),
    Case(
        "options nested 100,000 deep in JSONL",
        "lab.jsonl, row 1, column 'options': JSON nested too deeply to read",
        {"lab.jsonl": jsonl({"question": "q", "options": "[" * 100_000 + "]" * 100_000, "answer": "A"})},
        ["--labeled", "lab.jsonl"],
    ),
    Case(
        "folder given as a data file",
        "labdir.csv: not a regular file (a folder)",
        {"labdir.csv/x": "x"},
        ["--labeled", "labdir.csv"],
    ),
    # mixed answer kinds: with a numeric preset (gsm8k) a text answer is an error; see test_mixed_free_answers_*
    Case(
        "nan answer in a numeric task",
        "labeled.jsonl, row 1, column 'answer': answer 'NaN' is not a number",
        {
            "data/gsm8k/labeled.jsonl": jsonl({"id": "a", "question": "q", "answer": "NaN"}),
            "data/gsm8k/unlabeled.jsonl": jsonl({"id": "c", "question": "u"}),
            "data/gsm8k/test.jsonl": jsonl({"id": "d", "question": "t", "answer": "3"}),
        },
        ["--task", "gsm8k", "--data-dir", "data", "--labeled", "", "--unlabeled", "", "--test", ""],
    ),
    Case(
        "text answer in a numeric task",
        "labeled.jsonl, row 2, column 'answer': answer 'about five' is not a number",
        {
            "data/gsm8k/labeled.jsonl": jsonl(
                {"id": "a", "question": "q", "answer": "4"}, {"id": "b", "question": "q2", "answer": "about five"}
            ),
            "data/gsm8k/unlabeled.jsonl": jsonl({"id": "c", "question": "u"}),
            "data/gsm8k/test.jsonl": jsonl({"id": "d", "question": "t", "answer": "3"}),
        },
        [
            "--task",
            "gsm8k",
            "--data-dir",
            "data",
            "--labeled",
            "data/gsm8k/labeled.jsonl",
            "--unlabeled",
            "data/gsm8k/unlabeled.jsonl",
            "--test",
            "data/gsm8k/test.jsonl",
        ],
    ),
]

CONFIG_CASES = [
    Case(
        "bad YAML",
        "cfg.yaml: line 2, column 18: not valid YAML (mapping values are not allowed here)",
        {"cfg.yaml": "seed: 1\nmodel: batch_size: 3\n"},
        ["cfg.yaml"],
    ),
    Case(
        "YAML tabs", "cfg.yaml: line 2, column 1: not valid YAML", {"cfg.yaml": "select:\n\ttheta: 3\n"}, ["cfg.yaml"]
    ),
    Case(
        "YAML nested 100,000 deep",
        "cfg.yaml: nested too deeply to read",
        {"cfg.yaml": "seed: " + "[" * 100_000 + "]" * 100_000 + "\n"},
        ["cfg.yaml"],
    ),
    Case(
        "YAML not a mapping",
        "cfg.yaml: the file must hold a mapping of settings",
        {"cfg.yaml": "- a\n- b\n"},
        ["cfg.yaml"],
    ),
    Case(
        "YAML not UTF-8",
        "cfg.yaml: config file is not UTF-8",
        {"cfg.yaml": "seed: 1 # caf\xe9\n".encode("latin-1")},
        ["cfg.yaml"],
    ),
    Case("config file missing", "nope.yaml: config file not found", {}, ["nope.yaml"]),
    Case("unknown key", "seeed: unknown setting (did you mean 'seed'?)", {"cfg.yaml": "seeed: 1\n"}, ["cfg.yaml"]),
    Case(
        "unknown key in a section",
        "select.thetta: unknown setting (did you mean 'theta'?)",
        {"cfg.yaml": "select:\n  thetta: 30\n"},
        ["cfg.yaml"],
    ),
    Case(
        "section key at the top",
        "theta: unknown setting (did you mean 'select.theta'?)",
        {"cfg.yaml": "theta: 30\n"},
        ["cfg.yaml"],
    ),
    Case(
        "unknown section",
        "selcet: unknown setting (did you mean 'select'?)",
        {"cfg.yaml": "selcet: {}\n"},
        ["cfg.yaml"],
    ),
    # flags for the same section (--engine) must not hide the bad value
    Case(
        "section not a mapping",
        "cfg.yaml: model: must be a mapping of settings",
        {"cfg.yaml": "model: 3\n"},
        ["cfg.yaml"],
    ),
    Case(
        "wrong type int",
        "model.batch_size: must be an integer, got 'many'",
        {"cfg.yaml": "model:\n  batch_size: many\n"},
        ["cfg.yaml"],
    ),
    Case("wrong type int from a flag", "propagate.k: must be an integer, got '2.5'", {}, ["--k", "2.5"]),
    Case("wrong type float", "select.theta: must be a number, got 'high'", {}, ["--theta", "high"]),
    Case(
        "wrong type bool",
        "sft.use_rationale: must be true or false, got 'maybe'",
        {"cfg.yaml": "sft:\n  use_rationale: maybe\n"},
        ["cfg.yaml"],
    ),
    Case(
        "wrong type list",
        "evaluate.models: must be a list, got int",
        {"cfg.yaml": "evaluate:\n  models: 3\n"},
        ["cfg.yaml"],
    ),
    Case("bool for an int", "seed: must be an integer, got True", {"cfg.yaml": "seed: yes\n"}, ["cfg.yaml"]),
    Case(
        "closed choice",
        "model.engine: must be one of hf, openai, fake, vllm, ray, ray-vllm; got 'gpt'",
        {},
        ["--engine", "gpt"],
    ),
    Case("theta above 100", "select.theta: must be in 0..100, got 150.0", {}, ["--theta", "150"]),
    Case(
        "theta below 0",
        "select.theta: must be in 0..100, got -1.0",
        {"cfg.yaml": "select: {theta: -1}\n"},
        ["cfg.yaml"],
    ),
    Case(
        "theta not a number",
        "select.theta: must be a finite number",
        {"cfg.yaml": "select: {theta: .nan}\n"},
        ["cfg.yaml"],
    ),
    Case("infinite learning rate", "sft.lr: must be a finite number", {}, ["--lr", "inf"]),
    Case(
        "no answering configurations",
        "propagate.configs: needs at least one configuration (n >= 1)",
        {},
        ["--configs", ""],
    ),
    Case(
        "malformed configuration",
        "propagate.configs: 'warm:3' is not MODEL:DEMOS:TEMPERATURE",
        {},
        ["--configs", "warm:3"],
    ),
    Case(
        "unknown model in a configuration",
        "propagate.configs: 'cold:1:0': model must be base, warm, members, knn or probe",
        {},
        ["--configs", "cold:1:0"],
    ),
    Case("negative k", "propagate.k: must be 0 or more, got -1", {}, ["--k", "-1"]),
    Case("index_base 2", "task.index_base: must be 0 or 1, got 2", {}, ["--index-base", "2"]),
    Case("negative limit", "task.limit_labeled: must be 0 or more, got -1", {}, ["--limit-labeled", "-1"]),
    Case(
        "batch not a multiple",
        "sft.batch_size: must be a multiple of micro_batch_size (8), got 12",
        {},
        ["--sft.batch_size", "12"],
    ),
    Case("zero rounds", "evolve.rounds: must be at least 1, got 0", {}, ["--rounds", "0"]),
    Case("unknown evaluated model", "evaluate.models: unknown model 'final'", {}, ["--models", "base,final"]),
    Case("unknown preset", "task.task: unknown preset 'fbp' (did you mean 'fpb'?)", {}, ["--task", "fbp"]),
    Case(
        "data_dir without the task folder",
        "task.data_dir: data/fpb is not a folder",
        {"data/arc/labeled.csv": "x"},
        ["--task", "fpb", "--data-dir", "data"],
    ),
    Case(
        "data_dir without a labeled file",
        "task.data_dir: no labeled.{csv,jsonl,json,parquet} in data/fpb",
        {"data/fpb/unlabeled.csv": GOOD["unl.csv"]},
        ["--task", "fpb", "--data-dir", "data", "--labeled", "", "--unlabeled", "", "--test", ""],
    ),
    Case(
        "seed too large for the generators",
        "seed: must be in 0..4294967295, got 99999999999999999999",
        {},
        ["--seed", "99999999999999999999"],
    ),
    Case("negative seed", "seed: must be in 0..4294967295, got -1", {"cfg.yaml": "seed: -1\n"}, ["cfg.yaml"]),
    Case(
        "Hugging Face token as a setting",
        "model.served_model: the value looks like a Hugging Face token (hf_...)",
        {},
        ["--served-model", HF_TOKEN],
    ),
    Case(
        "live secret key in a file path",
        "task.labeled: the value looks like a live or test secret key",
        {"cfg.yaml": f"task:\n  labeled: {LIVE_KEY}\n"},
        ["cfg.yaml"],
    ),
    Case(
        "sk- key in a list",
        "propagate.configs: the value looks like an API key (sk-...)",
        {},
        ["--configs", f"warm:0:0,{SK_KEY}"],
    ),
    Case(
        "key in a URL's query string",
        "model.api_base: the value looks like a URL with a key in its query string",
        {},
        ["--api-base", "https://example.com/v1?api_key=Zq8XbN3vT6yW1aR4dF7g"],
    ),
    Case(
        "token as a setting's name",
        "cfg.yaml: model: a setting's name looks like a Hugging Face token",
        {"cfg.yaml": f"model:\n  {HF_TOKEN}: 1\n"},
        ["cfg.yaml"],
    ),
    Case(
        "test missing when evaluation is asked",
        "task.test: evaluation needs a test split, and none was given",
        {},
        ["--test", ""],
    ),
]


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8", newline="")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, expect: str) -> None:
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("semievol: error: "), lines[0]
    assert expect in lines[0], lines[0]


def _args(case: Case) -> list[str]:
    args = BASE_ARGS + case.args
    # a bare config file name goes in the positional slot
    return ["--quiet"] + [a for a in args if not a.endswith(".yaml")] + [a for a in args if a.endswith(".yaml")][:1]


@pytest.mark.parametrize("case", DATA_CASES + CONFIG_CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_exit_2_nothing_written(workdir, capsys, case):
    _write(workdir, GOOD | case.files)
    before = _snapshot(workdir)
    rc, _, err = run_cli(_args(case), capsys)
    assert_one_line_error(rc, err, case.expect)
    assert not any(k in err for k in (HF_TOKEN, LIVE_KEY, SK_KEY))  # a key is never echoed
    assert not (workdir / "run").exists()
    assert _snapshot(workdir) == before


@pytest.mark.parametrize(
    "case", [c for c in DATA_CASES if c.id in ("too few cells", "empty answer in labeled")], ids=lambda c: c.id
)
def test_data_check_reports_the_same_error(workdir, capsys, case):
    _write(workdir, GOOD | case.files)
    argv = ["data", "check", "--engine", "fake", "--labeled", "lab.csv", "--unlabeled", "unl.csv", "--test", "test.csv"]
    rc, _, err = run_cli(argv, capsys)
    assert_one_line_error(rc, err, case.expect)


def test_error_lines_stay_one_line_when_the_data_has_newlines(workdir, capsys):
    _write(workdir, GOOD | {"lab.csv": HEADER + f'l1,q,{OPTS},"not\nan option"\n'})
    rc, _, err = run_cli(_args(Case("x", "")), capsys)
    assert_one_line_error(rc, err, "lab.csv, row 2, column 'answer': answer 'not\\nan option'")


def test_k_larger_than_the_labeled_set(workdir, capsys):
    _write(workdir, GOOD)
    rc, _, err = run_cli(_args(Case("k", "", args=["--k", "5"])), capsys)
    assert_one_line_error(
        rc, err, "propagate.k: 5 neighbours are retrieved per question, but the labeled split (lab.csv) has only 4 rows"
    )
    assert not (workdir / "run").exists()


# ---------------------------------------------------------------- the real entry point, in a subprocess

SUBPROCESS_CASES = [
    c for c in DATA_CASES + CONFIG_CASES if c.id in ("non-UTF-8 bytes", "bad YAML", "unknown key in a section")
]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda c: c.id)
def test_real_command_line(workdir, case):
    _write(workdir, GOOD | case.files)
    before = _snapshot(workdir)
    env = dict(os.environ, PYTHONWARNINGS="default")  # a stray warning would show up as a second line
    proc = subprocess.run(
        [sys.executable, "-m", "semievol", *_args(case)],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert_one_line_error(proc.returncode, proc.stderr, case.expect)
    assert proc.stdout == ""
    assert _snapshot(workdir) == before


# ---------------------------------------------------------------- unusual but fine, and warnings


def check(workdir: Path, capsys, files: dict[str, str | bytes], extra: list[str] | None = None) -> str:
    _write(workdir, GOOD | files)
    argv = ["data", "check", "--engine", "fake", "--labeled", "lab.csv", "--unlabeled", "unl.csv", "--test", "test.csv"]
    rc, out, err = run_cli(argv + (extra or []), capsys)
    assert rc == 0, err
    assert err == ""
    return out


def test_byte_order_mark_loads(workdir, capsys):
    out = check(workdir, capsys, {"lab.csv": "\ufeff" + GOOD["lab.csv"]})
    assert "labeled    rows      4" in out


def test_crlf_line_ends_load(workdir, capsys):
    out = check(workdir, capsys, {n: GOOD[n].replace("\n", "\r\n") for n in GOOD})
    assert "labeled    rows      4" in out and "test       rows      2" in out


def test_a_field_of_several_megabytes_loads(workdir):
    big = "word " * 1_000_000  # 5 MB
    _write(workdir, GOOD | {"lab.csv": GOOD["lab.csv"] + f'l9,"{big}",{OPTS},B\n'})
    task = load_task(TaskConfig(labeled="lab.csv", unlabeled="unl.csv"))
    assert len(task.labeled.examples[-1].question) == len(big.strip())
    assert task.labeled.examples[-1].row == 6


def test_unknown_columns_and_blank_lines_are_fine(workdir, capsys):
    lab = "extra,id,question,options,answer,more\n" + "".join(f"z,l{i},q{i},{OPTS},A,\n\n" for i in range(3))
    out = check(workdir, capsys, {"lab.csv": lab})
    assert "labeled    rows      3" in out


def test_labeled_and_unlabeled_sharing_questions_warns(workdir, capsys):
    shared = HEADER + f"u1,l question 1,{OPTS},\nu2,l question 2,{OPTS},\nu3,fresh,{OPTS},\n"
    out = check(workdir, capsys, {"unl.csv": shared})
    assert "warning: 2 unlabeled questions also appear in the labeled split (lab.csv)" in out
    with pytest.warns(UserWarning, match="2 unlabeled questions also appear"):
        load_task(TaskConfig(labeled="lab.csv", unlabeled="unl.csv"))


def test_test_sharing_questions_with_labeled_warns(workdir, capsys):
    out = check(workdir, capsys, {"test.csv": HEADER + f"t1,l question 3,{OPTS},C\nt2,fresh,{OPTS},A\n"})
    assert "warning: 1 test questions also appear in the labeled split: test accuracy may be optimistic" in out


def test_unlabeled_sharing_questions_with_test_warns(workdir, capsys):
    out = check(workdir, capsys, {"unl.csv": HEADER + f"u1,t question 1,{OPTS},\nu2,fresh,{OPTS},\n"})
    assert (
        "warning: 1 unlabeled questions also appear in the test split (test.csv): pseudo-labels trained on "
        "them make test accuracy optimistic" in out
    )


def test_overlaps_ignore_case_and_spacing(workdir, capsys):
    out = check(
        workdir,
        capsys,
        {
            "unl.csv": HEADER + f'u1,L  QUESTION 1,{OPTS},\nu2,"T question\n1",{OPTS},\n',
            "test.csv": HEADER + f"t1,t question 1,{OPTS},A\nt2, l Question  2 ,{OPTS},B\n",
        },
    )
    assert "warning: 1 unlabeled questions also appear in the labeled split" in out
    assert "warning: 1 unlabeled questions also appear in the test split" in out
    assert "warning: 1 test questions also appear in the labeled split" in out


def test_a_row_listing_an_option_twice_warns(workdir, capsys):
    twice = '"[""up"",""flat"",""up""]"'
    out = check(workdir, capsys, {"lab.csv": GOOD["lab.csv"] + f"l9,q9,{twice},B\nl10,q10,{twice},up\n"})
    assert (
        "warning: lab.csv: 2 rows list the same option twice (first at row 6: 'up'), 1 with the answer on a "
        "repeated option (the other copy's letter counts as wrong); each copy has its own letter" in out
    )


def test_mixed_free_answers_warn_in_a_custom_task(workdir):
    """Decision: a custom free-form task may mix numbers and text (years next to names is fine), but a split
    that is mostly numbers with a few text answers gets a warning naming the first text row; with a numeric
    preset (gsm8k, convfinqa) a text answer is an error (see the corpus)."""
    lab = jsonl(*({"question": f"q{i}", "answer": str(i)} for i in range(5)), {"question": "q9", "answer": "see above"})
    _write(
        workdir,
        {
            "lab.jsonl": lab,
            "unl.jsonl": jsonl({"question": "u"}),
            "names.jsonl": jsonl({"question": "who", "answer": "Ada"}, {"question": "when", "answer": "1815"}),
        },
    )
    with pytest.warns(UserWarning, match=r"lab\.jsonl: 1 of 6 answers are text .*first at row 6: 'see above'"):
        task = load_task(TaskConfig(labeled="lab.jsonl", unlabeled="unl.jsonl"))
    assert [e.answer for e in task.labeled.examples][-1] == "see above"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mostly text with a number: no warning
        load_task(TaskConfig(labeled="names.jsonl", unlabeled="unl.jsonl"))


def test_mixed_choice_answer_forms_in_one_split_are_fine(workdir):
    """Letters and index keys in one split are fine: the real ARC unlabeled split mixes them."""
    lab = HEADER + f"l1,q1,{OPTS},A\nl2,q2,{OPTS},2\nl3,q3,{OPTS},down\n"
    _write(workdir, GOOD | {"lab.csv": lab})
    task = load_task(TaskConfig(labeled="lab.csv", unlabeled="unl.csv", index_base=1))
    assert [e.answer for e in task.labeled.examples] == ["A", "B", "C"]


# ---------------------------------------------------------------- files that are not files


def test_a_fifo_as_data_file_is_refused_at_once(workdir):
    """A FIFO was read twice (a check, then the reader): the second read waited forever for a writer."""
    _write(workdir, GOOD)
    (workdir / "lab.csv").unlink()
    os.mkfifo(workdir / "lab.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "semievol", *_args(Case("fifo", ""))],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(proc.returncode, proc.stderr, "lab.csv: not a regular file (a FIFO)")
    assert not (workdir / "run").exists()


def test_a_device_as_data_file_is_refused(workdir, capsys):
    """/dev/zero behind a data file's name was read as one endless line, ending in MemoryError."""
    _write(workdir, GOOD)
    (workdir / "lab.csv").unlink()
    (workdir / "lab.csv").symlink_to("/dev/zero")
    rc, _, err = run_cli(_args(Case("device", "")), capsys)
    assert_one_line_error(rc, err, "lab.csv: not a regular file (a device or socket)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders without read permission")
def test_an_unreadable_data_dir_is_one_line(workdir, capsys):
    _write(workdir, {"data/fpb/labeled.csv": GOOD["lab.csv"], "data/fpb/unlabeled.csv": GOOD["unl.csv"]})
    args = ["--task", "fpb", "--data-dir", "data", "--labeled", "", "--unlabeled", "", "--test", ""]
    for folder in ("data", "data/fpb"):
        (workdir / folder).chmod(0)
        try:
            rc, _, err = run_cli(_args(Case("unreadable", "", args=args)), capsys)
        finally:
            (workdir / folder).chmod(0o755)
        assert_one_line_error(rc, err, f"task.data_dir: cannot read the folder {folder}")


# ---------------------------------------------------------------- real files with a few bad rows; eval alone

NAN_OPTION = 'l9,q9,"[""a"", ""b"", ""c"", NaN]",A\n'  # the paper's own MMLU files carry such a row


def test_bad_rows_stop_by_default_and_are_skipped_with_one_warning(workdir, capsys):
    files = {"lab.csv": GOOD["lab.csv"] + NAN_OPTION, "test.csv": GOOD["test.csv"] + NAN_OPTION.replace("l9", "t9")}
    _write(workdir, GOOD | files)
    rc, _, err = run_cli(_args(Case("nan", "")), capsys)
    assert_one_line_error(rc, err, "lab.csv, row 6, column 'options': option D is empty")
    out = check(workdir, capsys, files, ["--bad-rows", "skip"])
    assert "labeled    rows      4" in out and "test       rows      2" in out
    warned = [line for line in out.splitlines() if "skipped" in line]
    assert warned == [
        "warning: labeled split: skipped 1 bad rows of lab.csv (task.bad_rows: skip): row 6, column "
        "'options': option D is empty",
        "warning: test split: skipped 1 bad rows of test.csv (task.bad_rows: skip): row 4, column "
        "'options': option D is empty",
    ]


def test_skipped_rows_are_counted_and_the_first_few_named(workdir, capsys):
    bad = "".join(NAN_OPTION.replace("l9", f"b{i}") for i in range(5))
    out = check(workdir, capsys, {"unl.csv": GOOD["unl.csv"] + bad}, ["--bad-rows", "skip"])
    (line,) = [line for line in out.splitlines() if "skipped" in line]
    assert line.startswith("warning: unlabeled split: skipped 5 bad rows of unl.csv (task.bad_rows: skip): row 5,")
    assert line.count("option D is empty") == 3 and line.endswith("; and 2 more")
    assert "unlabeled  rows      3" in out


def test_eval_needs_no_unlabeled_split(workdir, capsys):
    """`semievol eval --task mmlu_pro --data-dir D` stopped with "no unlabeled.{csv,...}" on labeled and test files."""
    _write(workdir, {"data/mmlu_pro/labeled.csv": GOOD["lab.csv"], "data/mmlu_pro/test.csv": GOOD["test.csv"]})
    rc, out, err = run_cli(
        ["--quiet", "eval", "--task", "mmlu_pro", "--data-dir", "data", "--engine", "fake", "--run-dir", "run"], capsys
    )
    assert rc == 0, err
    assert "mmlu_pro: accuracy" in out and "n=2" in out
    assert json.loads((workdir / "run" / "eval_mmlu_pro.json").read_text())["n"] == 2
    rc, _, err = run_cli(
        ["--quiet", "eval", "--task", "mmlu_pro", "--data-dir", "data", "--engine", "fake", "--test", "none.csv"],
        capsys,
    )
    assert_one_line_error(rc, err, "none.csv: file not found")
