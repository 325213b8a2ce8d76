"""Model resolution, dtype choice and the one-line error for an unreachable Hub id."""

from __future__ import annotations

import pytest
import torch

from semievol.cli import main
from semievol.models import ModelError, ModelSource, embedded_gguf, load_tokenizer, pick_dtype, resolve_model


def test_embedded_resolves_to_the_gguf_inside_the_package():
    src = resolve_model("embedded")
    assert src.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert embedded_gguf().is_file()


def test_local_folder_and_gguf_file(tmp_path):
    assert resolve_model(str(tmp_path)) == ModelSource(str(tmp_path.resolve()))
    with pytest.raises(ModelError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    assert resolve_model("org/name") == ModelSource("org/name")


def test_explicit_dtypes():
    assert pick_dtype("fp32") is torch.float32 and pick_dtype("bf16") is torch.bfloat16
    assert pick_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)


def test_hub_id_without_network_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelError, match="not reachable"):
        load_tokenizer(ModelSource("some-org/not-cached-model"))
    task = tmp_path / "t"
    task.mkdir()
    (task / "l.csv").write_text('question,options,answer\nq1,"[""a"", ""b""]",A\n')
    rc = main(["eval", "--model", "some-org/not-cached-model", "--labeled", str(task / "l.csv"), "--unlabeled",
               str(task / "l.csv"), "--test", str(task / "l.csv"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--model DIR" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "run").exists()
