"""Exports of training data for LLaMA-Factory, TRL and axolotl, and the merged model, on test-made run dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import stub_manifest, write_jsonl
from datasets import load_dataset

from semievol.cli import main
from semievol.config import build_config, to_dict
from semievol.export import FORMATS, export_data
from semievol.prompts import training_pair
from semievol.tasks import Example

OPTIONS = ["negative", "neutral", "positive"]


def make_run(root: Path, cfg: dict, train_rows: list[dict], pseudo: list[dict] | None = None) -> Path:
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(build_config({"run_dir": str(run)} | cfg))))
    write_jsonl(run / "evolve" / "train_data.jsonl", train_rows)
    stub_manifest(run / "evolve", "evolve")
    if pseudo is not None:
        write_jsonl(run / "select" / "pseudo_labels.jsonl", pseudo)
        stub_manifest(run / "select", "select")
    return run


CHOICE_ROWS = [
    {
        "id": f"labeled-{i}",
        "question": f"Profit rose {i}% this quarter.",
        "options": OPTIONS,
        "answer": "C",
        "source": "labeled",
    }
    for i in range(3)
] + [
    {
        "id": f"unlabeled-{i}",
        "question": f"Sales fell by {i} units.",
        "options": OPTIONS,
        "answer": "A",
        "source": "pseudo",
    }
    for i in range(2)
]


def choice_run(root: Path) -> Path:
    return make_run(root, {"task": {"task": "fpb"}}, CHOICE_ROWS)


def expected(row: dict, use_rationale: bool = True) -> tuple[str, str, str]:
    """(system, user, response) exactly as semievol trains on the row."""
    ex = Example(
        id=row["id"],
        question=row["question"],
        options=row.get("options"),
        answer=row["answer"],
        rationale=row.get("rationale"),
    )
    prompt, response = training_pair(ex, row["answer"], "choice" if ex.options else "free", use_rationale)
    msgs = dict(prompt.messages)
    return msgs["system"], msgs["user"], response


def read_like_llamafactory(out: Path) -> list[tuple[str, str, str]]:
    """(system, user, response) per row, read the way LLaMA-Factory's converters read dataset_info.json."""
    info = json.loads((out / "dataset_info.json").read_text())
    assert len(info) == 1
    (attr,) = info.values()
    ds = load_dataset("json", data_files=str(out / attr["file_name"]), split="train")
    cols = attr["columns"]
    rows = []
    if attr.get("formatting", "alpaca") == "alpaca":
        for r in ds:
            user = r[cols["prompt"]] + ("\n" + r[cols["query"]] if r[cols["query"]] else "")
            rows.append((r[cols["system"]], user, r[cols["response"]]))
        return rows
    tags = attr["tags"]
    for r in ds:
        msgs = r[cols["messages"]]
        system = ""
        if msgs[0][tags["role_tag"]] == tags["system_tag"]:
            system, msgs = msgs[0][tags["content_tag"]], msgs[1:]
        roles = [m[tags["role_tag"]] for m in msgs]
        assert roles == [tags["user_tag"], tags["assistant_tag"]]
        rows.append((system, msgs[0][tags["content_tag"]], msgs[1][tags["content_tag"]]))
    return rows


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages"])
def test_llamafactory_reads_the_export(tmp_path, fmt):
    run = choice_run(tmp_path)
    out = export_data(run, fmt)
    assert out == run / "export" / fmt
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "dataset_info.json", "export.json", "train.jsonl"]
    assert read_like_llamafactory(out) == [expected(r) for r in CHOICE_ROWS]
    meta = json.loads((out / "export.json").read_text())
    assert (meta["rows"], meta["labeled"], meta["pseudo"]) == (5, 3, 2)
    assert not (run / "dataset_info.json").exists() and not list(run.rglob(".*.tmp"))


def test_fields_trl_and_axolotl_read(tmp_path):
    run = choice_run(tmp_path)
    want = [expected(r) for r in CHOICE_ROWS]
    msgs = load_dataset("json", data_files=str(export_data(run, "messages") / "train.jsonl"), split="train")
    assert msgs.column_names == ["messages"]
    assert [[(m["role"], m["content"]) for m in r["messages"]] for r in msgs] == [
        [("system", s), ("user", u), ("assistant", a)] for s, u, a in want
    ]
    pc = load_dataset("json", data_files=str(export_data(run, "prompt-completion") / "train.jsonl"), split="train")
    assert pc.column_names == ["prompt", "completion"]
    for r, (s, u, a) in zip(pc, want, strict=True):
        assert r["prompt"] == [{"role": "system", "content": s}, {"role": "user", "content": u}]
        assert r["completion"] == [{"role": "assistant", "content": a}]
    alpaca = load_dataset("json", data_files=str(export_data(run, "alpaca") / "train.jsonl"), split="train")
    assert {"instruction", "input", "output"} <= set(alpaca.column_names)  # axolotl type: alpaca
    sg = load_dataset("json", data_files=str(export_data(run, "sharegpt") / "train.jsonl"), split="train")
    assert [m["from"] for m in sg[0]["conversations"]] == ["system", "human", "gpt"]


