"""Config loading: presets, files, overrides and the errors users see."""

from __future__ import annotations

import pytest

from posttrain.config import (
    AlignConfig,
    DPOConfig,
    ExecutorSettings,
    SEALConfig,
    SFTConfig,
    TuneConfig,
    load_config,
    parse_override,
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
