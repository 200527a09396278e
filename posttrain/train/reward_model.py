"""The external reward model of ADLF (seed 003), learned from meta_eval_score.

Shape: the base model with a one-output sequence-classification head (`score`, trained in
full through PEFT's modules_to_save) and a LoRA on every linear layer, trained with TRL's
RewardTrainer on score-difference pairs (`posttrain.tasks.conversations.score_pairs`: two
answers to the SAME prompt whose scores differ by at least `min_gap`, with margin = gap / 5
in the Bradley-Terry loss). Why pairs and not a regression on the 0-5 score: raters' absolute
scores drift between prompts, while "this answer beats that one" is what the scores say
reliably; the margin keeps how much better. Why a LoRA and not a head on frozen features:
a causal LM's last hidden state mostly encodes the next token, so a frozen-feature head
cannot see repetition or an off-topic answer; a rank-16 LoRA adds ~1% parameters.

Normalisation: raw outputs are log-odds with an arbitrary offset. `score` returns
sigmoid((raw - center) / scale), where center and scale are the mean and standard
deviation of the raw scores of the training answers, so 0.5 is an average training answer
and every value lies in (0, 1), the range of the internal reward components.

Texts are rendered the way RewardTrainer tokenizes its rows (`render_for_reward`): the chat
template over prompt + answer for conversational rows, prompt + answer + EOS for strings.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from posttrain.distributed import is_main_process, wait_for_everyone
from posttrain.errors import CheckpointError
from posttrain.models import LORA_TARGETS, DeviceSettings, device_settings, resolve
from posttrain.train.args import RewardModelArgs
from posttrain.train.loop import GuardMixin, TrainResult, run_trainer, training_callbacks
from posttrain.train.rewards import normalize_external

META_FILE = "reward_model.json"
_PAIR_COLUMNS = ("prompt", "chosen", "rejected", "margin")


class GuardedRewardTrainer(GuardMixin, RewardTrainer):
    """RewardTrainer that refuses NaN/inf updates."""


def render_for_reward(tokenizer: Any, prompt: str | list[dict], completion: str | list[dict]) -> str:
    """The text the reward model reads for one answer, exactly as RewardTrainer builds it.

    Message lists go through the chat template (prompt turns + the assistant turn);
    strings are joined and closed with the tokenizer's EOS token. Tokenize the result
    with add_special_tokens=False.
    """
    if isinstance(prompt, list) != isinstance(completion, list):
        raise ValueError("prompt and completion must both be message lists or both be strings")
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template([*prompt, *completion], tokenize=False)
    text = prompt + completion
    return text if text.endswith(tokenizer.eos_token) else text + tokenizer.eos_token


def load_reward_base(model_spec: str, settings: DeviceSettings | None = None) -> Any:
    """The base model with a fresh one-output classification head, on the chosen device."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    settings = settings or device_settings()
    # The head is new by design; transformers' "score.weight MISSING" load report would read as an error.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve(model_spec),
            num_labels=1,
            dtype=settings.dtype,
            attn_implementation=settings.attn_implementation,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.to(settings.device)


def _lora(hp: RewardModelArgs) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(LORA_TARGETS),
        modules_to_save=["score"],
        bias="none",
        task_type="SEQ_CLS",
    )


