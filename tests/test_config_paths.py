"""The same key path means the same thing in every recipe, and setting one key changes only it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from posttrain.config import (
    AlignConfig,
    DPOConfig,
    RLHFConfig,
    SEALConfig,
    SFTConfig,
    TuneConfig,
    load_config,
)

# recipe -> (its LoRA rank key, one of its learning-rate keys); None where it has no such key.
PATHS: dict[type[BaseModel], tuple[str | None, str]] = {
    SFTConfig: ("lora.r", "train.learning_rate"),
    DPOConfig: ("lora.r", "train.learning_rate"),
    TuneConfig: (None, "search_space.lr.default"),  # tune searches LoRA rank and lr per trial
    SEALConfig: ("inner.lora.r", "inner.learning_rate"),
    RLHFConfig: ("lora.r", "rl.learning_rate"),
    AlignConfig: ("lora.r", "dpo.train.learning_rate"),
}


def _get(cfg: Any, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("cls", list(PATHS), ids=lambda c: c.__name__)
def test_model_lora_and_learning_rate_by_the_same_path(cls):
    lora, lr = PATHS[cls]
    sets = ["model.name=tiny-random", f"{lr}=0.000123"]
    if lora:
        sets.append(f"{lora}=7")
    cfg = load_config(cls, overrides=sets)
    assert _get(cfg, "model.name") == "tiny-random"
    assert _get(cfg, lr) == pytest.approx(1.23e-4)
    if lora:
        assert _get(cfg, lora) == 7


def test_seal_and_rlhf_stage_keys_read_alike():
    seal = load_config(SEALConfig, overrides=["restem.learning_rate=0.01", "restem.lora.r=3"])
    assert (seal.restem.learning_rate, seal.restem.lora.r) == (0.01, 3)
    rlhf = load_config(RLHFConfig, overrides=["reward_model.lora.r=5", "sft.learning_rate=0.02"])
    assert (rlhf.reward_model.lora.r, rlhf.sft.learning_rate) == (5, 0.02)


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _other_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, list):
        return value[:1]
    return None  # strings, Literals and None: a value of the right type is found below


CHOICES = {  # str / Literal / None keys: another valid value each
    "model.name": "tiny-random",
    "model.device": "cpu",
    "model.dtype": "float32",
    "model.attn_implementation": "sdpa",
    "run.name": "x",
    "run.output_root": "elsewhere",
    "run.store": "sqlite:///x.db",
    "executor.kind": "ray",
    "executor.ray_address": "auto",
    "executor.num_cpus": 2.0,
    "executor.num_gpus": 1.0,
    # rlhf
    "data.path": "conversations.jsonl",
    "data.token_format": "role_markers",
    "train.scheduler": "linear",
    "train.report_to": "wandb",
    "train.wandb_project": "other",
    "sft.adapter": "adapter",
    "reward_model.path": "rm",
    "rl.algo": "rloo",
    "rl.curriculum": "length",
    # seal
    "domain": "few_shot_learning",
    "data_config": {"max_samples": 3},
    "inner.scheduler": "cosine",
    "restem.keep": "all_positive",
    "restem.max_per_context": 2,
    "restem.contexts_per_iteration": 3,
    "reward.kind": "binary",
}


@pytest.mark.parametrize("cls", [SEALConfig, RLHFConfig], ids=lambda c: c.__name__)
def test_each_key_set_alone_leaves_every_other_key_at_its_default(cls):
    defaults = _leaves(cls().model_dump(mode="json"))
    assert len(defaults) > 30
    for key, value in defaults.items():
        new = CHOICES.get(key, _other_value(value))
        if key == "rl.num_generations" or key.endswith("max_tokens"):
            new = value + 1
        if key.endswith("max_steps") and value == -1:  # -1 or >= 1
            new = 2
        assert new is not None and new != value, key
        cfg = cls.model_validate(_nest(key, new))
        after = _leaves(cfg.model_dump(mode="json"))
        changed = {k for k in defaults if after.get(k) != defaults[k]}
        assert changed <= {key} | {k for k in defaults if k.startswith(key + ".")}, (key, changed)
        assert changed, f"{key} is not read back"


def _nest(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out
