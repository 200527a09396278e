"""posttrain: agentic post-training for language models.

The public API is re-exported here lazily, so `import posttrain` stays fast (no torch import)
until a name is used: `from posttrain import run_sft, SFTConfig, Store`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "posttrain.errors",
    "DataError": "posttrain.errors",
    "PosttrainError": "posttrain.errors",
    "SFTConfig": "posttrain.config",
    "DPOConfig": "posttrain.config",
    "load_config": "posttrain.config",
    "ResidentModel": "posttrain.models",
    "load_model": "posttrain.models",
    "materialize": "posttrain.models",
    "Store": "posttrain.store",
    "run_sft": "posttrain.pipelines.finetune",
    "run_dpo": "posttrain.pipelines.finetune",
    "generate_batch": "posttrain.inference",
    "load_sft_dataset": "posttrain.tasks.instructions",
    "load_preference_dataset": "posttrain.tasks.instructions",
    "make_train_and_eval": "posttrain.train.trials",
    "LocalExecutor": "posttrain.executors",
    "RayExecutor": "posttrain.executors",
    "make_executor": "posttrain.executors",
    "Tool": "posttrain.toolcall",
    "ToolCall": "posttrain.toolcall",
    "ToolRegistry": "posttrain.toolcall",
    "load_tools": "posttrain.toolcall",
    "parse_response": "posttrain.toolcall",
    "format_system_prompt": "posttrain.toolcall",
    "render_tools": "posttrain.toolcall",
    "tool_turn_grammar": "posttrain.toolcall",
    "validate_args": "posttrain.toolcall",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'posttrain' has no attribute {name!r}")
