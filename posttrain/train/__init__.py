"""Training: the typed arguments (args.py), the one trainer loop (loop.py) and the trainers
built on TRL (sft, dpo, rl, reward_model), plus SEAL's inner loop (restem, lean).

Names are re-exported lazily, so importing a light module here (kl, rewards) does not pull
in TRL: `from posttrain.train import SFTArgs, sft_train`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainArgs": "posttrain.train.args",
    "SFTArgs": "posttrain.train.args",
    "DPOArgs": "posttrain.train.args",
    "RLArgs": "posttrain.train.args",
    "RewardModelArgs": "posttrain.train.args",
    "TrainResult": "posttrain.train.loop",
    "run_trainer": "posttrain.train.loop",
    "safe_perplexity": "posttrain.train.loop",
    "latest_complete_checkpoint": "posttrain.train.loop",
    "sft_train": "posttrain.train.sft",
    "build_sft_trainer": "posttrain.train.sft",
    "evaluate_loss": "posttrain.train.sft",
    "dpo_train": "posttrain.train.dpo",
    "rl_train": "posttrain.train.rl",
    "ADLFReward": "posttrain.train.rl",
    "ContrastiveAux": "posttrain.train.contrastive",
    "train_reward_model": "posttrain.train.reward_model",
    "ExternalRewardModel": "posttrain.train.reward_model",
    "make_train_and_eval": "posttrain.train.trials",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'posttrain.train' has no attribute {name!r}")
