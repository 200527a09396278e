"""The reward-penalty agent (seed 000 §3.3): the improvement signal and the hyperparameter
overrides it implies, merged over the tuner's proposal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from posttrain.agents.history import (
    DIVERGED_IMPROVEMENT,
    EpisodeSummary,
    as_history,
    finite,
    seal_improvement,
)
from posttrain.agents.roles.base import (
    Reply,
    Text,
    change_list,
    context_space,
    hparams_schema,
    json_object,
    validation_space,
)
from posttrain.config.search_space import HPARAM_NAMES, SearchSpace, as_number

SYSTEM_PROMPT = (
    "You are the reward-penalty agent. reward_signal is already computed (total = train_improvement "
    "+ 0.5*seal_improvement; reward = max(total,0); penalty = max(-total,0)); copy it. Propose "
    "overrides on the last hyperparameters: if clearly positive raise lr slightly, larger batch, less "
    "dropout, larger LoRA r/alpha, less warmup; if clearly negative halve lr, more epochs and dropout, "
    "smaller batch and LoRA, more warmup; on a plateau decrease lr a little. null = no override."
)


class RewardSignal(BaseModel):
    """Seed §3.3's numbers. `regime` names which override rule fired; `qa_improvement` is our
    QA term (0 unless a QA weight is set)."""

    model_config = ConfigDict(extra="ignore")

    train_improvement: float = 0.0
    seal_improvement: float = 0.0
    qa_improvement: float = 0.0
    total_improvement: float = 0.0
    reward: float = 0.0
    penalty: float = 0.0
    regime: Literal["none", "positive", "negative", "plateau"] = "none"

    @field_validator(
        "train_improvement", "seal_improvement", "qa_improvement", "total_improvement", mode="before"
    )
    @classmethod
    def _finite_number(cls, value: Any) -> float:
        return as_number(value) or 0.0

    @field_validator("reward", "penalty", mode="before")
    @classmethod
    def _non_negative(cls, value: Any) -> float:
        return max(as_number(value) or 0.0, 0.0)

    @field_validator("regime", mode="before")
    @classmethod
    def _regime(cls, value: Any) -> str:
        return value if value in ("none", "positive", "negative", "plateau") else "none"


class RewardPenaltyReply(Reply):
    """Seed §3.3: `{say, reward_signal, override}`. The override holds only the keys it sets,
    each clamped into the space (null entries mean "no override" and are dropped)."""

    say: Text = ""
    reward_signal: RewardSignal = Field(default_factory=RewardSignal)
    override: dict[str, float | int]

    @field_validator("reward_signal", mode="before")
    @classmethod
    def _signal(cls, value: Any) -> Any:
        return value if isinstance(value, Mapping | RewardSignal) else {}

    @field_validator("override", mode="before")
    @classmethod
    def _clamp(cls, value: Any, info: ValidationInfo) -> dict[str, float | int]:
        if not isinstance(value, Mapping):
            raise ValueError("override must be a JSON object")
        space = validation_space(info)
        return {k: space.param(k).clamp(v) for k, v in value.items() if k in HPARAM_NAMES and v is not None}

    @property
    def reward(self) -> float:
        return self.reward_signal.reward

    @property
    def penalty(self) -> float:
        return self.reward_signal.penalty

    @property
    def total(self) -> float:
        return self.reward_signal.total_improvement


def reward_signal(
    history: Sequence[EpisodeSummary | Mapping[str, Any]],
    qa_weight: float = 0.0,
    plateau_tol: float = 0.01,
) -> RewardSignal:
    """Seed 000 lines 273–283, exactly: train_improvement = previous TRAIN eval_loss − last TRAIN
    eval_loss; seal_improvement = SEAL's base TRAIN eval_loss − SEAL eval_loss (= −seal_delta);
    total = train + 0.5·seal; reward = max(total, 0); penalty = max(−total, 0).

    Ours on top: `qa_weight`·(last qa_score − previous qa_score) is added to total (0 = the
    seed). A non-finite loss counts as DIVERGED_IMPROVEMENT. The regime (which override rule
    fires) is positive when total > plateau_tol, negative when total < −plateau_tol, else
    plateau; the seed gives no number for "clearly", so `plateau_tol` is in loss units (nats).
    "none" (no override) when nothing could be compared: no history, or one TRAIN without SEAL.
    """
    h = as_history(history)
    if not h:
        return RewardSignal()
    last = h[-1]
    earlier = [e.loss for e in h[:-1] if e.loss is not None]
    # Against the previous TRAIN; if that one diverged, the most recent finite one before it.
    train = earlier[-1] - last.loss if earlier and last.loss is not None else 0.0
    if last.loss is None:
        train = DIVERGED_IMPROVEMENT
    seal = seal_improvement(last, h)
    qa = 0.0
    previous_qa = [e.qa_score for e in h[:-1] if finite(e.qa_score) is not None]
    if qa_weight and finite(last.qa_score) is not None and previous_qa:
        qa = last.qa_score - previous_qa[-1]
    total = train + 0.5 * seal + qa_weight * qa
    regime = "positive" if total > plateau_tol else "negative" if total < -plateau_tol else "plateau"
    compared = earlier or last.loss is None or last.seal_delta is not None or last.seal_eval_loss is not None
    if not compared:
        regime = "none"  # one TRAIN, no SEAL: nothing to compare, so no override (not a plateau)
    return RewardSignal(
        train_improvement=train,
        seal_improvement=seal,
        qa_improvement=qa,
        total_improvement=total,
        reward=max(total, 0.0),
        penalty=max(-total, 0.0),
        regime=regime,
    )


def reward_overrides(regime: str, base: Mapping[str, Any], space: SearchSpace) -> dict[str, float | int]:
    """Seed 000 lines 297–311 ("Example behaviour"), applied to the last TRAIN's hparams.
    The seed gives directions, not sizes; ours: "slightly" = ×1.25, dropout/warmup ±0.05,
    categorical values one step, "small decrease" = ×0.9."""
    h = space.clamp(base)
    if regime == "positive":  # lines 297-302
        out = {
            "lr": h["lr"] * 1.25,
            "batch_size": space.batch_size.step(h["batch_size"], +1),
            "lora_dropout": h["lora_dropout"] - 0.05,
            "lora_r": space.lora_r.step(h["lora_r"], +1),
            "lora_alpha": space.lora_alpha.step(h["lora_alpha"], +1),
            "warmup_ratio": h["warmup_ratio"] - 0.05,
        }
    elif regime == "negative":  # lines 303-309
        out = {
            "lr": h["lr"] * 0.5,
            "epochs": space.epochs.step(h["epochs"], +1),
            "lora_dropout": h["lora_dropout"] + 0.05,
            "batch_size": space.batch_size.step(h["batch_size"], -1),
            "lora_r": space.lora_r.step(h["lora_r"], -1),
            "lora_alpha": space.lora_alpha.step(h["lora_alpha"], -1),
            "warmup_ratio": h["warmup_ratio"] + 0.05,
        }
    elif regime == "plateau":  # lines 310-311
        out = {"lr": h["lr"] * 0.9}
    else:
        return {}
    return {k: space.param(k).clamp(v) for k, v in out.items()}


def rules_reward_penalty(
    history: Sequence[EpisodeSummary | Mapping[str, Any]],
    space: SearchSpace | None = None,
    qa_weight: float = 0.0,
    plateau_tol: float = 0.01,
) -> RewardPenaltyReply:
    """The seed's handcrafted reward-penalty agent: formula + regime overrides."""
    space = space or SearchSpace()
    h = as_history(history)
    signal = reward_signal(h, qa_weight, plateau_tol)
    override = reward_overrides(signal.regime, h[-1].hparams, space) if h else {}
    say = _say(signal, space.clamp(h[-1].hparams) if h else {}, override, len(h))
    # Validated against the run's space: a bare RewardPenaltyReply(...) clamps to the default space.
    fields = {"say": say, "reward_signal": signal, "override": override}
    return RewardPenaltyReply.model_validate(fields, context={"space": space})


