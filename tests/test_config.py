"""Config loading: presets, files, overrides and the errors users see."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from posttrain.config import (
    AlignConfig,
    DPOConfig,
    ExecutorSettings,
    QuickstartConfig,
    SEALConfig,
    SFTConfig,
    TuneConfig,
    dump_config,
    load_config,
    parse_override,
    resumed_config,
)
from posttrain.errors import ConfigError


def test_layering_preset_file_flags_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 0.01\n  batch_size: 2\n")
    cfg = load_config(
        SFTConfig, preset="test", path=path, extra={"train": {"batch_size": 3}}, overrides=["lora.r=4"]
    )
    assert cfg.model.name == "tiny-random"  # preset
    assert cfg.train.learning_rate == 0.01  # file over preset
    assert cfg.train.batch_size == 3  # flags over file
    assert cfg.lora.r == 4  # --set last


def test_override_values_are_typed():
    assert parse_override("a.b=1e-4") == {"a": {"b": 1e-4}}
    assert parse_override("x=true") == {"x": True}
    assert parse_override("x=[1, 2]") == {"x": [1, 2]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.learnig_rate=1"], "unknown key 'train.learnig_rate' (did you mean 'train.learning_rate'?)"),
        (["lora.r=0"], "lora.r: Input should be greater than or equal to 1"),
        (["nonsense"], "expected key.sub=value"),
        (["dpo.bta=1"], "did you mean 'dpo.beta'"),
    ],
)
def test_errors_name_the_key(overrides, message):
    cls = DPOConfig if overrides[0].startswith("dpo") else SFTConfig
    with pytest.raises(ConfigError) as err:
        load_config(cls, overrides=overrides)
    assert message in str(err.value)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(SFTConfig, path=bad)
    scalar = tmp_path / "s.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(SFTConfig, path=scalar)
    with pytest.raises(ConfigError, match="not found"):
        load_config(SFTConfig, path=tmp_path / "missing.yaml")


@pytest.mark.parametrize("cls", [TuneConfig, SEALConfig, AlignConfig])
def test_executor_block_is_shared_and_set_from_the_command_line(cls):
    assert cls.model_fields["executor"].annotation is ExecutorSettings
    assert cls().executor == ExecutorSettings()  # local unless asked: today's path
    cfg = load_config(
        cls, overrides=["executor.kind=ray", "executor.ray_address=auto", "executor.num_gpus=0.5"]
    )
    assert (cfg.executor.kind, cfg.executor.ray_address, cfg.executor.num_gpus) == ("ray", "auto", 0.5)
    with pytest.raises(ConfigError, match="executor.kind: Input should be 'local' or 'ray'"):
        load_config(cls, overrides=["executor.kind=dask"])
    with pytest.raises(ConfigError, match="did you mean 'executor.max_retries'"):
        load_config(cls, overrides=["executor.max_retry=3"])


RECIPES = [SFTConfig, DPOConfig, TuneConfig, AlignConfig, QuickstartConfig]
# `log: true` needs low > 0; these ranges start at 0, so their `log` cannot change alone.
# DPO's `train.packing` exists so the key means the same in every recipe, but only false is valid.
# Early stopping compares evaluations, so its patience needs `eval_steps` set beside it.
NO_VALID_SOLO_CHANGE = {
    "search_space.warmup_ratio.log",
    "search_space.lora_dropout.log",
    "train.early_stopping_patience",
    "sft.early_stopping_patience",
    "dpo.train.early_stopping_patience",
    "train.packing@DPOConfig",
    "dpo.train.packing@AlignConfig",
}


def _leaf_defaults(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_leaf_defaults(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _other_value(key: str, default: Any, annotation: Any, siblings: dict[str, Any]) -> Any:
    """A valid value different from the default (ranges and choices stay consistent)."""
    if key.endswith(".default") and isinstance(siblings.get(key.removesuffix("default") + "values"), list):
        return next(v for v in siblings[key.removesuffix("default") + "values"] if v != default)
    choices = [a for a in typing.get_args(annotation) if a != default]
    if typing.get_origin(annotation) is typing.Literal:
        return choices[0]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 2 if default == -1 else default + 1  # max_steps: -1 or >= 1
    if isinstance(default, float):
        return default / 2 if default else 0.01
    if isinstance(default, list):
        return default[:-1]
    if isinstance(default, str):
        # names checked against a list (devices, schedulers, ...) take another valid name
        valid = {"device": "cpu", "attn_implementation": "eager", "report_to": "wandb", "loss_type": "ipo"}
        valid["scheduler"] = "constant" if default != "constant" else "linear"
        return valid.get(key.rsplit(".", 1)[-1], default + "x")
    assert default is None, key
    return 0.5 if float in typing.get_args(annotation) else "x"


def _annotation(cls: type[BaseModel], key: str) -> Any:
    *sections, name = key.split(".")
    for section in sections:
        cls = cls.model_fields[section].annotation
    return cls.model_fields[name].annotation


@pytest.mark.parametrize("cls", RECIPES)
def test_setting_one_key_keeps_every_other_at_its_default(cls):
    """`--set train.max_steps=10` once rebuilt DPO's train section from SFT's defaults (lr 2e-4)."""
    defaults = _leaf_defaults(cls().model_dump(mode="json"))
    for key, default in defaults.items():
        if key in NO_VALID_SOLO_CHANGE or f"{key}@{cls.__name__}" in NO_VALID_SOLO_CHANGE:
            continue
        value = _other_value(key, default, _annotation(cls, key), defaults)
        cfg = load_config(cls, overrides=[f"{key}={json.dumps(value)}"])
        assert _leaf_defaults(cfg.model_dump(mode="json")) == {**defaults, key: value}, key


def test_dpo_keeps_its_own_defaults_under_overrides():
    cfg = load_config(DPOConfig, overrides=["train.max_steps=10"])
    assert (cfg.train.learning_rate, cfg.train.max_steps) == (5e-5, 10)
    assert cfg.train.packing is False  # DPO never packs: true is refused, not silently ignored
    with pytest.raises(ConfigError, match="train.packing: .*cannot pack"):
        load_config(DPOConfig, overrides=["train.packing=true"])
    align = load_config(AlignConfig, overrides=["dpo.train.learning_rate=1e-5"])
    assert (align.dpo.train.learning_rate, align.dpo.train.max_steps) == (1e-5, 40)


def test_resumed_config_prefers_the_runs_own_file(tmp_path):
    cfg = load_config(SFTConfig, overrides=["train.max_steps=3"])
    assert resumed_config(cfg, None) is cfg  # not resuming
    assert resumed_config(cfg, tmp_path) is cfg  # killed before config.yaml was written
    dump_config(load_config(SFTConfig, overrides=["train.max_steps=7"]), tmp_path / "config.yaml")
    assert resumed_config(cfg, tmp_path).train.max_steps == 7
    (tmp_path / "config.yaml").write_text("train:\n  max_step: 7\n")
    with pytest.raises(ConfigError, match=r"config.yaml: unknown key 'train.max_step'"):
        resumed_config(cfg, tmp_path)
