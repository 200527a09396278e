"""Pieces every TRL-backed trainer here shares: the NaN guard, checkpoint markers,
per-step metrics, resume-point selection and the HF arguments we always set."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from posttrain.distributed import (
    is_distributed,
    is_main_process,
    split_global_batch,
    wait_for_everyone,
    world_size,
)
from posttrain.errors import DivergedError

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
PERPLEXITY_CAP = 50.0  # exp(50) ~ 5e21: past that a perplexity says nothing more, and exp() would overflow


def safe_perplexity(loss: float) -> float:
    """exp(loss), capped at exp(50) so a diverging eval never overflows to inf."""
    if loss is None or not math.isfinite(loss):
        return math.exp(PERPLEXITY_CAP)
    return math.exp(min(loss, PERPLEXITY_CAP))


@dataclass
class TrainResult:
    """What a training call reports back; `status` is completed or diverged."""

    status: str
    steps: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: float | None = None
    perplexity: float | None = None
    eval_loss_before: float | None = None
    runtime_s: float = 0.0
    eval_s: float = 0.0
    train_tokens: int = 0
    adapter_dir: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class GuardMixin:
    """Stops training before the optimizer applies an update from a NaN/inf loss or gradient.

    HF's `logging_nan_inf_filter` only hides such steps from the logs; the update still
    happens. Raising here, after backward and before `optimizer.step`, keeps the weights clean.
    """

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        step = self.state.global_step + 1  # type: ignore[attr-defined]
        if not torch.isfinite(loss).all():
            raise DivergedError(
                f"training diverged at step {step}: loss is {loss.item()} (try a lower learning rate)"
            )
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.float().abs().sum() for g in grads])).all():
            raise DivergedError(
                f"training diverged at step {step}: non-finite gradient (try a lower learning rate)"
            )
        return loss


class StepLog(TrainerCallback):
    """Appends every HF log row (with its step) to metrics.jsonl and keeps train losses in memory.

    HF calls callbacks on every rank with the same (already gathered) values; only rank 0
    writes the file, every rank keeps the rows.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.losses: list[tuple[int, float]] = []
        self.rows: list[dict[str, Any]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if not logs:
            return
        row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
        self.rows.append(row)
        if "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))
        if self.path is not None and state.is_world_process_zero:
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint complete only after HF has written all of it (HF itself does not).

    Under a launch every rank writes its own RNG state into the checkpoint, so rank 0 marks
    it only after a barrier.
    """

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        wait_for_everyone()
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and is_main_process():
            (ckpt / COMPLETE_MARKER).write_text(json.dumps({"step": state.global_step}) + "\n")


def latest_complete_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest checkpoint with a completion marker; newer half-written ones are deleted.

    A kill during a save leaves a `checkpoint-N` without the marker; HF would happily try to
    load it, so it goes and the previous complete one is used.
    """
    if not ckpt_root.is_dir():
        return None
    found = sorted(
        (p for p in ckpt_root.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    best = None
    for ckpt in found:
        if (ckpt / COMPLETE_MARKER).exists():
            best = ckpt
    for ckpt in found:
        if not (ckpt / COMPLETE_MARKER).exists():
            shutil.rmtree(ckpt, ignore_errors=True)
    return best


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, so each step appears once (rank 0 only)."""
    if not path.exists() or not is_main_process():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line and json.loads(line).get("step", 0) <= last_step
    ]
    path.write_text("".join(line + "\n" for line in keep))


def undo_eval_preparation(trainer: Any) -> None:
    """Let `trainer.train()` wrap the model for DDP/FSDP after an `evaluate()` that came first.

    accelerate (1.15) flags a model it prepared for evaluation only as prepared, and prepare()
    returns flagged models as they are, so under a launch the train() after an evaluate()
    would train unsynchronised replicas: every rank its own gradients, no all-reduce. The
    1-vs-2-process test in tests/test_launch.py fails without this. A no-op in one process.
    """
    model = trainer.model
    if is_distributed() and getattr(model, "_is_accelerate_prepared", False):
        if model in trainer.accelerator._models:
            trainer.accelerator._models.remove(model)
        del model._is_accelerate_prepared


def hf_args(
    out_dir: Path,
    *,
    learning_rate: float,
    batch_size: int,
    gradient_accumulation_steps: int,
    epochs: float,
    max_steps: int,
    warmup_ratio: float,
    weight_decay: float,
    scheduler: str,
    max_grad_norm: float,
    seed: int,
    save_steps: int,
    save_total_limit: int,
    logging_steps: int,
    report_to: str,
    gradient_checkpointing: bool,
    bf16: bool,
    use_cpu: bool,
) -> dict[str, Any]:
    """TrainingArguments we always set, shared by SFT, DPO and RL configs.

    `batch_size` x `gradient_accumulation_steps` is the global batch: under a launch of N
    processes it is split over them (see posttrain.distributed.split_global_batch).
    """
    per_device, accumulation = split_global_batch(batch_size, gradient_accumulation_steps, world_size())
    return {
        "output_dir": str(out_dir),
        "learning_rate": learning_rate,
        "per_device_train_batch_size": per_device,
        "per_device_eval_batch_size": max(batch_size, 4),
        "gradient_accumulation_steps": accumulation,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "warmup_steps": warmup_ratio,  # transformers 5 reads a float < 1 as a ratio
        "weight_decay": weight_decay,
        "lr_scheduler_type": scheduler,
        "max_grad_norm": max_grad_norm,
        "seed": seed,
        "data_seed": seed,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": save_total_limit,
        "logging_steps": logging_steps,
        "logging_first_step": True,
        "eval_strategy": "no",
        "report_to": [] if report_to in ("none", "") else [report_to],
        "gradient_checkpointing": gradient_checkpointing,
        "bf16": bf16,
        "use_cpu": use_cpu,
        "dataloader_num_workers": 0,
        # Under DDP every trainable (LoRA) tensor takes part in each forward; searching the graph
        # for unused ones costs a traversal per step and a warning per rank.
        "ddp_find_unused_parameters": False,
        "disable_tqdm": False,
        "save_only_model": False,
    }


def hf_args_for(out_dir: Path, hp: Any, model: Any, checkpoints: bool = True) -> dict[str, Any]:
    """`hf_args` filled from an hparams dataclass (SFTHParams, DPOHParams, ...) and the model's
    device and dtype; without `checkpoints` nothing is saved during training."""
    param = next(model.parameters())
    args = hf_args(
        out_dir,
        learning_rate=hp.learning_rate,
        batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        epochs=hp.epochs,
        max_steps=hp.max_steps,
        warmup_ratio=hp.warmup_ratio,
        weight_decay=getattr(hp, "weight_decay", 0.0),
        scheduler=hp.scheduler,
        max_grad_norm=hp.max_grad_norm,
        seed=hp.seed,
        save_steps=hp.save_steps,
        save_total_limit=hp.save_total_limit,
        logging_steps=hp.logging_steps,
        report_to=hp.report_to,
        gradient_checkpointing=getattr(hp, "gradient_checkpointing", False),
        bf16=param.dtype == torch.bfloat16,
        use_cpu=param.device.type == "cpu",
    )
    if not checkpoints:
        args["save_strategy"] = "no"
    return args
