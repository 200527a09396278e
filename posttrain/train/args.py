"""The typed training arguments every trainer here takes, in TRL's style: a dataclass beside
the trainers, every field with a default and help text.

`TrainArgs` holds what SFT, DPO, RL and the reward model share and turns it into the HF
`TrainingArguments` keywords (`hf_kwargs`); each trainer's extras live in a small subclass
that also restates the defaults that trainer wants (DPO learns at 5e-5, RL at 2e-5, ...).
A config section reaches TRL in two hops: `SFTArgs.from_settings(cfg.train)`, then the
trainer builds its TRL config from the args.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self

import torch
from transformers import EarlyStoppingCallback

from posttrain.config.sections import eval_settings_problem
from posttrain.distributed import split_global_batch, world_size
from posttrain.errors import ConfigError


def _arg(default: Any, help: str) -> Any:
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainArgs:
    """Optimisation settings shared by every trainer (one training call's worth)."""

    learning_rate: float = _arg(2e-4, "Peak learning rate.")
    batch_size: int = _arg(
        4,
        "Examples per optimizer micro-step over all processes (RL: prompts); "
        "x gradient_accumulation_steps = the global batch, split over a launch's processes.",
    )
    gradient_accumulation_steps: int = _arg(1, "Micro-batches per optimizer step.")
    epochs: float = _arg(1.0, "Passes over the training data.")
    max_steps: int = _arg(-1, "Stop after this many optimizer steps (-1 = use epochs).")
    warmup_ratio: float = _arg(0.03, "Share of steps spent warming up the learning rate.")
    weight_decay: float = _arg(0.0, "AdamW weight decay.")
    scheduler: str = _arg("cosine", "HF scheduler name: linear, cosine, constant, cosine_with_min_lr, ...")
    scheduler_kwargs: dict[str, Any] | None = _arg(
        None, "Extra keywords of the scheduler (HF lr_scheduler_kwargs), e.g. {'min_lr_rate': 0.1}."
    )
    max_grad_norm: float = _arg(1.0, "Gradient clipping norm.")
    seed: int = _arg(42, "Seed of the data order and of HF's RNGs (also its data_seed).")
    gradient_checkpointing: bool = _arg(False, "Recompute activations to save memory (slower).")
    save_steps: int = _arg(50, "Checkpoint every N optimizer steps.")
    save_total_limit: int = _arg(2, "Checkpoints kept on disk.")
    logging_steps: int = _arg(1, "Log the training loss every N steps.")
    report_to: str = _arg("none", "none, tensorboard, wandb, mlflow or trackio (passed to HF).")
    eval_steps: int = _arg(
        0, "Evaluate on the validation rows every N optimizer steps (0 = only before and after training)."
    )
    early_stopping_patience: int = _arg(
        0,
        "Stop when the validation loss has not improved for this many evaluations in a row, then load "
        "the best checkpoint (0 = off; needs eval_steps, and save_steps a multiple of it).",
    )
    early_stopping_threshold: float = _arg(
        0.0, "How much the validation loss must drop to count as an improvement (early stopping)."
    )

    def __post_init__(self) -> None:
        problem = eval_settings_problem(self.eval_steps, self.early_stopping_patience, self.save_steps)
        if problem:
            raise ConfigError(problem)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> Self:
        """These args from a config section (a pydantic model or a dict): the keys this class
        has are taken, others ignored; `overrides` (which must be fields) win."""
        values = settings if isinstance(settings, dict) else settings.model_dump()
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in values.items() if k in names}, **overrides})

    def hf_kwargs(
        self, out_dir: Path, *, bf16: bool = False, use_cpu: bool = False, checkpoints: bool = True
    ) -> dict[str, Any]:
        """The HF TrainingArguments keywords every TRL config here starts from.

        `batch_size` x `gradient_accumulation_steps` is the global batch: under a launch of N
        processes it is split over them (see posttrain.distributed.split_global_batch).
        Without `checkpoints` nothing is saved during training.
        """
        per_device, accumulation = split_global_batch(
            self.batch_size, self.gradient_accumulation_steps, world_size()
        )
        kwargs = {
            "output_dir": str(out_dir),
            "learning_rate": self.learning_rate,
            "per_device_train_batch_size": per_device,
            "per_device_eval_batch_size": max(self.batch_size, 4),
            "gradient_accumulation_steps": accumulation,
            "num_train_epochs": self.epochs,
            "max_steps": self.max_steps,
            "warmup_steps": self.warmup_ratio,  # transformers 5 reads a float < 1 as a ratio
            "weight_decay": self.weight_decay,
            "lr_scheduler_type": self.scheduler,
            "max_grad_norm": self.max_grad_norm,
            "seed": self.seed,
            "data_seed": self.seed,
            "save_strategy": "steps" if checkpoints else "no",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "logging_steps": self.logging_steps,
            "logging_first_step": True,
            **self._eval_kwargs(checkpoints),
            "report_to": [] if self.report_to in ("none", "") else [self.report_to],
            "gradient_checkpointing": self.gradient_checkpointing,
            "bf16": bf16,
            "use_cpu": use_cpu,
            "dataloader_num_workers": 0,
            # Under DDP every trainable (LoRA) tensor takes part in each forward; searching the graph
            # for unused ones costs a traversal per step and a warning per rank.
            "ddp_find_unused_parameters": False,
            "disable_tqdm": False,
            "save_only_model": False,
        }
        if self.scheduler_kwargs:
            kwargs["lr_scheduler_kwargs"] = dict(self.scheduler_kwargs)
        return kwargs

    def _eval_kwargs(self, checkpoints: bool) -> dict[str, Any]:
        if self.eval_steps <= 0:
            return {"eval_strategy": "no"}
        kwargs: dict[str, Any] = {"eval_strategy": "steps", "eval_steps": self.eval_steps}
        if self.early_stopping_patience > 0:
            # HF tracks the best eval_loss only with metric_for_best_model set; without checkpoints
            # there is no best one to go back to, so the run just stops. A resumed run restores the
            # patience count from its checkpoint (HF would start it at 0 and train longer).
            kwargs.update(
                metric_for_best_model="eval_loss",
                greater_is_better=False,
                load_best_model_at_end=checkpoints,
                restore_callback_states_from_checkpoint=True,
            )
        return kwargs

    def callbacks(self) -> list[Any]:
        """The TrainerCallbacks these settings ask for: early stopping on the validation loss."""
        if self.early_stopping_patience <= 0:
            return []
        return [EarlyStoppingCallback(self.early_stopping_patience, self.early_stopping_threshold)]

    def hf_kwargs_for(self, out_dir: Path, model: Any, *, checkpoints: bool = True) -> dict[str, Any]:
        """`hf_kwargs` with bf16 and the CPU switch read off the model's parameters."""
        param = next(model.parameters())
        return self.hf_kwargs(
            out_dir,
            bf16=param.dtype == torch.bfloat16,
            use_cpu=param.device.type == "cpu",
            checkpoints=checkpoints,
        )


