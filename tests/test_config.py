"""Settings: YAML files, flag overrides, --help generated from the dataclasses, messages that name the field."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from semievol.cli import DEMO_DEFAULTS, build_parser, config_from_args
from semievol.config import (
    SECTIONS,
    ConfigError,
    RunConfig,
    build_config,
    field_docs,
    flag_table,
    load_yaml,
    merge,
    to_dict,
)


def parse(argv: list[str], base: dict | None = None) -> RunConfig:
    return config_from_args(build_parser().parse_args(argv), base=base)


def write(tmp_path, text: str):
    p = tmp_path / "cfg.yaml"
    p.write_text(text, encoding="utf-8")
    return str(p)


# ---------------------------------------------------------------- YAML and flags


def test_defaults_without_file_or_flags():
    assert parse(["run"]) == RunConfig()


def test_yaml_then_flags_override_it(tmp_path):
    cfg_file = write(
        tmp_path,
        """
seed: 3
run_dir: runs/x
model: {engine: fake, batch_size: 4}
select:
  theta: 20
  rule: fixed
propagate:
  configs: [warm:0:0, base:1:0.5]
""",
    )
    cfg = parse(["run", cfg_file, "--theta", "40", "--sft.lr", "0.001", "--model.batch_size", "2"])
    assert cfg.seed == 3 and cfg.run_dir == "runs/x"  # from the file
    assert cfg.select.theta == 40.0 and cfg.select.rule == "fixed"  # flag beats file; the rest of the section stays
    assert cfg.model.engine == "fake" and cfg.model.batch_size == 2
    assert cfg.sft.lr == 0.001 and cfg.sft.epochs == 2.0  # flag on a section the file never named
    assert cfg.propagate.configs == ["warm:0:0", "base:1:0.5"]


def test_flags_come_in_dotted_and_short_forms():
    a = parse(["run", "--select.theta", "30", "--task.limit_labeled", "5", "--model.engine", "fake"])
    b = parse(["run", "--theta", "30", "--limit-labeled", "5", "--engine", "fake"])
    assert a == b
    assert a.select.theta == 30.0 and a.task.limit_labeled == 5 and a.model.engine == "fake"


def test_the_last_flag_wins_and_flags_order_against_the_file_does_not_matter(tmp_path):
    cfg_file = write(tmp_path, "seed: 1\n")
    assert parse(["run", "--seed", "5", cfg_file]).seed == 5
    assert parse(["run", cfg_file, "--seed", "5", "--seed", "6"]).seed == 6


def test_list_bool_and_optional_flags():
    cfg = parse(
        [
            "run",
            "--configs",
            "warm:0:0, base:3:0.7",
            "--option-cols",
            "opa,opb",
            "--use-rationale",
            "false",
            "--models",
            "base",
        ]
    )
    assert cfg.propagate.configs == ["warm:0:0", "base:3:0.7"]
    assert cfg.task.option_cols == ["opa", "opb"]
    assert cfg.sft.use_rationale is False
    assert cfg.evaluate.models == ["base"]
    assert parse(["run", "--use-rationale", "yes"]).sft.use_rationale is True


def test_yaml_keys_may_use_hyphens(tmp_path):
    cfg = parse(["run", write(tmp_path, "run-dir: runs/h\nselect:\n  released-theta: 10\n")])
    assert cfg.run_dir == "runs/h" and cfg.select.released_theta == 10.0


def test_empty_yaml_and_empty_sections(tmp_path):
    assert parse(["run", write(tmp_path, "")]) == RunConfig()
    assert parse(["run", write(tmp_path, "model:\nselect: {}\n")]) == RunConfig()


def test_yaml_with_byte_order_mark(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes("\ufeffseed: 4\n".encode())
    assert parse(["run", str(p)]).seed == 4


def test_numbers_in_yaml_that_pyyaml_reads_as_text(tmp_path):
    # PyYAML reads '1e-4' (no dot) as a string: it must still be a number
    cfg = parse(["run", write(tmp_path, "sft:\n  lr: 1e-4\n  epochs: 3\n")])
    assert cfg.sft.lr == 1e-4 and cfg.sft.epochs == 3.0 and isinstance(cfg.sft.epochs, float)


def test_demo_defaults_sit_under_the_file_and_flags(tmp_path):
    cfg = parse(["demo"], base=DEMO_DEFAULTS)
    assert cfg.task.task == "demo" and cfg.sft.lr == 1e-3 and cfg.run_dir == "runs/demo"
    assert cfg.select.calibrate and cfg.select.candidates_only
    assert not parse(["demo", "--select.calibrate", "false"], base=DEMO_DEFAULTS).select.calibrate
    cfg = parse(["demo", write(tmp_path, "sft: {lr: 0.01}\n"), "--epochs", "1"], base=DEMO_DEFAULTS)
    assert cfg.sft.lr == 0.01 and cfg.sft.epochs == 1.0 and cfg.task.task == "demo"


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = parse(
        [
            "run",
            "--theta",
            "12.5",
            "--configs",
            "warm:2:0.3",
            "--option-cols",
            "a,b",
            "--test",
            "t.csv",
            "--engine",
            "fake",
            "--seed",
            "9",
        ]
    )
    again = build_config(yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False)))
    assert again == cfg


def test_merge_is_deep_and_does_not_change_its_inputs():
    base = {"a": 1, "s": {"x": 1, "y": 2}}
    over = {"s": {"y": 3}, "b": 2}
    assert merge(base, over) == {"a": 1, "s": {"x": 1, "y": 3}, "b": 2}
    assert base == {"a": 1, "s": {"x": 1, "y": 2}} and over == {"s": {"y": 3}, "b": 2}


# ---------------------------------------------------------------- --help


def _all_fields() -> list[tuple[str, str, type]]:
    hints = typing.get_type_hints(RunConfig)
    out = []
    for f in dataclasses.fields(RunConfig):
        if f.name in SECTIONS:
            out += [(f.name, sf.name, hints[f.name]) for sf in dataclasses.fields(hints[f.name])]
        else:
            out.append(("", f.name, RunConfig))
    return out


def test_every_setting_has_a_docstring_and_a_flag():
    table = {row[0]: row for row in flag_table()}
    for sec, name, cls in _all_fields():
        assert field_docs(cls).get(name, "").strip(), f"{cls.__name__}.{name} has no docstring"
        assert (f"{sec}.{name}" if sec else name) in table
    assert len(table) == len(_all_fields())


@pytest.mark.parametrize("command", ["run", "sft", "propagate", "select", "evolve", "evaluate", "eval", "demo"])
def test_help_documents_every_setting(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0
    text = "".join(capsys.readouterr().out.split())  # undo argparse's line wrapping (it breaks at hyphens too)
    for sec, name, cls in _all_fields():
        flag = f"--{sec}.{name}" if sec else f"--{name.replace('_', '-')}"
        assert flag in text, flag
        doc = "".join(field_docs(cls)[name].split())
        assert doc in text, f"{flag}: {field_docs(cls)[name]!r} not in --help"
    assert f"(default:{RunConfig().seed})" in text


def test_data_check_help(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "check", "--help"])
    assert "--task.data_dir" in capsys.readouterr().out


def test_short_aliases_only_for_unique_names():
    rows = flag_table()
    names = [fname for _, _, sec, fname, _, _ in rows if sec]
    for dotted, alias, sec, fname, _, _ in rows:
        if sec:
            assert (alias is not None) == (names.count(fname) == 1), dotted
    assert parse(["run", "--model.batch_size", "3", "--sft.batch_size", "16"]).sft.batch_size == 16
    with pytest.raises(SystemExit):  # --batch-size would be ambiguous between model and sft
        build_parser().parse_args(["run", "--batch-size", "3"])


# ---------------------------------------------------------------- validation names the field

INVALID = [
    ({"seed": "x"}, "seed: must be an integer"),
    ({"run_dir": ["a"]}, "run_dir: must be a string"),
    ({"model": {"batch_size": 0}}, "model.batch_size: must be at least 1"),
    ({"model": {"max_new_tokens": 0}}, "model.max_new_tokens: must be at least 1"),
    ({"model": {"threads": -1}}, "model.threads: must be 0 or more"),
    ({"model": {"dtype": "int8"}}, "model.dtype: must be one of auto, bf16, fp16, fp32"),
    ({"model": {"engine": "tgi"}}, "model.engine: must be one of hf, openai, fake, vllm, ray, ray-vllm; got 'tgi'"),
    ({"model": {"api_key_env": "sk-live-123"}}, "model.api_key_env: must be the name of an environment variable"),
    (
        {"model": {"api_base": "https://user:sk-live-123@host/v1"}},
        "model.api_base: must be an http(s) URL without credentials",
    ),
    ({"model": {"api_base": "localhost:8000"}}, "model.api_base: must be an http(s) URL"),
    ({"model": {"api": "responses"}}, "model.api: must be one of completions, chat"),
    ({"model": {"top_logprobs": 0}}, "model.top_logprobs: must be in 1..100"),
    ({"model": {"concurrency": 0}}, "model.concurrency: must be at least 1"),
    ({"model": {"timeout": 0}}, "model.timeout: must be positive"),
    ({"model": {"max_retries": -1}}, "model.max_retries: must be 0 or more"),
    ({"model": {"backoff": -0.5}}, "model.backoff: must be 0 or more"),
    ({"task": {"answer_kind": "letters"}}, "task.answer_kind: must be one of auto, choice, free"),
    ({"task": {"index_base": 2}}, "task.index_base: must be 0 or 1"),
    ({"task": {"limit_test": -3}}, "task.limit_test: must be 0 or more"),
    ({"task": {"option_cols": {"a": 1}}}, "task.option_cols: must be a list"),
    ({"sft": {"lora_r": 0}}, "sft.lora_r: must be at least 1"),
    ({"sft": {"lr": 0}}, "sft.lr: must be positive"),
    ({"sft": {"lr": float("inf")}}, "sft.lr: must be a finite number"),
    ({"sft": {"epochs": 0}}, "sft.epochs: must be positive (or set max_steps)"),
    ({"sft": {"max_steps": -1}}, "sft.max_steps: must be 0 or more"),
    ({"sft": {"micro_batch_size": 0}}, "sft.micro_batch_size: must be at least 1"),
    ({"sft": {"micro_batch_tokens": -1}}, "sft.micro_batch_tokens: must be 0 or more"),
    ({"sft": {"batch_size": 12}}, "sft.batch_size: must be a multiple of micro_batch_size (8)"),
    ({"sft": {"warmup_ratio": 1}}, "sft.warmup_ratio: must be in [0, 1)"),
    ({"sft": {"lora_dropout": -0.1}}, "sft.lora_dropout: must be in [0, 1)"),
    ({"sft": {"max_length": 8}}, "sft.max_length: must be at least 16"),
    ({"sft": {"bf16": "always"}}, "sft.bf16: must be one of auto, on, off"),
    ({"sft": {"use_rationale": "maybe"}}, "sft.use_rationale: must be true or false"),
    ({"propagate": {"k": -1}}, "propagate.k: must be 0 or more"),
    ({"ray": {"actors": 0}}, "ray.actors: must be at least 1"),
    ({"ray": {"num_gpus": -1}}, "ray.num_gpus: must be 0 or more"),
    ({"propagate": {"configs": []}}, "propagate.configs: needs at least one configuration"),
    ({"propagate": {"configs": ["warm:20:0"]}}, "propagate.configs: 'warm:20:0': demos must be in 0..16"),
    ({"propagate": {"configs": ["warm:1:9"]}}, "propagate.configs: 'warm:1:9': temperature must be in 0..5"),
    ({"propagate": {"configs": ["warm:x:0"]}}, "propagate.configs: 'warm:x:0': demos must be an integer"),
    ({"propagate": {"chunk_size": 0}}, "propagate.chunk_size: must be at least 1"),
    ({"propagate": {"index": "annoy"}}, "propagate.index: must be one of auto, numpy, faiss"),
    ({"select": {"theta": 100.5}}, "select.theta: must be in 0..100"),
    ({"select": {"theta": -0.5}}, "select.theta: must be in 0..100"),
    ({"select": {"released_theta": 101}}, "select.released_theta: must be in 0..100"),
    ({"select": {"rule": "top"}}, "select.rule: must be one of percentile, released"),
    ({"select": {"threshold": "nan"}}, "select.threshold: must be a finite number"),
    ({"evolve": {"rounds": 0}}, "evolve.rounds: must be at least 1"),
    ({"evolve": {"continue_lr": 0}}, "evolve.continue_lr: must be positive"),
    ({"evaluate": {"limit": -1}}, "evaluate.limit: must be 0 or more"),
    ({"evaluate": {"models": ["base", "best"]}}, "evaluate.models: unknown model 'best'"),
    ({"sft": {"lora_rr": 1}}, "sft.lora_rr: unknown setting (did you mean 'lora_r'?)"),
    ({"batch_size": 1}, "batch_size: unknown setting (did you mean 'model.batch_size' or 'sft.batch_size'?)"),
    ({"propagate": 3}, "propagate: must be a mapping of settings"),
]


@pytest.mark.parametrize(
    ("values", "message"), INVALID, ids=[m.split(":")[0] + "-" + str(i) for i, (_, m) in enumerate(INVALID)]
)
def test_validation_names_the_field(values, message):
    with pytest.raises(ConfigError) as err:
        build_config(values)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("values", "check"),
    [
        ({"select": {"theta": 0}}, lambda c: c.select.theta == 0.0),
        ({"select": {"theta": 100}}, lambda c: c.select.theta == 100.0),
        ({"sft": {"epochs": 0, "max_steps": 5}}, lambda c: c.sft.max_steps == 5),
        ({"propagate": {"k": 0}}, lambda c: c.propagate.k == 0),
        ({"seed": 2.0}, lambda c: c.seed == 2 and isinstance(c.seed, int)),
        ({"task": {"test": None}}, lambda c: c.task.test is None),
        ({"task": {"labeled": 5}}, lambda c: c.task.labeled == "5"),
    ],
)
def test_edge_values_that_are_valid(values, check):
    assert check(build_config(values))


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg\.yaml: line 2, column 18: not valid YAML \(mapping values"):
        load_yaml(write(tmp_path, "seed: 1\nmodel: batch_size: 3\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path)  # a folder


def test_a_bare_on_or_off_in_yaml_reaches_an_on_off_setting():
    """YAML 1.1 reads `bf16: on` as True; the setting's own words are on/off, so that must not be refused."""
    import yaml

    assert build_config(yaml.safe_load("sft:\n  bf16: on\n")).sft.bf16 == "on"
    assert build_config(yaml.safe_load("sft:\n  bf16: off\n")).sft.bf16 == "off"
    with pytest.raises(ConfigError, match="model.dtype: must be one of"):  # no on/off among its choices
        build_config({"model": {"dtype": True}})


def test_threads_default_to_every_cpu_this_process_may_use_shared_among_local_processes(monkeypatch):
    import os

    from semievol.cli import default_threads

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads(0) == cpus and default_threads(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cpus * 2))  # more processes than CPUs still get one thread each
    assert default_threads(0) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_threads(0) == cpus