def train_reward_model(
    model_spec: str,
    tokenizer: Any,
    pairs: list[dict],
    norm_rows: Sequence[tuple[str | list[dict], str | list[dict]]],
    out_dir: Path,
    checkpoint_dir: Path,
    hp: RewardModelArgs,
    *,
    settings: DeviceSettings | None = None,
    metrics_path: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train the reward model on `pairs` (rows of `score_pairs`) and save it to `out_dir`.

    `norm_rows` are (prompt, answer) pairs from the TRAINING split whose raw scores set
    center/scale (see module doc). `out_dir` gets the PEFT adapter and `reward_model.json`
    (base model, center, scale, max_length); its presence marks the stage complete.
    HF checkpoints go to `checkpoint_dir`; with `resume` training continues from the newest
    complete one. Never raises on divergence: the result's status says "diverged".
    """
    if not pairs:
        raise ValueError("no score-difference pairs to train the reward model on (lower min_gap?)")
    settings = settings or device_settings()
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    model = load_reward_base(model_spec, settings)
    model.config.pad_token_id = tokenizer.pad_token_id
    log, callbacks = training_callbacks(metrics_path)
    trainer = GuardedRewardTrainer(
        model=model,
        args=RewardConfig(
            **hp.hf_kwargs_for(checkpoint_dir, model),
            max_length=hp.max_length,
            center_rewards_coefficient=hp.center_coefficient or None,
            dataset_num_proc=None,
        ),
        train_dataset=Dataset.from_list([{k: row[k] for k in _PAIR_COLUMNS} for row in pairs]),
        processing_class=tokenizer,
        peft_config=_lora(hp),
        callbacks=callbacks,
    )
    result = run_trainer(trainer, log, resume=resume)
    accuracies = [row["accuracy"] for row in log.rows if "accuracy" in row]
    result.extra["train_accuracy"] = accuracies[-1] if accuracies else None
    if result.status != "completed":
        return result
    peft_model = trainer.model
    rm = ExternalRewardModel(peft_model, tokenizer, max_length=hp.max_length)
    raw = rm.raw([render_for_reward(tokenizer, p, c) for p, c in norm_rows])
    center = statistics.fmean(raw) if raw else 0.0
    scale = statistics.pstdev(raw) if len(raw) > 1 else 1.0
    scale = scale if scale > 1e-6 and math.isfinite(scale) else 1.0
    meta = {"base_model": model_spec, "center": center, "scale": scale, "max_length": hp.max_length}
    if is_main_process():  # every rank computed the same center and scale; rank 0 saves them
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(str(out_dir))
        (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    wait_for_everyone()  # the other ranks load the reward model from out_dir next
    result.adapter_dir = str(out_dir)
    result.extra.update(center=center, scale=scale, pairs=len(pairs))
    return result


class ExternalRewardModel:
    """Scores answers with a trained reward model; `score` is normalised to (0, 1).

    Runs in eval mode without gradients. Texts longer than `max_length` tokens are cut
    from the LEFT, so the answer (at the end) is always what gets scored.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        center: float = 0.0,
        scale: float = 1.0,
        max_length: int = 512,
        batch_size: int = 8,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.center = float(center)
        self.scale = float(scale)
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, path: str | Path, tokenizer: Any, settings: DeviceSettings | None = None
    ) -> ExternalRewardModel:
        """Load a reward model saved by `train_reward_model` (adapter merged into its base)."""
        from peft import PeftModel

        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.exists() or not (path / "adapter_config.json").exists():
            raise CheckpointError(f"{path}: not a reward model directory (needs {META_FILE} and an adapter)")
        meta = json.loads(meta_path.read_text())
        base = load_reward_base(meta["base_model"], settings)
        base.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
        model.eval()
        return cls(
            model, tokenizer, center=meta["center"], scale=meta["scale"], max_length=meta["max_length"]
        )

    @torch.no_grad()
    def raw(self, texts: Sequence[str]) -> list[float]:
        """Unnormalised outputs (log-odds scale), one per text."""
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"
        # Batches of similar length waste little compute on padding; scores go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [0.0] * len(texts)
        try:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in chunk],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=False,
                ).to(device)
                logits = self.model(**batch).logits[:, 0].float().cpu()
                for i, value in zip(chunk, logits.tolist(), strict=True):
                    out[i] = float(value)
        finally:
            self.tokenizer.truncation_side = side
            self.model.train(was_training)
        return out

    def score(self, texts: Sequence[str]) -> list[float]:
        """sigmoid((raw - center) / scale): 0.5 = an average training answer, always in (0, 1)."""
        return normalize_external(self.raw(texts), "sigmoid", center=self.center, scale=self.scale)

    def score_completions(
        self, prompts: Sequence[str | list[dict]], completions: Sequence[str | list[dict]]
    ) -> list[float]:
        """Normalised scores of answers to prompts (TRL's prompt/completion fields as they come)."""
        texts = [render_for_reward(self.tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
        return self.score(texts)
