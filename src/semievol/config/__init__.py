"""Every setting of semievol, defined once.

The dataclasses in ``sections`` and ``stages`` are the only place a setting lives: the YAML config file is
read into them, the command-line flags are generated from them (``--section.field`` always, plus ``--field``
where the field name is unique), ``--help`` prints their docstrings, and the resolved config saved in a run
directory is written from them. Validation happens in ``__post_init__`` and names the field that is wrong;
``fields`` says how a field declares whether it counts toward a stage's fingerprint.
"""

from .build import build_config, build_section, field_docs, flag_table, load_yaml, merge, to_dict
from .fields import SAME_RESULTS, ConfigError, fingerprint_settings, openai_only, runtime
from .sections import ModelConfig, TaskConfig, other_engines_settings
from .stages import (
    SECTIONS,
    AnswerConfig,
    EvalConfig,
    EvolveConfig,
    PropagateConfig,
    RayConfig,
    RunConfig,
    SelectConfig,
    TrainConfig,
    parse_answer_config,
)

__all__ = [
    "SAME_RESULTS",
    "SECTIONS",
    "AnswerConfig",
    "ConfigError",
    "EvalConfig",
    "EvolveConfig",
    "ModelConfig",
    "PropagateConfig",
    "RayConfig",
    "RunConfig",
    "SelectConfig",
    "TaskConfig",
    "TrainConfig",
    "build_config",
    "build_section",
    "field_docs",
    "fingerprint_settings",
    "flag_table",
    "load_yaml",
    "merge",
    "openai_only",
    "other_engines_settings",
    "parse_answer_config",
    "runtime",
    "to_dict",
]
