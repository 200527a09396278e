"""LoRA DPO on TRL's DPOTrainer.

The reference is never a second copy of the base: with a fresh adapter it is the base with
the adapter disabled; on top of an SFT adapter TRL adds a frozen copy of that adapter
("ref"), so DPO pulls away from the SFT model, not from the raw base.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer

from posttrain.errors import DivergedError
from posttrain.train.common import (
    CheckpointMarker,
    GuardMixin,
    StepLog,
    TrainResult,
    hf_args_for,
    latest_complete_checkpoint,
    trim_metrics,
)


class GuardedDPOTrainer(GuardMixin, DPOTrainer):
    """DPOTrainer that refuses NaN/inf updates."""


@dataclass
class DPOHParams:
    """Optimisation settings for one DPO call."""

    learning_rate: float = 5e-5
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    seed: int = 42
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    report_to: str = "none"
    max_length: int = 512
    beta: float = 0.1
    loss_type: str = "sigmoid"


def dpo_train(
    model: Any,
    tokenizer: Any,
    train_rows: list[dict],
    val_rows: list[dict] | None,
    out_dir: Path,
    hp: DPOHParams,
    *,
    metrics_path: Path | None = None,
    resume: bool = False,
    checkpoints: bool = True,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train the PEFT `model`'s active adapter with DPO in place; never raises on divergence.

    `callbacks` are extra `TrainerCallback`s (benchmarks hang their clocks here).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    args = hf_args_for(out_dir, hp, model, checkpoints)
    log = StepLog(metrics_path)
    callbacks = [log, *([CheckpointMarker()] if checkpoints else []), *(callbacks or [])]
    trainer = GuardedDPOTrainer(
        model=model,
        args=TRLDPOConfig(**args, max_length=hp.max_length, beta=hp.beta, loss_type=[hp.loss_type]),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    resume_from = latest_complete_checkpoint(out_dir) if resume else None
    if resume_from is not None and metrics_path is not None:
        trim_metrics(metrics_path, int(resume_from.name.split("-")[-1]))
    result = TrainResult(status="completed", steps=0)
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except DivergedError as exc:
        result.status, result.error = "diverged", str(exc)
    result.runtime_s = time.perf_counter() - start
    result.steps = trainer.state.global_step
    result.losses = log.losses
    result.extra["log"] = log.rows
    if result.status == "completed" and val_rows:
        metrics = trainer.evaluate()
        result.eval_loss = float(metrics["eval_loss"])
        result.extra["eval"] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    if hasattr(model, "delete_adapter") and "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")  # TRL's frozen reference copy must not leak into the saved adapter
    return result
