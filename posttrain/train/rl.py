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
- `ContrastiveAux`: an auxiliary contrastive loss on better/worse answers to one prompt;
- the NaN guard and checkpoint markers every trainer here has.
KL values are TRL's: GRPO logs the mean per-token k3 estimate exp(r) - r - 1 (>= 0), RLOO
the mean per-token log-ratio (k1, may dip below 0); both are per token.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer
from trl.trainer.utils import use_adapter

from posttrain.distributed import is_main_process, split_global_batch, world_size
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
from posttrain.train.kl import AdaptiveKLController, FixedKLController
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


def checkpoint_step(checkpoint: Path | None) -> int:
    """The optimizer step of an HF `checkpoint-N` directory; 0 for None (start from scratch)."""
    return 0 if checkpoint is None else int(checkpoint.name.split("-")[-1])


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


# --------------------------------------------------------------------------- contrastive loss


class ContrastiveAux:
    """Auxiliary loss that ranks a better answer above a worse one to the same prompt.

    Each item is a row of `contrastive_pairs` (prompt, chosen, rejected). With s = the mean
    log-probability of an answer's tokens under the policy,

        loss = softplus((s_rejected - s_chosen) / temperature)    (= -log softmax over the pair)

    averaged over `batch_size` pairs per micro-step, visited in a seeded order. A low
    temperature (seed 003 uses 0.07) makes it a near-hinge: pairs already ranked by a
    clear margin stop contributing. The trainer adds `weight` x loss to the RL loss.
    """

    def __init__(
        self,
        tokenizer: Any,
        pairs: list[dict],
        *,
        temperature: float,
        weight: float,
        batch_size: int = 2,
        max_length: int = 512,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise ValueError("the contrastive loss needs at least one (chosen, rejected) pair")
        if temperature <= 0:
            raise ValueError(f"contrastive temperature must be > 0, got {temperature}")
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.weight = weight
        self.batch_size = batch_size
        self.items = [
            (
                _encode(tokenizer, p["prompt"], p["chosen"], max_length),
                _encode(tokenizer, p["prompt"], p["rejected"], max_length),
            )
            for p in pairs
        ]
        self.order = list(range(len(self.items)))
        random.Random(seed).shuffle(self.order)

    def batch(self, index: int) -> list[int]:
        """Item indices for micro-step `index` (cycles through the seeded order)."""
        n = len(self.order)
        return [self.order[(index * self.batch_size + k) % n] for k in range(min(self.batch_size, n))]

    def loss(self, model: Any, index: int) -> tuple[torch.Tensor, float]:
        """(loss with grad, share of pairs ranked correctly) for micro-step `index`."""
        chosen = [self.items[i][0] for i in self.batch(index)]
        rejected = [self.items[i][1] for i in self.batch(index)]
        scores = _mean_logprobs(model, [*chosen, *rejected], self.tokenizer.pad_token_id or 0)
        s_hi, s_lo = scores[: len(chosen)], scores[len(chosen) :]
        loss = torch.nn.functional.softplus((s_lo - s_hi) / self.temperature).mean()
        return loss, float((s_hi > s_lo).float().mean())


def _encode(tokenizer: Any, prompt: Any, answer: Any, max_length: int) -> tuple[list[int], int]:
    """(token ids of prompt + answer + EOS, number of prompt tokens); the prompt is cut from the left."""
    if isinstance(prompt, list):
        prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(_text(answer) + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    a_ids = a_ids[: max_length - 1]
    p_ids = p_ids[max(0, len(p_ids) - (max_length - len(a_ids))) :]
    return p_ids + a_ids, len(p_ids)


def _mean_logprobs(model: Any, items: list[tuple[list[int], int]], pad: int) -> torch.Tensor:
    """Mean log-probability of each item's answer tokens (right-padded batch, one forward)."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width - 1), -100, dtype=torch.long)
    for row, (seq, n_prompt) in enumerate(items):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        start = max(1, n_prompt)  # token 0 has nothing to be predicted from
        labels[row, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    # Project to the vocabulary only where some row has an answer token: the full logits of
    # a batch are vocab x longer than the hidden states and dominated the cost on CPU.
    keep = (labels != -100).any(0).nonzero().squeeze(-1)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits.float()
    targets = labels[:, keep]
    nll = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none"
    ).view(targets.shape)
    return -nll.sum(1) / (targets != -100).sum(1).clamp(min=1)


class _ContrastiveMixin:
    """Adds `contrastive.weight` x ContrastiveAux loss to the RL loss of each training micro-step."""

    contrastive: ContrastiveAux | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        aux = self.contrastive
        if aux is None or aux.weight == 0 or not self.model.training:  # type: ignore[attr-defined]
            return loss
        c_loss, accuracy = aux.loss(model, getattr(self, "_step", 0))
        # GRPO returns a loss already divided over accumulation steps, RLOO leaves that to HF.
        if getattr(self, "loss_is_scaled_for_ga", False):
            c_loss = c_loss / self.current_gradient_accumulation_steps  # type: ignore[attr-defined]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        metrics["contrastive/loss"].append(float(c_loss.detach()))
        metrics["contrastive/accuracy"].append(accuracy)
        return loss + aux.weight * c_loss


class GuardedGRPOTrainer(GuardMixin, _ContrastiveMixin, GRPOTrainer):
    """GRPOTrainer with the NaN guard and the optional contrastive auxiliary loss."""


class GuardedRLOOTrainer(GuardMixin, _ContrastiveMixin, RLOOTrainer):
    """RLOOTrainer with the NaN guard and the optional contrastive auxiliary loss."""


# --------------------------------------------------------------------------- training


@dataclass
class RLHParams:
    """Optimisation settings for one RL call. `batch_size` counts PROMPTS per micro-batch."""

    algo: str = "grpo"
    learning_rate: float = 2e-5
    batch_size: int = 2
    gradient_accumulation_steps: int = 1
    epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.0
    scheduler: str = "cosine"
    scheduler_kwargs: dict[str, Any] | None = None
    max_grad_norm: float = 1.0
    seed: int = 42
    num_generations: int = 4
    max_completion_length: int = 48
    temperature: float = 1.0
    shuffle: bool = True
    save_steps: int = 25
    save_total_limit: int = 2
    logging_steps: int = 1
    report_to: str = "none"
    extra: dict[str, Any] = field(default_factory=dict)


def _rl_config(
    out_dir: Path, hp: RLHParams, model: Any, beta: float, do_save: bool
) -> GRPOConfig | RLOOConfig:
    args = hf_args_for(out_dir, hp, model, do_save)
    # TRL counts completions per device: each prompt of the micro-batch is sampled num_generations
    # times. Under a launch the global count is split over the ranks (a group may span ranks:
    # TRL gathers the rewards before it takes the group baselines).
    completions = hp.batch_size * hp.num_generations
    per_device, accumulation = split_global_batch(completions, hp.gradient_accumulation_steps, world_size())
    args["per_device_train_batch_size"] = args["per_device_eval_batch_size"] = per_device
    args["gradient_accumulation_steps"] = accumulation
    if hp.scheduler_kwargs:
        args["lr_scheduler_kwargs"] = dict(hp.scheduler_kwargs)
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
    hp: RLHParams,
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
    kl = KLControlCallback(kl_controller)
    log = StepLog(metrics_path)
    callbacks: list[Any] = [kl, log] + ([CheckpointMarker()] if checkpoints else [])
    cls = GuardedGRPOTrainer if hp.algo == "grpo" else GuardedRLOOTrainer
    trainer = cls(
        model=model,
        reward_funcs=[reward],
        args=_rl_config(out_dir, hp, model, kl_controller.beta, checkpoints),
        train_dataset=Dataset.from_list(prompt_rows),
        processing_class=tokenizer,
        callbacks=callbacks,
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
    hp: RLHParams,
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
    resume_from = latest_complete_checkpoint(out_dir) if resume else None
    if resume_from is not None:
        kl.load(resume_from)
    if resume and metrics_path is not None:  # rows past the checkpoint (all of them without one) are redone
        trim_metrics(metrics_path, checkpoint_step(resume_from))
    result = TrainResult(status="completed", steps=0)
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except DivergedError as exc:
        result.status, result.error = "diverged", str(exc)
    result.runtime_s = time.perf_counter() - start
    result.steps = trainer.state.global_step
    result.losses = log.losses
    result.extra.update(log=log.rows, beta=float(trainer.beta), resumed_from=str(resume_from or ""))
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
