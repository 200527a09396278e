"""LoRA DPO on TRL's DPOTrainer.

The reference is never a second copy of the base: with a fresh adapter it is the base with
the adapter disabled; on top of an SFT adapter TRL adds a frozen copy of that adapter
("ref"), so DPO pulls away from the SFT model, not from the raw base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer

from posttrain.train.args import DPOArgs, require_validation
from posttrain.train.loop import GuardMixin, TrainResult, run_trainer, training_callbacks


class GuardedDPOTrainer(GuardMixin, DPOTrainer):
    """DPOTrainer that refuses NaN/inf updates."""


def dpo_train(
    model: Any,
    tokenizer: Any,
    train_rows: list[dict],
    val_rows: list[dict] | None,
    out_dir: Path,
    hp: DPOArgs,
    *,
    metrics_path: Path | None = None,
    resume: bool = False,
    checkpoints: bool = True,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train the PEFT `model`'s active adapter with DPO in place; never raises on divergence.

    `callbacks` are extra `TrainerCallback`s (benchmarks hang their clocks here). The final
    eval's metrics (rewards/accuracies, ...) are in `result.extra["eval"]`.
    """
    require_validation(hp.eval_steps, len(val_rows or []))
    out_dir.mkdir(parents=True, exist_ok=True)
    log, ours = training_callbacks(metrics_path, checkpoints, hp)
    trainer = GuardedDPOTrainer(
        model=model,
        args=TRLDPOConfig(
            **hp.hf_kwargs_for(out_dir, model, checkpoints=checkpoints),
            max_length=hp.max_length,
            beta=hp.beta,
            loss_type=hp.loss_type.split("+"),  # "sigmoid+sft" sums both losses: RPO
            padding_free=hp.packing,
        ),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        processing_class=tokenizer,
        callbacks=[*ours, *(callbacks or [])],
    )
    result = run_trainer(trainer, log, resume=resume)
    if hasattr(model, "delete_adapter") and "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")  # TRL's frozen reference copy must not leak into the saved adapter
    return result
