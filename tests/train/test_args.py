"""posttrain/train/args.py: one typed arguments object per trainer, each field documented, and a
config section's values reach the TRL config unchanged (section -> args -> TRL)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from posttrain.config import AlignConfig, DPOConfig, SFTConfig
from posttrain.train.args import DPOArgs, RewardModelArgs, RLArgs, SFTArgs, TrainArgs

ALL = (TrainArgs, SFTArgs, DPOArgs, RLArgs, RewardModelArgs)


@pytest.mark.parametrize("cls", ALL)
def test_every_field_has_a_default_and_help(cls):
    for f in fields(cls):
        assert f.default is not MISSING or f.default_factory is not MISSING, f.name
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_each_trainer_keeps_its_own_defaults():
    assert (SFTArgs().learning_rate, SFTArgs().packing, SFTArgs().max_length) == (2e-4, True, 512)
    assert (DPOArgs().learning_rate, DPOArgs().beta, DPOArgs().loss_type) == (5e-5, 0.1, "sigmoid")
    rl = RLArgs()
    assert (rl.learning_rate, rl.batch_size, rl.warmup_ratio, rl.save_steps) == (2e-5, 2, 0.0, 25)
    assert rl.algo == "grpo"
    rm = RewardModelArgs()
    assert (rm.learning_rate, rm.lora_r, rm.lora_alpha, rm.center_coefficient) == (3e-4, 16, 32, 0.01)
    assert RLArgs().extra is not RLArgs().extra  # a fresh dict each


@pytest.mark.parametrize(
    ("section", "cls"),
    [
        (lambda: SFTConfig().train, SFTArgs),
        (lambda: DPOConfig().train, DPOArgs),
        (lambda: AlignConfig().sft, SFTArgs),
        (lambda: AlignConfig().dpo.train, DPOArgs),
    ],
)
def test_every_key_of_a_training_section_reaches_the_args(section, cls):
    settings = section()
    names = {f.name for f in fields(cls)}
    dropped = set(type(settings).model_fields) - names
    assert not dropped, f"{type(settings).__name__} keys {dropped} would never reach the trainer"
    args = cls.from_settings(settings, max_length=77)
    assert args.max_length == 77
    for key, value in settings.model_dump().items():
        assert getattr(args, key) == value, key


def test_from_settings_ignores_other_keys_and_rejects_unknown_overrides():
    args = DPOArgs.from_settings({"learning_rate": 1e-3, "packing": True}, beta=0.3)
    assert (args.learning_rate, args.beta) == (1e-3, 0.3)
    with pytest.raises(TypeError):
        DPOArgs.from_settings({}, no_such_key=1)


def test_hf_kwargs_carry_every_value_and_switch_saving_off():
    args = TrainArgs(
        learning_rate=1e-3,
        batch_size=8,
        gradient_accumulation_steps=2,
        warmup_ratio=0.1,
        scheduler="cosine_with_min_lr",
        scheduler_kwargs={"min_lr_rate": 0.1},
        seed=7,
        report_to="tensorboard",
    )
    kw = args.hf_kwargs(Path("out"), bf16=True, use_cpu=False)
    assert kw["learning_rate"] == 1e-3 and kw["warmup_steps"] == 0.1 and kw["bf16"] is True
    assert (kw["per_device_train_batch_size"], kw["gradient_accumulation_steps"]) == (8, 2)
    assert kw["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1} and kw["data_seed"] == 7
    assert kw["report_to"] == ["tensorboard"] and kw["save_strategy"] == "steps"
    assert "lr_scheduler_kwargs" not in TrainArgs().hf_kwargs(Path("out"))
    assert TrainArgs().hf_kwargs(Path("out"), checkpoints=False)["save_strategy"] == "no"


def test_a_section_value_reaches_the_trl_configs(tmp_path):
    """Two hops: section -> args -> TRL config, for SFT, DPO, RL and the reward model."""
    from trl import DPOConfig as TRLDPOConfig
    from trl import RewardConfig

    import posttrain.train.rl as rl
    import posttrain.train.sft as sft

    model = SimpleNamespace(
        parameters=lambda: iter([torch.zeros(1)]), config=SimpleNamespace(_attn_implementation="sdpa")
    )
    cfg = SFTConfig.model_validate({"train": {"learning_rate": 3e-3, "packing": False, "max_steps": 9}})
    trl_sft = sft._trl_config(tmp_path, SFTArgs.from_settings(cfg.train, max_length=99), model, True)
    assert (trl_sft.learning_rate, trl_sft.packing, trl_sft.max_steps) == (3e-3, False, 9)
    assert trl_sft.max_length == 99

    dpo = DPOArgs.from_settings(DPOConfig().train, beta=0.25)
    trl_dpo = TRLDPOConfig(**dpo.hf_kwargs_for(tmp_path, model), beta=dpo.beta)
    assert (trl_dpo.learning_rate, trl_dpo.beta) == (5e-5, 0.25)

    trl_rl = rl._rl_config(tmp_path, RLArgs(temperature=0.7, num_generations=2), model, 0.05, False)
    assert (trl_rl.temperature, trl_rl.num_generations, trl_rl.beta) == (0.7, 2, 0.05)
    assert trl_rl.learning_rate == 2e-5
    assert trl_rl.per_device_train_batch_size == 4  # 2 prompts x 2 completions

    rm = RewardModelArgs(scheduler_kwargs={"min_lr_rate": 0.2}, scheduler="cosine_with_min_lr")
    trl_rm = RewardConfig(**rm.hf_kwargs_for(tmp_path, model))
    assert trl_rm.lr_scheduler_kwargs == {"min_lr_rate": 0.2} and trl_rm.learning_rate == 3e-4
