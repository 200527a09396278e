"""Online RL (seed 003's RLHF stage) on TRL's GRPOTrainer or RLOOTrainer, with ADLF rewards.

TRL removed PPOTrainer in 1.13. GRPO and RLOO both sample `num_generations` completions
per prompt, take the group's other completions as the baseline (GRPO: the group mean,
scaled by its std; RLOO: the leave-one-out mean), and optimise a clipped policy gradient
with a KL term against the reference: GRPO adds beta * KL to the per-token loss, RLOO
subtracts beta * KL from each sequence's reward. The reference is the policy's starting
adapter: TRL copies a trained adapter into a frozen "ref" adapter when beta > 0 (a fresh
adapter's copy is the base itself), so after an SFT stage the KL is measured against the
SFT model, and beta must stay > 0 for the reference to exist at all.

What this module adds to TRL:
- `ADLFReward`: one reward function computing seed 003's reward, every component logged
  per step (`adlf/<component>` in metrics) and handed to an optional per-batch hook;
- `KLControlCallback`: sets `trainer.beta` from a KL controller after each logged step,
  logs the beta in effect as `beta`, and saves the controller with every checkpoint;
- `ContrastiveAux` (train/contrastive.py): an auxiliary contrastive loss on better/worse answers;
- the NaN guard and checkpoint markers every trainer here has.
KL values are TRL's: GRPO logs the mean per-token k3 estimate exp(r) - r - 1 (>= 0), RLOO
the mean per-token log-ratio (k1, may dip below 0); both are per token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer
from trl.trainer.utils import use_adapter

from posttrain.distributed import is_main_process, split_global_batch, world_size
from posttrain.train.args import RLArgs
from posttrain.train.contrastive import ContrastiveAux, ContrastiveLossMixin
from posttrain.train.kl import AdaptiveKLController, FixedKLController
from posttrain.train.loop import (
    GuardMixin,
    StepLog,
    TrainResult,
    run_trainer,
    training_callbacks,
)
from posttrain.train.rewards import (
    coherence,
    faithfulness,
    fluency,
    length_penalty,
    reward_breakdown,
)

KL_STATE_FILE = "kl_controller.json"
REFERENCE_ADAPTER = "ref"
KLController = AdaptiveKLController | FixedKLController

# --------------------------------------------------------------------------- reference


def reference_scope(model: Any) -> AbstractContextManager:
    """Run `model` as the KL reference inside the block: TRL's "ref" adapter, else adapters off."""
    peft_config = getattr(model, "peft_config", None)
    if peft_config is None:
        raise ValueError("the policy must be a PEFT model: its reference is its starting adapter")
    return use_adapter(model, REFERENCE_ADAPTER if REFERENCE_ADAPTER in peft_config else None)


def drop_reference_adapter(model: Any) -> None:
    """Delete TRL's frozen "ref" copy, so saving the policy writes only the trained adapter."""
    if REFERENCE_ADAPTER in getattr(model, "peft_config", {}):
        model.delete_adapter(REFERENCE_ADAPTER)


# --------------------------------------------------------------------------- reward


