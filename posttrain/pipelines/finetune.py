"""`posttrain sft` and `posttrain dpo`: one LoRA training run from config to report.

Each function reads top to bottom: validate data (before any model loads) → claim the run
directory and store row → load the resident base and adapter → train → save adapter,
metrics and report → rename the directory to its final name.

Under `--launcher accelerate` every rank runs the same function: all of them train, evaluate
and generate (collectives under FSDP/ZeRO-3 need every rank), rank 0 alone writes the run
directory, the store row and the report (see posttrain.distributed).
"""

from __future__ import annotations

import json
from typing import Any

from posttrain.config import DPOConfig, SFTConfig, dump_config
from posttrain.distributed import is_main_process, wait_for_everyone, world_size
from posttrain.inference import generate_batch
from posttrain.models import ResidentModel, device_settings
from posttrain.report import write_training_report
from posttrain.rundir import (  # noqa: F401  (re-exported for older imports)
    ADAPTER_META,
    RunDir,
    adapter_base_model,
    default_run_name,
    open_run_store,
    open_store,
    resumed_config,
    save_adapter,
    tracked_run,
)
from posttrain.store import Store
from posttrain.tasks.instructions import load_preference_dataset, load_sft_dataset, sample_path
from posttrain.train.common import TrainResult
from posttrain.train.dpo import DPOHParams, dpo_train
from posttrain.train.sft import SFTHParams, sft_train


def _hparams(cls: type, train: Any, **extra: Any) -> Any:
    fields = cls.__dataclass_fields__
    values = {k: v for k, v in train.model_dump().items() if k in fields}
    return cls(**values, **extra)


def _finish(
    store: Store | None,
    run_id: int | None,
    run: RunDir,
    kind: str,
    result: TrainResult,
    summary: dict[str, Any],
) -> dict[str, Any]:
    wait_for_everyone()  # no rank still writes into the partial directory when rank 0 renames it
    summary = {"run": run.name, "status": result.status, **summary}
    if store is None or run_id is None:  # not rank 0 of a launch: rank 0 records the run
        return summary
    rows = [json.loads(x) for x in run.metrics.read_text().splitlines()] if run.metrics.exists() else []
    if result.status == "diverged":
        summary["error"] = result.error
        run.write_json("summary.json", summary)
        store.update_run(run_id, status="diverged", error=result.error, metrics=summary)
        summary["run_dir"] = str(run.path)  # stays .partial: a diverged run is not a complete one
        return summary
    write_training_report(run.path, f"posttrain {kind}: {run.name}", summary, rows)
    run.write_json("summary.json", summary)
    final = run.finish()
    summary["run_dir"] = str(final)
    store.update_run(run_id, status="completed", metrics=summary, run_dir=str(final))
    return summary


def run_sft(cfg: SFTConfig, resume: bool = False) -> dict[str, Any]:
    """LoRA SFT with loss on completions; returns the run summary (also in summary.json)."""
    cfg = resumed_config(SFTConfig, cfg, resume)
    data_path = cfg.data.path or str(sample_path("alpaca"))
    train_rows, val_rows = load_sft_dataset(data_path, **cfg.data.split_args())
    run = RunDir.start(cfg.run.output_root, cfg.run.name or default_run_name("sft"), resume)
    if is_main_process():
        dump_config(cfg, run.path / "config.yaml")
    store = open_run_store(cfg.run.store, cfg.run.output_root)
    with tracked_run(store, "sft", run, cfg.model_dump(mode="json"), resume) as run_id:
        settings = device_settings(
            cfg.model.device, cfg.model.dtype, cfg.model.attn_implementation, cfg.model.use_kernels
        )
        resident = ResidentModel(cfg.model.name, settings)
        lora = cfg.lora
        model = resident.fresh_adapter(lora.r, lora.alpha, lora.dropout, cfg.train.seed, lora.target_modules)
        hp = _hparams(SFTHParams, cfg.train, max_length=cfg.data.max_length)
        result = sft_train(
            model,
            resident.tokenizer,
            train_rows,
            val_rows,
            run.checkpoints,
            hp,
            metrics_path=run.metrics,
            resume=resume,
        )
        if result.status == "completed":
            save_adapter(model, run.path / "adapter", cfg.model.name, {"kind": "sft"})
        sample = val_rows[0]["prompt"]
        generation = ""  # a diverged adapter has nothing worth showing
        if result.status == "completed":
            generation = generate_batch(model, resident.tokenizer, [sample], max_new_tokens=48)[0]
        summary = {
            "model": cfg.model.name,
            "device": settings.describe(),
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
        return _finish(store, run_id, run, "sft", result, summary)


def _ppl(loss: float | None) -> float | None:
    from posttrain.train.common import safe_perplexity

    return None if loss is None else safe_perplexity(loss)


def run_dpo(cfg: DPOConfig, resume: bool = False) -> dict[str, Any]:
    """LoRA DPO on preference rows, from a fresh adapter or on top of an SFT adapter."""
    cfg = resumed_config(DPOConfig, cfg, resume)
    data_path = cfg.data.path or str(sample_path("preference"))
    train_rows, val_rows = load_preference_dataset(data_path, **cfg.data.split_args())
    run = RunDir.start(cfg.run.output_root, cfg.run.name or default_run_name("dpo"), resume)
    if is_main_process():
        dump_config(cfg, run.path / "config.yaml")
    store = open_run_store(cfg.run.store, cfg.run.output_root)
    with tracked_run(store, "dpo", run, cfg.model_dump(mode="json"), resume) as run_id:
        settings = device_settings(
            cfg.model.device, cfg.model.dtype, cfg.model.attn_implementation, cfg.model.use_kernels
        )
        resident = ResidentModel(cfg.model.name, settings)
        if cfg.dpo.adapter:
            model = resident.load_adapter(cfg.dpo.adapter, trainable=True)
        else:
            lora = cfg.lora
            model = resident.fresh_adapter(
                lora.r, lora.alpha, lora.dropout, cfg.train.seed, lora.target_modules
            )
        hp = _hparams(
            DPOHParams,
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
            run.checkpoints,
            hp,
            metrics_path=run.metrics,
            resume=resume,
        )
        if result.status == "completed":
            save_adapter(
                model, run.path / "adapter", cfg.model.name, {"kind": "dpo", "from": cfg.dpo.adapter}
            )
        ev = result.extra.get("eval", {})
        summary = {
            "model": cfg.model.name,
            "device": settings.describe(),
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
        return _finish(store, run_id, run, "dpo", result, summary)
