"""`posttrain seal` config (seed 001): the shared sections plus the inner update and ReST-EM.

`inner` is the update that applies one self-edit (its learning_rate and lora, the paper's
r=32, alpha=64, lr 1e-3); `restem` is the generator's M-step with its own. Seed 001's flat
names (`model_name`, `learning_rate`, `lora_r`, `restem.lora_r`, ...) are aliases in SEAL_ALIASES.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from posttrain.config.aliases import Alias, rename_aliases
from posttrain.config.constants import LORA_TARGETS
from posttrain.config.sections import (
    ExecutorSettings,
    LoraSettings,
    ModelSettings,
    RunSettings,
    SchedulerName,
    Strict,
    TargetModules,
)


class SEALInnerLora(LoraSettings):
    r: int = Field(32, ge=1, le=1024, description="Inner LoRA rank.")
    alpha: int = Field(64, ge=1, description="Inner LoRA alpha.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Inner LoRA dropout.")


class SEALGeneratorLora(Strict):
    """The generator adapter trains without dropout, so there is no dropout key."""

    r: int = Field(16, ge=1, le=1024, description="Generator LoRA rank.")
    alpha: int = Field(32, ge=1, description="Generator LoRA alpha.")
    target_modules: TargetModules = Field(
        default_factory=lambda: list(LORA_TARGETS), description="Modules the generator adapts."
    )


class SEALInnerSettings(Strict):
    learning_rate: float = Field(
        1e-3, gt=0.0, description="Inner update learning rate (ARC self-edits set their own)."
    )
    epochs: float = Field(
        10.0, gt=0.0, description="Passes over a self-edit's rows per inner update (paper: 10)."
    )
    batch_size: int = Field(1, ge=1, description="Rows per inner step (paper: 1).")
    runs: int = Field(
        3,
        ge=1,
        description="Inner updates per self-edit, each with its own seed; score = their mean (paper: 3).",
    )
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Share of inner steps warming up the LR.")
    scheduler: SchedulerName = Field("linear", description="HF scheduler name of the inner update.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping of the inner update.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay of the inner update.")
    max_length: int = Field(
        512, ge=16, description="Tokens per inner training row (longer ones are truncated)."
    )
    lora: SEALInnerLora = Field(default_factory=SEALInnerLora, description="LoRA of the inner update.")
    batch_updates: int = Field(
        1,
        ge=1,
        description="Inner updates (self-edits x runs) trained together in one batched pass, one "
        "adapter each, every one equal to its update alone (train/multi_lora.py); 1 = one at a "
        "time. Needs lora.dropout 0.",
    )

    @model_validator(mode="after")
    def _batching_needs_no_dropout(self) -> SEALInnerSettings:
        if self.batch_updates > 1 and self.lora.dropout > 0:
            raise ValueError(
                f"inner.batch_updates={self.batch_updates} needs inner.lora.dropout=0 (got "
                f"{self.lora.dropout}): dropout masks of a batch cannot equal those of separate runs; "
                "set inner.batch_updates=1 or inner.lora.dropout=0"
            )
        return self


class SEALGenerationSettings(Strict):
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature of self-edits.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling of self-edits.")
    max_new_tokens: int = Field(256, ge=1, description="Tokens per self-edit.")
    batch_size: int = Field(8, ge=1, description="Contexts per batched generate call (each gives k samples).")


class SEALReSTEMSettings(Strict):
    keep: Literal["all_positive", "top1"] = Field(
        "top1", description="Keep every rewarded self-edit, or the best one per context (paper, knowledge)."
    )
    min_gain: float = Field(0.0, description="A kept self-edit must improve the score by at least this much.")
    max_per_context: int | None = Field(None, ge=1, description="Cap on kept self-edits per context.")
    restart_from_base: bool = Field(
        True, description="Each M-step fine-tunes the base generator (ReST-EM); false continues the last one."
    )
    contexts_per_iteration: int | None = Field(
        None, ge=1, description="Training contexts sampled per outer iteration (None = all of them)."
    )
    learning_rate: float = Field(3e-4, gt=0.0, description="M-step learning rate (generator LoRA).")
    epochs: float = Field(2.0, gt=0.0, description="M-step passes over the kept self-edits.")
    batch_size: int = Field(4, ge=1, description="M-step examples per step.")
    max_length: int = Field(1024, ge=16, description="Tokens per M-step row (prompt + self-edit).")
    lora: SEALGeneratorLora = Field(
        default_factory=SEALGeneratorLora, description="LoRA of the self-edit generator."
    )


class SEALRewardSettings(Strict):
    kind: Literal["auto", "binary", "continuous", "success"] = Field(
        "auto",
        description="binary: 1 if the update beats the base by > margin; continuous: the delta; success: 1 "
        "if the score after reaches success_at; auto: the domain's (knowledge binary, ARC success).",
    )
    margin: float = Field(0.0, ge=0.0, description="binary: the improvement must exceed this.")
    success_at: float = Field(1.0, description="success: the score that counts as solved.")


class SEALEvalSettings(Strict):
    enabled: bool = Field(True, description="Build the held-out results table after training.")
    samples: int = Field(1, ge=1, description="Self-edits sampled per held-out context and generator.")
    continued_pretraining: bool = Field(
        True, description="Also pool every held-out context's rows into one update (domains that support it)."
    )
    reference_rows: bool = Field(True, description="Domain reference rows (passage_only, ARC oracle).")


PRESET_ALIASES = {"test": "seal_test"}  # `test.yaml` is the SFT smoke preset


def seal_preset(name: str | None) -> str | None:
    """`--preset test` means the SEAL smoke preset `seal_test` here."""
    return PRESET_ALIASES.get(name, name) if name else name


# Seed 001's flat spellings -> today's key paths.
SEAL_ALIASES: dict[str, Alias] = {
    "model_name": "model.name",
    "device": "model.device",
    "dtype": "model.dtype",
    "learning_rate": "inner.learning_rate",
    "lora_r": "inner.lora.r",
    "lora_alpha": "inner.lora.alpha",
    "lora_dropout": "inner.lora.dropout",
    "restem.lora_r": "restem.lora.r",
    "restem.lora_alpha": "restem.lora.alpha",
}


class SEALConfig(Strict):
    """`posttrain seal`: SEAL self-edits (seed 001) with a ReST-EM outer loop."""

    model: ModelSettings = Field(default_factory=ModelSettings, description="Base model and placement.")
    max_outer_iterations: int = Field(2, ge=0, description="ReST-EM rounds (E-step + M-step each).")
    samples_per_iteration: int = Field(
        5, ge=1, description="Self-edits sampled per context per round (paper: 5)."
    )
    domain: str = Field(
        "knowledge_incorporation",
        description="knowledge_incorporation, few_shot_learning (ARC), or 'pkg.module:Class' (a BaseDomain).",
    )
    data_config: dict[str, Any] = Field(
        default_factory=dict,
        description="The domain's data options (see docs/seal.md); unknown keys are errors.",
    )
    seed: int = Field(
        0, description="Master seed: data, split, sampling, inner and M-step seeds derive from it."
    )
    inner: SEALInnerSettings = Field(default_factory=SEALInnerSettings, description="The inner update.")
    generation: SEALGenerationSettings = Field(
        default_factory=SEALGenerationSettings, description="Sampling of self-edits."
    )
    restem: SEALReSTEMSettings = Field(default_factory=SEALReSTEMSettings, description="ReST-EM outer loop.")
    reward: SEALRewardSettings = Field(
        default_factory=SEALRewardSettings, description="Reward of a self-edit."
    )
    evaluation: SEALEvalSettings = Field(
        default_factory=SEALEvalSettings, description="Held-out results table."
    )
    executor: ExecutorSettings = Field(
        default_factory=ExecutorSettings, description="Where the E-step's inner updates run."
    )
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")

    @model_validator(mode="before")
    @classmethod
    def _seed_spellings(cls, data: Any) -> Any:
        return rename_aliases(data, SEAL_ALIASES)