_REGIME_WORDS = {
    "positive": "Clear improvement",
    "negative": "Clear regression",
    "plateau": "Plateau",
}


def _say(signal: RewardSignal, base: Mapping[str, Any], override: Mapping[str, Any], n: int) -> str:
    """The message, written from the override actually returned: every key it sets, against the
    last episode's value, so "larger batch" is never said of a batch that stays put."""
    if signal.regime == "none":
        if n == 0:
            return "No finished episode yet: no reward, no override."
        return "One TRAIN and no SEAL result: nothing to compare, no override."
    say = f"{_REGIME_WORDS[signal.regime]} (total_improvement {signal.total_improvement:+.4f})"
    if not override:
        return f"{say}: no override."
    return f"{say}: override of the last episode's hparams: {change_list(base, override)}."


def merge_hparams(
    tuner: Mapping[str, Any] | None, override: Mapping[str, Any] | None, space: SearchSpace
) -> dict[str, float | int]:
    """Seed 000 episode step 5: the tuner's proposal, then the reward-penalty override on top,
    then defaults for anything missing, then clamp (add `trial_id` after)."""
    merged = {**(tuner or {}), **{k: v for k, v in (override or {}).items() if v is not None}}
    return space.clamp(merged)


def answer(context: Mapping[str, Any]) -> RewardPenaltyReply:
    """The rules policy fed from the role context `AgentTeam` builds."""
    return rules_reward_penalty(
        context.get("history") or [],
        context_space(context),
        context.get("qa_weight", 0.0),
        context.get("plateau_tol", 0.01),
    )


def schema(context: Mapping[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """The wire schema of the reply; `text` is the bounded string schema for free text."""
    number = {"type": "number", "minimum": -100.0, "maximum": 100.0}
    signal = json_object(
        {k: number for k in ("train_improvement", "seal_improvement", "qa_improvement", "total_improvement")}
        | {k: {"type": "number", "minimum": 0.0, "maximum": 100.0} for k in ("reward", "penalty")}
        | {"regime": {"type": "string", "enum": ["none", "positive", "negative", "plateau"]}}
    )
    override = hparams_schema(context_space(context), nullable=True)
    return json_object({"say": text, "reward_signal": signal, "override": override})
