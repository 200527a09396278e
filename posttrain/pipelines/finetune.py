"""`posttrain sft` and `posttrain dpo`: one LoRA training run from config to report.

Each function reads top to bottom: validate data (before any model loads) → claim the run
directory and store row → load the resident base and adapter → train → save adapter,
metrics and report → rename the directory to its final name.

Under `--launcher accelerate` every rank runs the same function: all of them train, evaluate
and generate (collectives under FSDP/ZeRO-3 need every rank), rank 0 alone writes the run
directory, the store row and the report (see posttrain.distributed).
"""

from __future__ import annotations

from typing import Any

from posttrain.config import DPOConfig, SFTConfig
from posttrain.distributed import world_size
from posttrain.inference import generate_batch
from posttrain.models import check_adapter
from posttrain.pipelines._run import Report, Run, open_run, resumed
from posttrain.report import write_training_report
from posttrain.rundir import save_adapter
from posttrain.tasks.instructions import load_preference_dataset, load_sft_dataset, sample_path
from posttrain.train.args import DPOArgs, SFTArgs, require_validation
from posttrain.train.dpo import dpo_train
from posttrain.train.loop import safe_perplexity
from posttrain.train.sft import sft_train


def run_sft(cfg: SFTConfig, resume: bool = False) -> dict[str, Any]:
    """LoRA SFT with loss on completions; returns the run summary (also in summary.json)."""
    cfg = resumed(cfg, resume)
    data_path = cfg.data.path or str(sample_path("alpaca"))
    train_rows, val_rows = load_sft_dataset(data_path, **cfg.data.split_args())
    require_validation(cfg.train.eval_steps, len(val_rows), "train")
    with open_run("sft", cfg, resume) as run:
        resident = run.resident
        lora = cfg.lora
        model = resident.fresh_adapter(lora.r, lora.alpha, lora.dropout, cfg.train.seed, lora.target_modules)
        hp = SFTArgs.from_settings(cfg.train, max_length=cfg.data.max_length)
        result = sft_train(
            model,
            resident.tokenizer,
            train_rows,
            val_rows,
            run.dir.checkpoints,
            hp,
            metrics_path=run.dir.metrics,
            resume=resume,
        )
        if result.status == "completed":
            save_adapter(model, run.path / "adapter", cfg.model.name, {"kind": "sft"})
        sample = (val_rows or train_rows)[0]["prompt"]  # a one-row file has no validation row
        generation = ""  # a diverged adapter has nothing worth showing
        if result.status == "completed":
            generation = generate_batch(model, resident.tokenizer, [sample], max_new_tokens=48)[0]
        summary = {
            "model": cfg.model.name,
            "device": run.settings.describe(),
            "processes": world_size(),
            "train_rows": len(train_rows),
            "val_rows": len(val_rows),
            "steps": result.steps,
            "eval_loss_before": result.eval_loss_before,
            "perplexity_before": _ppl(result.eval_loss_before),
            "eval_loss": result.eval_loss,
            "perplexity": result.perplexity,
            "train_runtime_s": round(result.runtime_s, 2),
            "train_tokens": result.train_tokens,
            "tokens_per_s": round(result.train_tokens / result.runtime_s, 1) if result.runtime_s else None,
            "sample_prompt": sample[-1]["content"],
            "sample_generation": generation,
        }
        return run.finish(summary, status=result.status, error=result.error, report=_report(run, "sft"))


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else safe_perplexity(loss)


def _report(run: Run, kind: str) -> Report:
    """report.md and loss plots from the run's metrics.jsonl (called by `Run.finish`)."""
    return lambda path, summary: write_training_report(
        path, f"posttrain {kind}: {run.name}", summary, run.metric_rows()
    )


def run_dpo(cfg: DPOConfig, resume: bool = False) -> dict[str, Any]:
    """LoRA DPO on preference rows, from a fresh adapter or on top of an SFT adapter."""
    cfg = resumed(cfg, resume)
    data_path = cfg.data.path or str(sample_path("preference"))
    train_rows, val_rows = load_preference_dataset(data_path, **cfg.data.split_args())
    require_validation(cfg.train.eval_steps, len(val_rows), "train")
    if cfg.dpo.adapter:
        check_adapter(cfg.dpo.adapter, cfg.model.name)
    with open_run("dpo", cfg, resume) as run:
        resident = run.resident
        if cfg.dpo.adapter:
            model = resident.load_adapter(cfg.dpo.adapter, trainable=True)
        else:
            lora = cfg.lora
            model = resident.fresh_adapter(
                lora.r, lora.alpha, lora.dropout, cfg.train.seed, lora.target_modules
            )
        hp = DPOArgs.from_settings(
            cfg.train,
            max_length=cfg.data.max_length,
            beta=cfg.dpo.beta,
            loss_type=cfg.dpo.loss_type,
        )
        result = dpo_train(
            model,
            resident.tokenizer,
            train_rows,
            val_rows,
            run.dir.checkpoints,
            hp,
            metrics_path=run.dir.metrics,
            resume=resume,
        )
        if result.status == "completed":
            save_adapter(
                model, run.path / "adapter", cfg.model.name, {"kind": "dpo", "from": cfg.dpo.adapter}
            )
        ev = result.extra.get("eval", {})
        summary = {
            "model": cfg.model.name,
            "device": run.settings.describe(),
            "processes": world_size(),
            "reference": cfg.dpo.adapter or "base model (adapter disabled)",
            "train_pairs": len(train_rows),
            "val_pairs": len(val_rows),
            "steps": result.steps,
            "first_loss": result.losses[0][1] if result.losses else None,
            "last_loss": result.losses[-1][1] if result.losses else None,
            "eval_loss": result.eval_loss,
            "eval_reward_accuracy": ev.get("eval_rewards/accuracies"),
            "eval_reward_margin": ev.get("eval_rewards/margins"),
            "train_runtime_s": round(result.runtime_s, 2),
        }
        return run.finish(summary, status=result.status, error=result.error, report=_report(run, "dpo"))