def require_validation(eval_steps: int, val_rows: int, section: str | None = None) -> None:
    """Refuse evaluation during training (and so early stopping) without validation rows; called
    by the pipelines before a model loads (naming the config `section`), and by the trainers."""
    if eval_steps > 0 and val_rows == 0:
        key = f"{section}.eval_steps" if section else "eval_steps"
        raise ConfigError(
            f"{key}={eval_steps} evaluates on validation rows, and the data has none: "
            "give data.val_path, or a data file of two or more rows"
        )


@dataclass
class SFTArgs(TrainArgs):
    """Arguments of one SFT call (`posttrain.train.sft.sft_train`)."""

    max_length: int = _arg(512, "Tokens per example (or per packed row); longer ones are truncated.")
    packing: bool = _arg(
        True, "Pack examples into rows without cross-attention (padding-free); fastest on CPU and GPU."
    )


@dataclass
class DPOArgs(TrainArgs):
    """Arguments of one DPO call (`posttrain.train.dpo.dpo_train`)."""

    learning_rate: float = _arg(5e-5, "Peak learning rate.")
    max_length: int = _arg(512, "Tokens per prompt + answer; longer ones are truncated.")
    beta: float = _arg(0.1, "DPO temperature: how far the policy may move from the reference.")
    loss_type: str = _arg(
        "sigmoid",
        "TRL DPO loss: sigmoid, ipo, hinge, robust, ...; 'a+b' sums losses ('sigmoid+sft' is RPO: "
        "DPO plus NLL on the chosen answer).",
    )
    packing: bool = _arg(
        False, "TRL's padding_free for DPO pairs; TRL 1.16 disabled it, so configs refuse true for now."
    )


@dataclass
class RLArgs(TrainArgs):
    """Arguments of one GRPO/RLOO call (`posttrain.train.rl.rl_train`); `batch_size` counts PROMPTS."""

    learning_rate: float = _arg(2e-5, "Peak learning rate.")
    batch_size: int = _arg(
        2, "Prompts per micro-step over all processes; each is sampled num_generations times."
    )
    warmup_ratio: float = _arg(0.0, "Share of steps spent warming up the learning rate.")
    save_steps: int = _arg(25, "Checkpoint every N optimizer steps.")
    algo: str = _arg("grpo", "grpo (group mean/std baseline) or rloo (leave-one-out baseline).")
    num_generations: int = _arg(4, "Completions sampled per prompt (the group).")
    max_completion_length: int = _arg(48, "Tokens per sampled completion.")
    temperature: float = _arg(1.0, "Sampling temperature of the rollouts.")
    shuffle: bool = _arg(True, "Shuffle the prompts; False visits them in the given order (curriculum).")
    extra: dict[str, Any] = _arg({}, "Further GRPOConfig/RLOOConfig keywords, passed as they are.")


@dataclass
class RewardModelArgs(TrainArgs):
    """Arguments of one reward-model call (`posttrain.train.reward_model.train_reward_model`)."""

    learning_rate: float = _arg(3e-4, "Peak learning rate.")
    max_length: int = _arg(512, "Tokens per prompt + answer; longer ones are cut from the left.")
    lora_r: int = _arg(16, "Rank of the LoRA on every linear layer.")
    lora_alpha: int = _arg(32, "LoRA alpha (scale = alpha / r).")
    center_coefficient: float = _arg(0.01, "Weight of TRL's penalty pulling the mean reward to 0 (0 = off).")
