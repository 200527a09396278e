"""The parts every recipe config is built from: model, LoRA, data, training, run, executor.

A recipe that needs other defaults subclasses a section (see `DPOTrainSettings` in
`finetune.py`) and names the subclass as the field's type, never a `default_factory` lambda:
pydantic builds a section from its type's defaults plus the given keys, so with a lambda a
`--set train.max_steps=10` rebuilt the section from the base class's defaults and silently
reset every sibling the lambda had changed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from posttrain.config.constants import (
    ATTENTION,
    DEFAULT_MODEL,
    DPO_LOSSES,
    LORA_TARGETS,
    REPORTERS,
    SCHEDULERS,
)


def _one_of(names: tuple[str, ...] | list[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"expected one of {', '.join(names)}")
        return value

    return AfterValidator(check)


def _steps(value: int) -> int:
    # 0 and negatives other than -1 used to reach HF, which trained 1 or 11 steps instead
    if value != -1 and value < 1:
        raise ValueError("expected -1 (use epochs) or a step count of at least 1")
    return value


def _targets(value: list[str]) -> list[str]:
    # an empty list reached PEFT as "all seven defaults" while config.yaml recorded []
    if not value or any(not isinstance(v, str) or not v.strip() for v in value):
        raise ValueError("expected at least one module name, e.g. [q_proj, v_proj]")
    return value


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError("expected auto, cpu, mps, cuda or cuda:N")
    return value


def _attention(value: str) -> str:
    if value not in ATTENTION and "/" not in value:  # "org/repo" is a hub kernel
        raise ValueError(f"expected one of {', '.join(ATTENTION)} or a hub kernel org/repo")
    return value


def _run_name(value: str | None) -> str | None:
    # the name becomes one folder under output_root; a "/" trained fully, then failed the final rename
    if value is not None and (not value.strip() or value.startswith(".") or re.search(r"[/\\\x00]", value)):
        raise ValueError("a run name is one folder name: not empty, no '/' or '\\', not starting with '.'")
    return value


MaxSteps = Annotated[int, AfterValidator(_steps)]
SchedulerName = Annotated[str, _one_of(SCHEDULERS)]
ReportTo = Annotated[str, _one_of(list(REPORTERS))]


def _dpo_loss(value: str) -> str:
    # "sigmoid+sft" sums TRL losses (RPO: DPO plus NLL on the chosen answer)
    bad = [part for part in value.split("+") if part not in DPO_LOSSES]
    if bad:
        raise ValueError(f"expected one of {', '.join(DPO_LOSSES)}, or several joined by '+' (sigmoid+sft)")
    return value


DPOLoss = Annotated[str, AfterValidator(_dpo_loss)]
TargetModules = Annotated[list[str], AfterValidator(_targets)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(Strict):
    name: str = Field(
        DEFAULT_MODEL, description="Model spec: smollm2-135m, tiny-random, a hub id or a local dir."
    )
    device: Annotated[str, AfterValidator(_device)] = Field("auto", description="auto, cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bf16 on CUDA that supports it, fp32 elsewhere."
    )
    attn_implementation: Annotated[str, AfterValidator(_attention)] = Field(
        "auto", description="auto = flash_attention_2 if installed on CUDA, else sdpa."
    )
    use_kernels: bool = Field(
        False,
        description="Fused hub kernels (transformers/TRL use_kernels; needs `kernels`, CUDA).",
    )


class LoraSettings(Strict):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: TargetModules = Field(
        default_factory=lambda: list(LORA_TARGETS), description="Modules to adapt."
    )


class DataSplitSettings(Strict):
    """Where the rows come from and how they split; recipes whose trials set their own length use this."""

    path: str | None = Field(
        None, description="JSONL/JSON/CSV file or saved HF dataset; None = bundled sample."
    )
    val_path: str | None = Field(
        None,
        description="Validation file (same format); when set, all of `path` trains, val_fraction unused.",
    )
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Share of rows held out for validation.")
    seed: int = Field(0, description="Seed of the train/validation split.")
    max_train: int = Field(10_000, ge=1, description="Cap on training rows (after shuffling).")
    max_val: int = Field(2_000, ge=1, description="Cap on validation rows (after shuffling).")

    def split_args(self) -> dict[str, Any]:
        """The data loaders' split keywords, so SFT, DPO and tune split a file the same way."""
        return {
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "max_train": self.max_train,
            "max_val": self.max_val,
            "val_path": self.val_path,
        }


