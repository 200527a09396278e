"""Seed 000's train_and_eval on the resident tiny model."""

from __future__ import annotations

import math

import pytest

from posttrain.models import ResidentModel
from posttrain.tasks.instructions import load_sft_dataset, sample_path
from posttrain.train.trials import make_train_and_eval


def test_trials_share_the_base_and_report_guarded_perplexity(tiny_spec, tmp_path):
    train, val = load_sft_dataset(sample_path("alpaca"), max_train=32, max_val=8)
    resident = ResidentModel(tiny_spec)
    base_weight = resident.base.model.layers[0].mlp.down_proj.weight
    run = make_train_and_eval(resident, train, val, tmp_path, max_length=128, max_steps=3, keep_adapters=True)
    hp = dict(lr=3e-3, batch_size=4, epochs=1, warmup_ratio=0.0, lora_r=8, lora_alpha=16, lora_dropout=0.0)
    fast = run({**hp, "trial_id": "fast"})
    slow = run({**hp, "lr": 1e-5, "lora_r": 16, "lora_alpha": 32, "trial_id": "slow"})
    for m in (fast, slow):
        assert m["status"] == "completed" and m["steps"] == 3
        assert m["perplexity"] == pytest.approx(math.exp(m["eval_loss"]))
    assert fast["eval_loss"] < slow["eval_loss"]  # a 300x larger step moves the loss further in 3 steps
    assert (tmp_path / "fast" / "adapter" / "adapter_config.json").exists()
    # The second trial's r=16 adapter replaced the first on the same in-memory base weights.
    assert resident.base.model.layers[0].mlp.down_proj.base_layer.weight is base_weight
    with pytest.raises(ValueError, match="lack lr"):
        run({k: v for k, v in hp.items() if k != "lr"})
