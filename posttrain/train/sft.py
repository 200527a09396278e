"""LoRA SFT on TRL's SFTTrainer, with the loss on the completion only.

Speed choices (see bench/sft_throughput.py): BFD packing into padding-free rows (no pad
tokens, and transformers builds a block-diagonal mask from position_ids, so packed examples
never attend to each other), no gradient checkpointing on small models (TRL turns it on by
default; recomputation costs ~30% on CPU), and TRL's fused LM head, which never materialises
the full logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch import nn
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from posttrain.train.args import SFTArgs, require_validation
from posttrain.train.loop import (
    GuardMixin,
    StepLog,
    TrainResult,
    run_trainer,
    safe_perplexity,
    training_callbacks,
)


class GuardedSFTTrainer(GuardMixin, SFTTrainer):
    """SFTTrainer that refuses NaN/inf updates and projects to the vocabulary only where it must.

    TRL's default loss runs a chunked fused LM head over every position and also computes
    entropy; on CPU that was half of each step (measured with cProfile on smollm2-135m). The
    loss only needs logits at positions with a label, so we ask the model for exactly those
    (`logits_to_keep` with indices) and take plain cross-entropy there. Same loss, same
    normalisation (`num_items_in_batch`), through the model's own forward so DDP/FSDP hooks run.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        mode = "train" if self.model.training else "eval"
        labels = inputs.get("shift_labels")
        if labels is None:
            labels = nn.functional.pad(inputs["labels"][:, 1:], (0, 1), value=-100)
        keep = (labels != -100).any(0).nonzero().squeeze(-1)
        forward = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
        outputs = model(**forward, use_cache=False, logits_to_keep=keep)
        targets = labels[:, keep]
        logits = outputs.logits.float()
        total = nn.functional.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
        )
        counted = (targets != -100).sum()
        loss = total / (num_items_in_batch if num_items_in_batch is not None else counted.clamp(min=1))
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every rank's tokens and DDP averages the gradients over
            # ranks; HF's own compute_loss undoes that mean the same way (only when the count is global).
            loss = loss * self.accelerator.num_processes
        with torch.no_grad():
            right = ((logits.argmax(-1) == targets) & (targets != -100)).sum()
            if "attention_mask" in inputs:
                tokens = inputs["attention_mask"].sum()
            else:
                tokens = torch.tensor(inputs["position_ids"].size(1), device=labels.device)
            # Counts over every rank's batch, as TRL's own loss gathers them (identity in one process).
            counts = self.accelerator.gather(torch.stack([right, counted, tokens]).long())
            right, valid, tokens = counts.view(-1, 3).sum(0).tolist()
        self._metrics[mode]["mean_token_accuracy"].append(right / max(valid, 1))
        if mode == "train":
            self._total_train_tokens += tokens
        elif getattr(self, "_eval_sums", None) is not None:
            self._eval_sums += torch.stack([total.detach().double(), counted.double()])
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(self, *args, **kwargs):  # noqa: D102
        # The Trainer averages per-batch means, and a padding-free batch counts as one sample:
        # eval_loss would then depend on the eval batch size (and so differ between trials of
        # different batch sizes). Report the token mean over the whole split instead; set here,
        # before `evaluate` logs the metrics and hands them to early stopping, so metrics.jsonl,
        # the best-model choice and the returned value are one number.
        self._eval_sums = torch.zeros(2, dtype=torch.float64, device=self.accelerator.device)
        try:
            output = super().evaluation_loop(*args, **kwargs)
            loss_sum, tokens = self.accelerator.reduce(self._eval_sums, reduction="sum").tolist()
        finally:
            self._eval_sums = None
        key = f"{kwargs.get('metric_key_prefix', 'eval')}_loss"
        if tokens and key in output.metrics:
            output.metrics[key] = loss_sum / tokens
        return output


def varlen_attention(model: Any) -> bool:
    """Whether attention takes packed sequences natively (flash-attention's varlen kernels).

    Padding-free batching flattens a whole batch into one sequence. Flash attention splits it
    again by `cu_seq_lens`; SDPA and eager instead build a block-diagonal mask over the whole
    flattened length, so attention costs (batch x max_length)^2 in time and memory. Measured on
    the 2-core CPU with smollm2-135m, batch 8 x 512 tokens: half the tokens/s and a 10 GB step.
    """
    return "flash" in str(getattr(model.config, "_attn_implementation", "") or "")


def _trl_config(out_dir: Path, hp: SFTArgs, model: Any, checkpoints: bool) -> TRLSFTConfig:
    args = hp.hf_kwargs_for(out_dir, model, checkpoints=checkpoints)
    if hp.packing and not varlen_attention(model):
        # One packed row per forward, the batch made up by accumulation: the same tokens per
        # optimizer step and the same token-mean loss (num_items_in_batch spans the window),
        # with attention over max_length instead of batch x max_length.
        args["gradient_accumulation_steps"] *= args["per_device_train_batch_size"]
        args["per_device_train_batch_size"] = args["per_device_eval_batch_size"] = 1
    return TRLSFTConfig(
        **args,
        max_length=hp.max_length,
        packing=hp.packing,
        packing_strategy="bfd",
        completion_only_loss=True,
        dataset_num_proc=None,
        shuffle_dataset=True,
    )


def build_sft_trainer(
    model: Any,
    tokenizer: Any,
    train_rows: list[dict],
    val_rows: list[dict] | None,
    out_dir: Path,
    hp: SFTArgs,
    *,
    metrics_path: Path | None = None,
    checkpoints: bool = True,
) -> tuple[GuardedSFTTrainer, StepLog]:
    """A ready SFTTrainer on a PEFT model (the adapter is trained in place, never re-wrapped)."""
    require_validation(hp.eval_steps, len(val_rows or []))
    log, callbacks = training_callbacks(metrics_path, checkpoints, hp)
    trainer = GuardedSFTTrainer(
        model=model,
        args=_trl_config(out_dir, hp, model, checkpoints),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    return trainer, log


def sft_train(
    model: Any,
    tokenizer: Any,
    train_rows: list[dict],
    val_rows: list[dict] | None,
    out_dir: Path,
    hp: SFTArgs,
    *,
    metrics_path: Path | None = None,
    resume: bool = False,
    checkpoints: bool = True,
    eval_before: bool = True,
) -> TrainResult:
    """Train the adapter on `model` in place and evaluate it; never raises on divergence.

    `out_dir` holds HF checkpoints (`checkpoint-N/`); with `resume`, training continues from
    the newest complete one and reproduces the uninterrupted run's per-step losses.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer, log = build_sft_trainer(
        model,
        tokenizer,
        train_rows,
        val_rows,
        out_dir,
        hp,
        metrics_path=metrics_path,
        checkpoints=checkpoints,
    )
    result = run_trainer(trainer, log, resume=resume, eval_before=eval_before)
    if "eval" in result.extra:
        result.perplexity = safe_perplexity(result.eval_loss)
    return result


def evaluate_loss(
    model: Any, tokenizer: Any, rows: list[dict], out_dir: Path, max_length: int = 512
) -> float:
    """Completion-only eval loss of `model` on `rows` (no training)."""
    hp = SFTArgs(max_length=max_length, report_to="none")
    trainer, _ = build_sft_trainer(model, tokenizer, rows[:1], rows, out_dir, hp, checkpoints=False)
    return float(trainer.evaluate()["eval_loss"])
