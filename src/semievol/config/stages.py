"""The stage sections of a config (training, propagation, selection, evolution, evaluation, Ray) and the
whole run's config."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Literal

from .fields import ConfigError, _check, added_later, runtime
from .sections import ModelConfig, TaskConfig


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
    cv_epochs: list[float] = added_later(factory=list)
    """The warm model's epochs chosen by cross-validation on the labeled rows among these (e.g. [8, 24, 48]):
    each trained on all folds but one and scored on the held-out fold; the best mean accuracy wins (ties: the
    first listed), then trains on every labeled row. Empty: 'epochs'. The choice is in sft/cv.json."""
    cv_folds: int = added_later(2)
    """Folds for cv_epochs (stratified by answer, seeded)."""
    members: int = added_later(1)
    """Warm models trained on the labeled rows, each with its own training seed (the run's seed + 1000 j for
    member j; member 0 is the warm model): the others sit in sft/members/ and answer, with the warm model, in the
    propagate configurations named 'members' (the mean of their distributions). At 64 labeled rows one
    training seed is a wide draw (docs/results/few_labels.md); their mean is a steadier teacher. Costs
    members - 1 more trainings."""
    batch_size: int = 8
    """Effective batch size (micro_batch_size x gradient accumulation)."""
    micro_batch_size: int = 8
    """Examples per forward pass."""
    micro_batch_tokens: int = runtime(1024)
    """Most padded tokens per forward pass: a longer micro-batch is split into smaller ones with the same gradient
    (with lora_dropout, other dropout masks), so long rows fit in a CPU's memory (docs/results/train_memory.md);
    on a GPU raise it (16384) or set 0 = no limit."""
    gradient_checkpointing: bool = runtime(False)
    """Recompute each layer's activations in the backward pass instead of keeping them: far less memory for about a
    third more compute."""
    warmup_ratio: float = 0.1
    """Share of steps with linear warm-up before the cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_length: int = 1024
    """Longest training sequence in tokens; longer prompts are cut from the left."""
    use_rationale: bool = True
    """Put the rationale before 'Answer:' in the target where the data has one."""
    bf16: Literal["auto", "on", "off"] = "auto"
    """Mixed precision (bf16 autocast over fp32 master weights): 'auto' = on GPUs with bf16, and on CPUs whose bf16
    matmul a quick probe finds clearly faster than fp32 (avx512_bf16, AMX; docs/results/run_time.md)."""
    shared_prefix: bool = runtime(True)
    """Run the token prefix every training row begins with (the system turn, a repeated instruction) once per
    micro-batch instead of once per row; same loss and gradients up to rounding. Off under gradient checkpointing
    and with several processes."""
    fast_dropout: bool = runtime(True)
    """LoRA dropout from 16-bit random numbers (the same keep rate and scale as torch's dropout, about a seventh of
    its time on CPU, where torch's took two fifths of a step); off: torch's own."""
    eager_attention: bool = runtime(True)
    """On a CPU, eager attention instead of SDPA for micro-batches of at most 256 tokens (prefix included): the
    same function, and torch's CPU SDPA backward pass is about twice as slow on short rows; off: the model's own."""
    launcher: Literal["none", "accelerate"] = runtime("none")
    """'accelerate': sft and evolve re-launch semievol under `accelerate launch` (DDP; FSDP or DeepSpeed through
    accelerate_config). Under accelerate launch or torchrun already, training is distributed either way."""
    accelerate_config: str = runtime("")
    """accelerate config file for launcher 'accelerate' (machines, processes, FSDP or DeepSpeed); empty = one machine,
    accelerate's defaults."""
    num_processes: int = runtime(0)
    """Processes for launcher 'accelerate'; 0 = the accelerate config's number (one per GPU). batch_size /
    micro_batch_size must be a multiple of it."""
    report_to: Literal["none", "tensorboard"] = runtime("none")
    """'tensorboard': loss, learning rate and tokens of every optimizer step written as TensorBoard events under
    RUN_DIR/tensorboard/<stage> (needs the package: pip install 'semievol[tensorboard]')."""

    def __post_init__(self) -> None:
        _check(self.lora_r >= 1, "sft.lora_r", f"must be at least 1, got {self.lora_r}")
        _check(self.lr > 0, "sft.lr", f"must be positive, got {self.lr}")
        _check(self.epochs > 0 or self.max_steps > 0, "sft.epochs", "must be positive (or set max_steps)")
        _check(self.max_steps >= 0, "sft.max_steps", f"must be 0 or more, got {self.max_steps}")
        _check(all(e > 0 for e in self.cv_epochs), "sft.cv_epochs", f"must all be positive, got {self.cv_epochs}")
        _check(self.cv_folds >= 2, "sft.cv_folds", f"must be at least 2, got {self.cv_folds}")
        _check(1 <= self.members <= 16, "sft.members", f"must be in 1..16, got {self.members}")
        _check(
            not self.cv_epochs or self.launcher == "none",
            "sft.cv_epochs",
            "cross-validation runs in one process; set sft.launcher none (or drop cv_epochs)",
        )
        _check(self.micro_batch_size >= 1, "sft.micro_batch_size", "must be at least 1")
        _check(
            self.micro_batch_tokens >= 0, "sft.micro_batch_tokens", f"must be 0 or more, got {self.micro_batch_tokens}"
        )
        _check(
            self.batch_size >= self.micro_batch_size and self.batch_size % self.micro_batch_size == 0,
            "sft.batch_size",
            f"must be a multiple of micro_batch_size ({self.micro_batch_size}), got {self.batch_size}",
        )
        _check(0 <= self.warmup_ratio < 1, "sft.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _check(0 <= self.lora_dropout < 1, "sft.lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        _check(self.max_length >= 16, "sft.max_length", f"must be at least 16, got {self.max_length}")
        _check(self.num_processes >= 0, "sft.num_processes", f"must be 0 or more, got {self.num_processes}")
        _check(
            self.report_to != "tensorboard" or importlib.util.find_spec("tensorboard") is not None,
            "sft.report_to",
            "'tensorboard' needs the tensorboard package: pip install 'semievol[tensorboard]'",
        )


@dataclass
class PropagateConfig:
    """In-context propagation and collaborative pseudo-labelling."""

    k: int = 3
    """Nearest labeled examples retrieved per unlabeled question."""
    configs: list[str] = field(default_factory=lambda: ["warm:0:0", "warm:3:0.7", "base:3:0.7", "warm:1:1.0"])
    """The n answering configurations, each 'MODEL:DEMOS:TEMPERATURE' with MODEL in {base, warm}, optionally with a
    fourth part ':p1' or ':p2', another wording of the prompt (PET-style; multiple choice); MODEL 'members'
    (multiple choice, sft.members of 2 or more): the mean of the warm models' distributions; for classification
    tasks also the embedder's view: 'knn:K:T' (labels of the K nearest labeled rows, similarity-weighted) or
    'probe:0:T' (a logistic regression on the labeled rows' vectors)."""
    index: Literal["auto", "numpy", "faiss"] = "auto"
    """Nearest-neighbour search: exact NumPy, FAISS, or 'auto' (FAISS when installed and the labeled set exceeds
    20,000)."""
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

    model: Literal["base", "warm", "members", "knn", "probe"]
    demos: int
    temperature: float
    phrasing: int = 0
    """Multiple choice, language models: which wording of the question prompt (prompts.PHRASING_SYSTEM)."""

    @property
    def is_view(self) -> bool:
        """Answered by the embedder's view (no language model): ``demos`` is then the neighbour count."""
        return self.model in ("knn", "probe")

    @property
    def name(self) -> str:
        name = f"{self.model}:{self.demos}:{self.temperature:g}"
        return f"{name}:p{self.phrasing}" if self.phrasing else name


N_PHRASINGS = 3  # prompts.PHRASING_SYSTEM's wordings (a config module does not import the prompts)


def parse_answer_config(text: str) -> AnswerConfig:
    parts = str(text).split(":")
    _check(len(parts) in (3, 4), "propagate.configs", f"'{text}' is not MODEL:DEMOS:TEMPERATURE[:pPHRASING]")
    model, demos, temp = parts[:3]
    phrasing = 0
    if len(parts) == 4:
        word = parts[3].removeprefix("p")
        _check(
            word.isdigit() and int(word) < N_PHRASINGS,
            "propagate.configs",
            f"'{text}': the phrasing must be p0..p{N_PHRASINGS - 1}",
        )
        phrasing = int(word)
        _check(
            model in ("base", "warm", "members"),
            "propagate.configs",
            f"'{text}': only base, warm and members take a phrasing",
        )
    _check(
        model in ("base", "warm", "members", "knn", "probe"),
        "propagate.configs",
        f"'{text}': model must be base, warm, members, knn or probe",
    )
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
    return AnswerConfig(model, d, t, phrasing)  # type: ignore[arg-type]


@dataclass
class SelectConfig:
    """Self-justification, confidence and adaptive selection of pseudo-labels."""

    justify: Literal["all", "disagree", "none"] = "all"
    """Which questions the warm model reconciles: every one (paper), only those whose votes disagree (released code),
    or none (majority vote)."""
    confidence: Literal["entropy", "nll"] = "entropy"
    """Score: normalised entropy of the justified option distribution, or the paper's mean NLL of the justified
    response."""
    rule: Literal[
        "percentile", "released", "fixed", "class_percentile", "subject_percentile", "class_quota", "class_rank", "all"
    ] = "percentile"
    """Selection rule: theta-th percentile of all scores (paper); the released code's rule; a fixed threshold; a
    percentile per predicted class or per subject; 'class_quota': theta percent of the rows, shared among the
    predicted classes in proportion to the labeled split's class counts, the most confident of each; 'class_rank'
    (multiple choice): the same quotas filled by the rows with the highest probability of each class, whatever
    their likeliest option, each row at most once and labeled with the class it was taken for (a class no
    row's likeliest option names still gets its share); or keep all."""
    theta: float = 50.0
    """Percentile for the percentile rules (keep score <= tau)."""
    threshold: float = 0.5
    """Score threshold for the 'fixed' rule."""
    released_theta: float = 30.0
    """Percentile among disagreeing questions for the 'released' rule."""
    candidates_only: bool = False
    """Multiple choice: the justified answer is the likeliest option among those some configuration answered (off: any
    option can win)."""
    calibrate: bool = False
    """Multiple choice: batch calibration of the justification, each option's probability divided by its mean over the
    justified rows before the answer and the score are taken; removes a lean to one position (off: the raw
    distribution, as in the paper)."""
    fair_order: bool = False
    """Multiple choice: the justification is scored twice, with the options in their order and reversed, and the two
    distributions averaged (mapped back to the original letters), so a lean to one position cancels; twice the
    justification's cost."""
    vote: Literal["majority", "mean"] = "majority"
    """Rows not justified: the most common vote (paper), or, for multiple choice, the likeliest option of the
    configurations' mean distribution (a PET-style ensemble; calibrate and align then apply to it too)."""
    align: bool = False
    """Multiple choice: distribution alignment (AdaMatch, ReMixMatch): each distribution multiplied by the labeled
    split's class shares and divided by its mean over the rows, so the pseudo-labels follow the labeled split's
    class balance."""

    def __post_init__(self) -> None:
        _check(0 <= self.theta <= 100, "select.theta", f"must be in 0..100, got {self.theta}")
        _check(
            0 <= self.released_theta <= 100, "select.released_theta", f"must be in 0..100, got {self.released_theta}"
        )


@dataclass
class EvolveConfig:
    """Evolution: the final fine-tune on labeled plus selected pseudo-labels."""

    mode: Literal["fresh", "continue", "warm_start", "resume"] = "fresh"
    """'fresh': LoRA from the base model on labeled + selected (paper); 'continue': keep training the warm adapter on
    the selected data (released code); 'warm_start': labeled + selected as in 'fresh', starting from the warm
    adapter at sft.lr; 'resume': one learning-rate schedule over sft's steps and evolve.steps more: the warm model
    is its first part, evolve finishes it on labeled + selected (the warm adapter's optimizer and schedule going
    on, no restart) and the compute-matched control finishes it on the labeled rows alone, so the two differ in
    the data of the last steps only."""
    continue_lr: float = 1e-6
    """Learning rate for mode 'continue'."""
    rounds: int = runtime(1)
    """Propagate-select-evolve rounds; each round's selected data joins the labeled pool of the next."""
    train_epochs: float = 0.0
    """Passes over the evolve data; 0 = sft.epochs."""
    steps: int = added_later(0)
    """If above 0, evolve trains exactly this many optimizer steps instead of train_epochs passes; mode 'resume'
    needs it (the warm model's schedule is planned over its own steps and these)."""
    labeled_repeat: int = 1
    """Each labeled row appears this many times in the evolve data (the pseudo-labelled rows once), so a few hand
    labels are not drowned by many pseudo-labels."""
    targets: Literal["hard", "soft"] = "hard"
    """Multiple choice: train on the pseudo-label's letter (hard), or on the distribution it was read from (soft
    cross-entropy over the option letters); labeled rows stay hard."""
    sharpen: float = 1.0
    """Soft targets: temperature T, the distribution raised to 1/T and renormalised (below 1 sharpens)."""
    weighting: Literal["none", "confidence"] = "none"
    """'confidence': each pseudo-labelled row's loss weighted as in SoftMatch, 1 for a score at or below the mean score
    of the pseudo-labels, exp(-(s - mean)^2 / (2 var)) above it; labeled rows weigh 1."""

    def __post_init__(self) -> None:
        _check(self.rounds >= 1, "evolve.rounds", f"must be at least 1, got {self.rounds}")
        _check(self.continue_lr > 0, "evolve.continue_lr", "must be positive")
        _check(self.train_epochs >= 0, "evolve.train_epochs", f"must be 0 or more, got {self.train_epochs}")
        _check(self.steps >= 0, "evolve.steps", f"must be 0 or more, got {self.steps}")
        _check(
            self.mode != "resume" or self.steps > 0,
            "evolve.steps",
            "mode 'resume' needs evolve.steps above 0 (the steps that finish the warm model's schedule)",
        )
        _check(self.mode != "resume" or self.rounds == 1, "evolve.rounds", "mode 'resume' runs one round")
        _check(
            1 <= self.labeled_repeat <= 100, "evolve.labeled_repeat", f"must be in 1..100, got {self.labeled_repeat}"
        )
        _check(0 < self.sharpen <= 10, "evolve.sharpen", f"must be in (0, 10], got {self.sharpen}")


@dataclass
class EvalConfig:
    """Evaluation on the test split."""

    limit: int = 0
    """Evaluate on the first N test rows after a seeded shuffle (0 = all)."""
    models: list[str] = field(default_factory=lambda: ["base", "warm", "evolved"])
    """Which models the run evaluates: base, warm, evolved, sft_matched (the compute-matched control), and
    members (sft.members' other warm models, member1..: with the warm model, SFT under as many training seeds)."""

    def __post_init__(self) -> None:
        _check(self.limit >= 0, "evaluate.limit", "must be 0 or more")
        for m in self.models:
            _check(
                m in ("base", "warm", "evolved", "sft_matched", "members"), "evaluate.models", f"unknown model '{m}'"
            )


@dataclass
class RayConfig:
    """Engines 'ray' and 'ray-vllm': the Ray cluster that propagate runs on, and its pool of actors."""

    address: str = ""
    """The cluster to join: its head's HOST:PORT (printed by `ray start --head`) or 'auto'; '' = Ray's default
    (RAY_ADDRESS, else a cluster `ray start` began on this machine, else a new one here)."""
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
        _check(
            self.address.strip() == self.address and " " not in self.address,
            "ray.address",
            f"must be HOST:PORT, 'auto' or empty, got {self.address!r}",
        )


@dataclass
class RunConfig:
    """A whole SemiEvol run: model, task and every stage."""

    run_dir: str = "runs/semievol"
    """Directory for every artifact of the run."""
    seed: int = 0
    """Seed for shuffles, LoRA init, vote sampling."""
    recipe: Literal["auto", "paper", "few_labels"] = "auto"
    """Settings under the file's and the flags': 'paper' (the paper's procedure, every default), 'few_labels'
    (five warm models of 384 steps teach a student from the base model on every unlabeled row; at 64 and 128
    labeled rows it was above SFT trained as long where the paper's procedure was not, docs/results/few_labels.md), or
    'auto': 'few_labels' for at most 128 labeled rows, else 'paper'. The run's config.yaml names the one chosen."""
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
        _check(
            self.evolve.mode != "resume" or self.sft.launcher == "none",
            "evolve.mode",
            "'resume' trains in one process; set sft.launcher none",
        )
        _check(
            self.sft.members > 1 or not any(c.split(":")[0] == "members" for c in self.propagate.configs),
            "propagate.configs",
            "a 'members' configuration needs sft.members of 2 or more (the warm models it averages)",
        )
        _check(
            self.sft.members > 1 or "members" not in self.evaluate.models,
            "evaluate.models",
            "'members' needs sft.members of 2 or more (the other warm models it evaluates)",
        )


SECTIONS = ("model", "task", "sft", "propagate", "select", "evolve", "evaluate", "ray")