def test_free_form_export_keeps_the_rationales_evolve_trained_on(tmp_path):
    data = tmp_path / "data"
    write_jsonl(
        data / "labeled.jsonl", [{"id": "l1", "question": "2+3?", "answer": "5", "rationale": "2 plus 3 is 5."}]
    )
    write_jsonl(data / "unlabeled.jsonl", [{"id": "u1", "question": "4+4?"}])
    task = {"labeled": str(data / "labeled.jsonl"), "unlabeled": str(data / "unlabeled.jsonl"), "answer_kind": "free"}
    rows = [  # as run_evolve writes them: the rationale of each row, the justification's for a pseudo-label
        {
            "id": "l1",
            "question": "2+3?",
            "options": None,
            "answer": "5",
            "rationale": "2 plus 3 is 5.",
            "source": "labeled",
        },
        {
            "id": "u1",
            "question": "4+4?",
            "options": None,
            "answer": "8",
            "rationale": "Four and four make eight.",
            "source": "pseudo",
        },
    ]
    pseudo = [{"id": "u1", "selected": True, "answer": "8", "justify_text": "Four and four make eight.\nAnswer: 8"}]
    run = make_run(tmp_path, {"task": task}, rows, pseudo)
    got = read_like_llamafactory(export_data(run, "alpaca"))
    assert [a for _, _, a in got] == ["2 plus 3 is 5.\nAnswer: 5", "Four and four make eight.\nAnswer: 8"]


def test_export_errors_are_one_line(tmp_path, capsys):
    run = choice_run(tmp_path)
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("not an export")
    assert main(["export", str(run), "--format", "messages", "--out", str(keep)]) == 2
    assert "not an earlier semievol export" in capsys.readouterr().err
    assert (keep / "notes.txt").exists()
    assert main(["export", str(run), "--format", "messages", "--out", str(tmp_path / "new")]) == 0
    assert main(["export", str(run), "--format", "alpaca", "--out", str(tmp_path / "new")]) == 0  # replaces its own
    assert json.loads((tmp_path / "new" / "export.json").read_text())["format"] == "alpaca"
    (run / "evolve" / "manifest.json").unlink()
    assert main(["export", str(run), "--format", "alpaca"]) == 2
    assert "evolve stage has not finished" in capsys.readouterr().err
    assert set(FORMATS) == {"alpaca", "sharegpt", "messages", "prompt-completion"}


# ---------------------------------------------------------------- chat template parity and merge (tokenizer)


@pytest.fixture(scope="module")
def tokenizer():
    from semievol.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("embedded"))


def test_chat_template_renders_what_semievol_trains_on(tmp_path, tokenizer):
    from semievol.prompts import render

    run = choice_run(tmp_path)
    msgs = load_dataset("json", data_files=str(export_data(run, "messages") / "train.jsonl"), split="train")
    pc = load_dataset("json", data_files=str(export_data(run, "prompt-completion") / "train.jsonl"), split="train")
    for row, m, p in zip(CHOICE_ROWS, msgs, pc, strict=True):
        ex = Example(id=row["id"], question=row["question"], options=row["options"], answer=row["answer"])
        prompt, response = training_pair(ex, row["answer"], "choice", True)
        trained = render(tokenizer, prompt) + response + "<|im_end|>"
        assert tokenizer.apply_chat_template(m["messages"], tokenize=False).startswith(trained)
        assert tokenizer.apply_chat_template(p["prompt"], tokenize=False, add_generation_prompt=True) == render(
            tokenizer, prompt
        )


def test_merged_model_matches_the_adapter(tmp_path, tokenizer, capsys):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base_dir, run = tmp_path / "base", tmp_path / "run"
    cfg = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position_embeddings=128,
    )
    LlamaForCausalLM(cfg).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), lora).save_pretrained(run / "evolve")
    tokenizer.save_pretrained(run / "evolve")
    make_run(tmp_path, {"model": {"model": str(base_dir)}, "task": {"task": "fpb"}}, CHOICE_ROWS)

    assert main(["merge", str(run)]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == run / "merged_evolved"
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    ids = torch.tensor([tokenizer("Profit rose this quarter.")["input_ids"]])
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out)("Profit rose this quarter.")["input_ids"] == ids[0].tolist()
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(run / "evolve"))
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        got, want, plain = (m.eval()(ids).logits for m in (merged, peft, base))
    assert not any("lora" in k for k in merged.state_dict())
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert (got - plain).abs().max() > 1e-3  # the adapter changed something

    assert main(["merge", str(run), "--adapter", "warm"]) == 2
    assert "no finished sft adapter" in capsys.readouterr().err


def test_export_never_deletes_folders_it_did_not_make(tmp_path, monkeypatch):
    """`export --out data` once removed a user's `.data.tmp/` and `.data.old/` beside it (its fixed temporary names)."""
    run = choice_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in (".data.tmp", ".data.old"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text("the user's")
    assert main(["export", str(run), "--format", "messages", "--out", "data"]) == 0
    assert main(["export", str(run), "--format", "alpaca", "--out", "data"]) == 0  # replaces its own export
    assert json.loads((tmp_path / "data" / "export.json").read_text())["format"] == "alpaca"
    for name in (".data.tmp", ".data.old"):
        assert (tmp_path / name / "mine.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.old", ".data.tmp", "data", "run"]  # nothing left over