class ADLFReward:
    """Seed 003's reward as a TRL reward function: (1 - alpha) external + alpha internal.

    `external(prompts, completions) -> scores in (0, 1)` is the reward model. Internal
    components (see posttrain.train.rewards) are computed when weighted and always for the
    cheap ones (coherence, length, faithfulness), so every step logs them; fluency runs the
    reference model (`fluency_model` under `reference_scope`) only when it has a weight.
    "quality" is the external score itself. Text metrics read the `context` column (the
    prompt's plain text); the reward model reads `rm_prompt` when the rows carry it (the
    prompt without a decision-transformer tag), else the prompt. `on_batch(step, rows)` gets
    one dict per completion (context, completion, every component, reward).
    """

    def __init__(
        self,
        external: Callable[[Sequence[Any], Sequence[Any]], list[float]],
        weights: dict[str, float],
        alpha: float,
        *,
        tokenizer: Any = None,
        fluency_model: Any = None,
        length_target: tuple[int, int] = (4, 64),
        on_batch: Callable[[int, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if weights.get("fluency") and fluency_model is None:
            raise ValueError("a fluency weight needs the reference model (fluency_model)")
        self.__name__ = "adlf"  # TRL logs rewards/<__name__>/mean
        self.external = external
        self.weights = dict(weights)
        self.alpha = alpha
        self.tokenizer = tokenizer
        self.fluency_model = fluency_model
        self.length_target = length_target
        self.on_batch = on_batch

    def components(
        self, prompts: Sequence[Any], completions: Sequence[Any], contexts: Sequence[str]
    ) -> dict[str, list[float]]:
        """Every internal component this reward logs, for one batch."""
        out = {
            "coherence": coherence(contexts, completions),
            "length": length_penalty(completions, self.tokenizer, self.length_target),
            "faithfulness": faithfulness(contexts, completions),
        }
        if self.weights.get("fluency"):
            with reference_scope(self.fluency_model):
                out["fluency"] = fluency(self.fluency_model, self.tokenizer, prompts, completions)
        return out

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        context: list[str] | None = None,
        rm_prompt: list[Any] | None = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float]:
        contexts = context if context is not None else prompts
        external = self.external(rm_prompt if rm_prompt is not None else prompts, completions)
        components = self.components(prompts, completions, contexts)
        components["quality"] = list(external)
        rows = reward_breakdown(components, self.weights, external, self.alpha)
        if log_metric is not None:
            for key in rows[0]:
                log_metric(f"adlf/{key}", sum(r[key] for r in rows) / len(rows))
        if self.on_batch is not None:
            step = (trainer_state.global_step if trainer_state is not None else 0) + 1
            texts = [_text(c) for c in completions]
            self.on_batch(
                step,
                [{"context": x, "completion": t, **r} for x, t, r in zip(contexts, texts, rows, strict=True)],
            )
        return [r["reward"] for r in rows]


def _text(value: Any) -> str:
    return "".join(m.get("content", "") for m in value) if isinstance(value, list) else str(value)


# --------------------------------------------------------------------------- dynamic KL


class KLControlCallback(TrainerCallback):
    """Drives `trainer.beta` from a KL controller and keeps the controller in checkpoints.

    On each logged training step it records the beta that was in effect as `beta` in the
    log row, feeds the step's logged `kl` to the controller (n_steps = optimizer steps since
    the previous update) and sets the trainer's beta to the controller's. On save it writes
    `kl_controller.json` into the checkpoint; it must come before CheckpointMarker in the
    callback list so a checkpoint is marked complete only with it. Call `attach(trainer)`
    after building the trainer and `load(checkpoint)` before resuming from one.
    """

    def __init__(self, controller: KLController) -> None:
        self.controller = controller
        self.trainer: Any = None
        self.last_step = 0

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer
        trainer.beta = self.controller.beta

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if not logs or "loss" not in logs or self.trainer is None:
            return
        logs["beta"] = float(self.trainer.beta)
        kl = logs.get("kl")
        steps = state.global_step - self.last_step
        if isinstance(kl, int | float) and math.isfinite(kl) and steps > 0:
            horizon = getattr(self.controller, "horizon", None)  # the adaptive update needs n < 5 x horizon
            n = steps if horizon is None else min(steps, max(1, math.ceil(5 * horizon) - 1))
            self.controller.update(float(kl), n)
            self.last_step = state.global_step
        self.trainer.beta = self.controller.beta

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and is_main_process():  # every rank holds the same controller
            data = {"controller": self.controller.state_dict(), "last_step": self.last_step}
            (ckpt / KL_STATE_FILE).write_text(json.dumps(data) + "\n")

    def load(self, checkpoint: Path) -> None:
        """Restore the controller saved in `checkpoint` (a no-op for checkpoints without one)."""
        path = Path(checkpoint) / KL_STATE_FILE
        if not path.exists():
            return
        data = json.loads(path.read_text())
        self.controller.load_state_dict(data["controller"])
        self.last_step = int(data["last_step"])
        if self.trainer is not None:
            self.trainer.beta = self.controller.beta


class GuardedGRPOTrainer(GuardMixin, ContrastiveLossMixin, GRPOTrainer):
    """GRPOTrainer with the NaN guard and the optional contrastive auxiliary loss."""


class GuardedRLOOTrainer(GuardMixin, ContrastiveLossMixin, RLOOTrainer):
    """RLOOTrainer with the NaN guard and the optional contrastive auxiliary loss."""


# --------------------------------------------------------------------------- training


def _rl_config(
    out_dir: Path, hp: RLArgs, model: Any, beta: float, checkpoints: bool
) -> GRPOConfig | RLOOConfig:
    args = hp.hf_kwargs_for(out_dir, model, checkpoints=checkpoints)
    # TRL counts completions per device: each prompt of the micro-batch is sampled num_generations
    # times. Under a launch the global count is split over the ranks (a group may span ranks:
    # TRL gathers the rewards before it takes the group baselines).
    completions = hp.batch_size * hp.num_generations
    per_device, accumulation = split_global_batch(completions, hp.gradient_accumulation_steps, world_size())
    args["per_device_train_batch_size"] = args["per_device_eval_batch_size"] = per_device
    args["gradient_accumulation_steps"] = accumulation
    common = {
        **args,
        "num_generations": hp.num_generations,
        "max_completion_length": hp.max_completion_length,
        "temperature": hp.temperature,
        "beta": beta,
        "shuffle_dataset": hp.shuffle,
        "disable_dropout": True,  # dropout would make the policy's and the old policy's logprobs disagree
        "remove_unused_columns": False,
        **hp.extra,
    }
    if hp.algo == "grpo":
        return GRPOConfig(**common)
    if hp.algo == "rloo":
        # Our rewards live on a ~[-1, 1] scale; normalised advantages keep the step size comparable to GRPO's.
        return RLOOConfig(**{"normalize_advantages": True, **common})
    raise ValueError(f"unknown RL algorithm {hp.algo!r} (choose grpo or rloo)")


def build_rl_trainer(
    model: Any,
    tokenizer: Any,
    prompt_rows: list[dict],
    reward: Callable[..., list[float]],
    out_dir: Path,
    hp: RLArgs,
    *,
    kl_controller: KLController,
    contrastive: ContrastiveAux | None = None,
    metrics_path: Path | None = None,
    checkpoints: bool = True,
) -> tuple[GuardedGRPOTrainer | GuardedRLOOTrainer, StepLog, KLControlCallback]:
    """A ready GRPO/RLOO trainer on a PEFT policy (trained in place; its starting adapter is the reference).

    `prompt_rows` are `to_prompts` rows; every column reaches `reward` as a keyword list.
    With `hp.shuffle` False the prompts are visited in the given order (curriculum).
    """
    if not prompt_rows:
        raise ValueError("no prompts for the RL stage")
    kl = KLControlCallback(kl_controller)  # before the log, which records the beta it sets
    log, ours = training_callbacks(metrics_path, checkpoints)
    cls = GuardedGRPOTrainer if hp.algo == "grpo" else GuardedRLOOTrainer
    trainer = cls(
        model=model,
        reward_funcs=[reward],
        args=_rl_config(out_dir, hp, model, kl_controller.beta, checkpoints),
        train_dataset=Dataset.from_list(prompt_rows),
        processing_class=tokenizer,
        callbacks=[kl, *ours],
    )
    trainer.contrastive = contrastive
    kl.attach(trainer)
    return trainer, log, kl


def rl_train(
    model: Any,
    tokenizer: Any,
    prompt_rows: list[dict],
    reward: Callable[..., list[float]],
    out_dir: Path,
    hp: RLArgs,
    *,
    kl_controller: KLController,
    contrastive: ContrastiveAux | None = None,
    metrics_path: Path | None = None,
    resume: bool = False,
    checkpoints: bool = True,
) -> TrainResult:
    """Train the policy adapter with GRPO/RLOO in place; never raises on divergence.

    With `resume`, training continues from the newest complete checkpoint in `out_dir`,
    with the KL controller (and so beta) as it was saved there, and metrics rows after
    that step are dropped first. The "ref" adapter stays on the model (call
    `drop_reference_adapter` before saving); `result.extra` has the log rows and final beta.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer, log, kl = build_rl_trainer(
        model,
        tokenizer,
        prompt_rows,
        reward,
        out_dir,
        hp,
        kl_controller=kl_controller,
        contrastive=contrastive,
        metrics_path=metrics_path,
        checkpoints=checkpoints,
    )
    result = run_trainer(trainer, log, resume=resume, on_resume=kl.load)
    result.extra["beta"] = float(trainer.beta)
    return result


# --------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[dict]],
    *,
    n: int = 1,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    seed: int = 0,
    batch_size: int = 16,
) -> list[list[str]]:
    """`n` sampled completions per prompt (message lists go through the chat template).

    Seeded with a private generator state, so two models sampled with the same seed get
    the same random stream and differences come from the models. Completions are decoded
    as TRL decodes rollouts (special tokens skipped, whitespace kept), so a reward model
    scores them the same way. Left padding keeps every prompt's last token at the end.
    """
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        if isinstance(p, list)
        else p
        for p in prompts
    ]
    device = next(model.parameters()).device
    side, was_training = tokenizer.padding_side, model.training
    tokenizer.padding_side = "left"
    model.eval()
    out: list[list[str]] = []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                ).to(device)
                ids = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=temperature,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=n,
                    pad_token_id=tokenizer.pad_token_id,
                )
                decoded = tokenizer.batch_decode(
                    ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
                )
                out.extend(decoded[i * n : (i + 1) * n] for i in range(len(decoded) // n))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out
