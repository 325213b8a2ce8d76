"""Model resolution, dtype choice and the one-line error for an unreachable Hub id."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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
    rc = main(
        [
            "eval",
            "--model",
            "some-org/not-cached-model",
            "--labeled",
            str(task / "l.csv"),
            "--unlabeled",
            str(task / "l.csv"),
            "--test",
            str(task / "l.csv"),
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--model DIR" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_gguf_is_dequantised_once_into_a_cache_folder(monkeypatch, tmp_path):
    """The first load writes config + fp32 safetensors; later loads read them, with the same weights."""
    from transformers import AutoModelForCausalLM

    import semievol.models as models

    monkeypatch.setenv("SEMIEVOL_CACHE", str(tmp_path / "cache"))
    src = resolve_model("embedded")
    first = models.load_model(src, torch.float32, "cpu")
    folders = list((tmp_path / "cache" / "gguf").iterdir())
    assert len(folders) == 1 and (folders[0] / "model.safetensors").is_file() and "tf" in folders[0].name
    direct = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32)
    want = direct.state_dict()
    for name, t in first.state_dict().items():
        assert torch.equal(t, want[name]), name
    del direct, want

    def no_dequantising(*a, **k):
        raise AssertionError("dequantised again")

    monkeypatch.setattr(models, "_from_pretrained", no_dequantising)
    again = models.load_model(src, torch.bfloat16, "cpu")
    assert again.dtype == torch.bfloat16
    emb = again.get_input_embeddings().weight
    assert torch.equal(emb, first.get_input_embeddings().weight.to(torch.bfloat16))
    assert again.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # still tied

    # the same bytes elsewhere with another mtime (a fresh clone's reinstalled package) use the same folder
    copy = tmp_path / "copy" / src.gguf_file
    copy.parent.mkdir()
    shutil.copyfile(Path(src.path) / src.gguf_file, copy)
    os.utime(copy, (1_000_000_000, 1_000_000_000))
    assert models.dequantised_folder(models.ModelSource(str(copy.parent), src.gguf_file)) == folders[0]
    assert len(list((tmp_path / "cache" / "gguf").iterdir())) == 1

    # a cache that cannot be written: dequantised in memory, with a warning, and nothing half-written
    monkeypatch.undo()
    blocked = tmp_path / "ro"
    blocked.write_text("not a folder")
    monkeypatch.setenv("SEMIEVOL_CACHE", str(blocked))
    assert models.dequantised_folder(src) is None


def test_file_digest_is_read_once_per_path_size_and_mtime(monkeypatch, tmp_path):
    import hashlib

    import semievol.models as models

    monkeypatch.setenv("SEMIEVOL_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"weights" * 1000)
    want = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    calls = []
    real = hashlib.file_digest

    def counting(fh, name):
        calls.append(name)
        return real(fh, name)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    assert models.file_digest(f) == want and len(calls) == 1
    assert models.file_digest(f) == want and len(calls) == 1  # remembered
    f.write_bytes(b"other weights")  # new bytes, new size and mtime: hashed again
    assert models.file_digest(f) == hashlib.sha256(b"other weights").hexdigest()[:16] and len(calls) == 2
    os.utime(f, (1_000_000_000, 1_000_000_000))  # same size, another mtime: hashed again
    models.file_digest(f)
    assert len(calls) == 3
    (tmp_path / "cache" / "gguf_digests.json").write_text("{not json")  # a damaged memo is rebuilt
    assert models.file_digest(f) == hashlib.sha256(b"other weights").hexdigest()[:16] and len(calls) == 4
    assert json.loads((tmp_path / "cache" / "gguf_digests.json").read_text())[str(f.resolve())]["sha256"]
    monkeypatch.setenv("SEMIEVOL_CACHE", str(f))  # a cache that cannot be written: still the digest
    assert models.file_digest(f) == hashlib.sha256(b"other weights").hexdigest()[:16]


def test_the_bf16_verdict_is_kept_per_machine_so_every_process_of_a_run_agrees(tmp_path, monkeypatch):
    """A later process reads the verdict the first one measured, even where its own probe would differ."""
    import json

    from semievol.models import cpu_bf16_is_faster, cpu_supports_bf16

    if not cpu_supports_bf16():
        pytest.skip("no bf16 instructions: the verdict is 'fp32' without a probe")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = cpu_bf16_is_faster.__wrapped__()
    kept = tmp_path / "semievol" / "cpu_bf16.json"
    (key, value), *_ = json.loads(kept.read_text()).items()
    assert value is first
    kept.write_text(json.dumps({key: not first}))  # as if the first process had measured the other verdict
    assert cpu_bf16_is_faster.__wrapped__() is (not first)
    kept.write_text("not json")  # a damaged file is measured again and rewritten
    assert cpu_bf16_is_faster.__wrapped__() is first and json.loads(kept.read_text()) == {key: first}