class DataSettings(DataSplitSettings):
    max_length: int = Field(512, ge=16, description="Tokens per example; longer ones are truncated.")


class OptimSettings(Strict):
    """What every trainer's optimisation reads; trainer-specific keys live in subclasses."""

    learning_rate: float = Field(2e-4, gt=0.0, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, description="Examples per device per step (before packing).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    epochs: float = Field(1.0, gt=0.0, description="Passes over the training data.")
    max_steps: MaxSteps = Field(-1, description="Stop after this many optimizer steps (-1 = use epochs).")
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="Share of steps spent warming up the LR.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    scheduler: SchedulerName = Field("cosine", description="HF scheduler name: linear, cosine, constant, ...")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    seed: int = Field(42, description="Seed of model init, LoRA init and data order.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (slower).")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    logging_steps: int = Field(1, ge=1, description="Log the training loss every N steps.")
    report_to: ReportTo = Field(
        "none", description="none, tensorboard, wandb, mlflow or trackio (passed to HF)."
    )
    eval_steps: int = Field(
        0,
        ge=0,
        description="Evaluate on the validation rows every N optimizer steps (0 = only before and after "
        "training).",
    )
    early_stopping_patience: int = Field(
        0,
        ge=0,
        description="Stop when the validation loss has not improved for this many evaluations in a row, "
        "then load the best checkpoint (0 = off; needs eval_steps, and save_steps a multiple of it).",
    )
    early_stopping_threshold: float = Field(
        0.0, ge=0.0, description="How much the validation loss must drop to count as an improvement."
    )

    @model_validator(mode="after")
    def _early_stopping(self) -> Self:
        problem = eval_settings_problem(self.eval_steps, self.early_stopping_patience, self.save_steps)
        if problem:
            raise ValueError(problem)
        return self


def eval_settings_problem(eval_steps: int, patience: int, save_steps: int) -> str | None:
    """Why these evaluation settings cannot run (None when they can); one message for the config
    and for `TrainArgs` built in code."""
    if patience <= 0:
        return None
    if eval_steps <= 0:
        return (
            f"early_stopping_patience={patience} compares evaluations, and eval_steps is 0 (none): "
            "set eval_steps to a step count too"
        )
    if save_steps % eval_steps:
        # HF goes back to the best checkpoint, so every checkpoint must fall on an evaluation
        near = eval_steps * max(1, save_steps // eval_steps)
        return (
            f"early stopping goes back to the best checkpoint, so save_steps ({save_steps}) must be a "
            f"multiple of eval_steps ({eval_steps}), e.g. save_steps={near}"
        )
    return None


class TrainSettings(OptimSettings):
    """SFT optimisation: the shared keys plus packing (DPO pairs are never packed)."""

    packing: bool = Field(
        True,
        description="Pack examples into rows without cross-attention (padding-free); fastest on CPU and GPU.",
    )


class RunSettings(Strict):
    name: Annotated[str | None, AfterValidator(_run_name)] = Field(
        None, description="Run name; default <pipeline>-<timestamp>."
    )
    output_root: str = Field("runs", min_length=1, description="Parent of run directories.")
    store: str | None = Field(
        None, description="Store URL; default $POSTTRAIN_STORE or sqlite:///runs/posttrain.db."
    )


class ExecutorSettings(Strict):
    """Where independent work (tune proposals, SEAL inner updates, rollout shards) runs."""

    kind: Literal["local", "ray"] = Field(
        "local",
        description="local: one after another in this process, on the resident base; ray: one Ray task "
        "each (needs `pip install posttrain[ray]`).",
    )
    ray_address: str | None = Field(
        None,
        description="ray: None starts a local Ray on this machine; 'auto' joins the running cluster; "
        "'ray://host:10001' connects a client.",
    )
    num_cpus: float | None = Field(None, gt=0, description="ray: CPUs per task (None = 1).")
    num_gpus: float | None = Field(
        None,
        ge=0,
        description="ray: GPUs per task (None = 1 when the cluster has GPUs, else 0); 0.5 packs two per GPU.",
    )
    max_retries: int = Field(
        2, ge=0, description="ray: retries of a task that raised or whose worker died (each in the store)."
    )
