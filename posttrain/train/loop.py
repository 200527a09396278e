"""Running a TRL trainer the one way every trainer here does: resume from the newest complete
checkpoint, refuse NaN/inf updates, report divergence as a result instead of an exception,
and log every step.

`run_trainer` is the loop; the callbacks (`StepLog`, `CheckpointMarker`) and `GuardMixin`
are what a trainer needs for it to work: `StepLog` collects the losses, `CheckpointMarker`
marks the checkpoints `latest_complete_checkpoint` may resume from, and a trainer class
built as `class Guarded(GuardMixin, SomeTRLTrainer)` raises `DivergedError` before a bad
update. `run_trainer` also swaps HF's console printer (a raw Python dict per step) for
`StepLines`, one readable line per log step.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from posttrain.distributed import is_distributed, is_main_process, wait_for_everyone
from posttrain.errors import DivergedError
from posttrain.train.args import TrainArgs

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
PERPLEXITY_CAP = 50.0  # exp(50) ~ 5e21: past that a perplexity says nothing more, and exp() would overflow


def safe_perplexity(loss: float | None) -> float:
    """exp(loss), capped at exp(50) so a diverging eval never overflows to inf (None counts as diverged)."""
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


# Log keys worth a place on the console line, in order, with the label they get there.
_LINE_KEYS = (
    ("loss", "loss"),
    ("learning_rate", "lr"),
    ("grad_norm", "grad norm"),
    ("rewards/margins", "margin"),
    ("rewards/accuracies", "pref acc"),
    ("reward", "reward"),
    ("eval_loss", "eval loss"),
)


def step_line(step: int, total: int, logs: dict[str, Any]) -> str | None:
    """`step 3/20 · loss 2.412 · lr 0.0002 · grad norm 0.83` for a log row (eval loss when the row
    is an evaluation's); the end-of-training row becomes one `trained ... in ... s` line; None
    for a row with nothing worth a line."""
    if "train_runtime" in logs:
        mean = f" · mean loss {logs['train_loss']:.4g}" if isinstance(logs.get("train_loss"), float) else ""
        return f"trained {step} steps in {logs['train_runtime']:.1f} s{mean}"
    shown = [(label, logs[key]) for key, label in _LINE_KEYS if isinstance(logs.get(key), int | float)]
    parts = [f"{label} {value:.4g}" for label, value in shown]
    if not parts:
        return None
    return " · ".join([f"step {step}/{total}" if total > 0 else f"step {step}", *parts])


class StepLines(TrainerCallback):
    """One console line per log row (see `step_line`) instead of HF's printed dict; written
    with tqdm so it lands above a progress bar rather than through it. Rank 0 only."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        line = step_line(state.global_step, state.max_steps, logs)
        if line is not None:
            tqdm.write(line)


class StepProgress(StepLines, ProgressCallback):
    """HF's progress bar, with `StepLines` in place of its dict print."""


def use_step_lines(trainer: Any) -> None:
    """Replace the printer HF gave `trainer` (ProgressCallback, or PrinterCallback under
    `disable_tqdm`) with the one-line-per-step console; the bar stays where there was one."""
    handler = trainer.callback_handler
    bar = any(isinstance(cb, ProgressCallback) for cb in handler.callbacks)
    printers = (ProgressCallback, PrinterCallback, StepLines)
    handler.callbacks = [cb for cb in handler.callbacks if not isinstance(cb, printers)]
    trainer.add_callback(StepProgress() if bar else StepLines())


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


def training_callbacks(
    metrics_path: Path | None, checkpoints: bool = True, hp: TrainArgs | None = None
) -> tuple[StepLog, list[Any]]:
    """The step log and the callbacks `run_trainer` relies on (the marker only when saving), plus
    those `hp` asks for (early stopping)."""
    log = StepLog(metrics_path)
    extra = hp.callbacks() if hp is not None else []
    return log, [log, *([CheckpointMarker()] if checkpoints else []), *extra]


def checkpoint_step(checkpoint: Path | None) -> int:
    """The optimizer step of an HF `checkpoint-N` directory; 0 for None (start from scratch)."""
    return 0 if checkpoint is None else int(checkpoint.name.split("-")[-1])


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


def measured_eval(trainer: Any, log: StepLog) -> dict[str, Any] | None:
    """The evaluation during training that already measured the weights training ended with, so
    the final one is not run again; None when there is none.

    After early stopping HF has loaded the best checkpoint: its evaluation is the one, and a new
    one would be logged at the last step, putting the best model's loss where the last one was.
    """
    state = trainer.state
    step = state.global_step
    if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
        step = checkpoint_step(Path(state.best_model_checkpoint))
    for row in reversed(log.rows):
        if row["step"] == step and "eval_loss" in row:
            return {k: v for k, v in row.items() if k != "step"}
    return None


def run_trainer(
    trainer: Any,
    log: StepLog,
    *,
    resume: bool = False,
    eval_before: bool = False,
    evaluate: bool = True,
    on_resume: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train `trainer` (a Guarded TRL trainer with `log` among its callbacks); never raises on divergence.

    With `resume`, training continues from the newest complete checkpoint under the trainer's
    `output_dir` (`on_resume(checkpoint)` first restores whatever state the trainer keeps
    beside HF's, e.g. a KL controller), and rows `log` wrote past that step (all of them
    without a checkpoint) are dropped, so each step appears once. With an eval dataset,
    `eval_before` measures `eval_loss_before` on a fresh start and `evaluate` the final
    eval_loss (None if not finite; every numeric eval metric in `extra["eval"]`).
    `extra` also has every log row (`log`) and the checkpoint resumed from (`resumed_from`).
    """
    resume_from = latest_complete_checkpoint(Path(trainer.args.output_dir)) if resume else None
    if resume_from is not None and on_resume is not None:
        on_resume(resume_from)
    if resume and log.path is not None:
        trim_metrics(log.path, checkpoint_step(resume_from))
    use_step_lines(trainer)
    has_eval = trainer.eval_dataset is not None
    result = TrainResult(status="completed", steps=0)
    if has_eval and eval_before and resume_from is None:
        result.eval_loss_before = float(trainer.evaluate()["eval_loss"])
        undo_eval_preparation(trainer)
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except DivergedError as exc:
        result.status, result.error = "diverged", str(exc)
    result.runtime_s = time.perf_counter() - start
    result.steps = trainer.state.global_step
    result.losses = log.losses
    result.train_tokens = int(getattr(trainer, "_total_train_tokens", 0))
    result.extra.update(log=log.rows, resumed_from=str(resume_from or ""))
    if result.status == "completed" and has_eval and evaluate:
        eval_start = time.perf_counter()
        metrics = measured_eval(trainer, log) or trainer.evaluate()
        result.eval_s = time.perf_counter() - eval_start
        loss = float(metrics["eval_loss"])
        result.eval_loss = loss if math.isfinite(loss) else None
        result.extra["eval"] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    return result
