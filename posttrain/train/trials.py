"""Seed 000's `train_and_eval(hparams) -> metrics`, on a resident base model.

Every trial gets a fresh LoRA adapter on the base already in memory (never a reload), trains
with the trial's hyperparameters and returns eval_loss and perplexity = exp(eval_loss),
capped so a diverging trial still yields a finite, comparable number.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from posttrain.config.search_space import HPARAM_NAMES
from posttrain.models import ResidentModel
from posttrain.train.args import SFTArgs
from posttrain.train.loop import PERPLEXITY_CAP, safe_perplexity
from posttrain.train.sft import sft_train

HPARAM_FIELDS = (*HPARAM_NAMES, "trial_id")


def make_train_and_eval(
    resident: ResidentModel,
    train_rows: list[dict],
    val_rows: list[dict],
    out_root: Path,
    *,
    max_length: int = 512,
    max_steps: int = -1,
    seed: int = 42,
    packing: bool = True,
    keep_adapters: bool = False,
    reload_base: bool = False,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Bind data and base model once; the returned function runs one trial per call.

    `hparams` uses seed 000's keys (lr, batch_size, epochs, warmup_ratio, lora_r, lora_alpha,
    lora_dropout, trial_id). The metrics dict has eval_loss, perplexity, status, steps,
    train_s and, with `keep_adapters`, the saved adapter's path. `train_override` trains on
    other rows (e.g. self-edits) and `init_adapter` starts from a saved adapter of the same
    shape instead of a fresh one (refinement). `reload_base` rebuilds the base from disk for
    every trial, as seed 000 does; it exists to measure what residency saves.
    """

    def train_and_eval(
        hparams: dict[str, Any],
        train_override: list[dict] | None = None,
        init_adapter: str | Path | None = None,
    ) -> dict[str, Any]:
        missing = [k for k in HPARAM_FIELDS[:-1] if k not in hparams]
        if missing:
            raise ValueError(f"train_and_eval: hparams lack {', '.join(missing)}")
        trial = str(hparams.get("trial_id", "trial"))
        if reload_base:  # seed 000's way, kept for bench/trial_overhead.py: a fresh base every trial
            resident.reload()
        out = out_root / trial
        model = resident.fresh_adapter(
            int(hparams["lora_r"]), int(hparams["lora_alpha"]), float(hparams["lora_dropout"]), seed
        )
        if init_adapter is not None:
            load_adapter_weights(model, init_adapter)
        hp = SFTArgs(
            learning_rate=float(hparams["lr"]),
            batch_size=int(hparams["batch_size"]),
            epochs=float(hparams["epochs"]),
            max_steps=max_steps,
            warmup_ratio=float(hparams["warmup_ratio"]),
            seed=seed,
            packing=packing,
            max_length=max_length,
            logging_steps=1,
        )
        start = time.perf_counter()
        result = sft_train(
            model,
            resident.tokenizer,
            train_override if train_override is not None else train_rows,
            val_rows,
            out,
            hp,
            checkpoints=False,
            eval_before=False,
        )
        loss = result.eval_loss if result.eval_loss is not None else PERPLEXITY_CAP
        metrics: dict[str, Any] = {
            "trial_id": trial,
            "eval_loss": loss,
            "perplexity": safe_perplexity(loss),
            "status": result.status,
            "steps": result.steps,
            "train_loss": result.losses[-1][1] if result.losses else math.nan,
            "train_s": round(time.perf_counter() - start, 3),
            # Time inside the optimisation loop and the evaluation only; the rest of train_s is
            # set-up (adapter, trainer, tokenisation), which bench/trial_overhead.py measures.
            "fit_s": round(result.runtime_s + result.eval_s, 3),
        }
        if keep_adapters and result.status == "completed":
            model.save_pretrained(str(out / "adapter"))
            metrics["adapter_dir"] = str(out / "adapter")
        elif out.exists():
            shutil.rmtree(out, ignore_errors=True)
        return metrics

    return train_and_eval


def load_adapter_weights(model: Any, adapter_dir: str | Path) -> None:
    """Copy a saved adapter's weights into the active adapter (same r and targets)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights, adapter_name=model.active_adapter)
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise ValueError(f"{adapter_dir}: adapter does not fit the model ({missing[0]} …)")
