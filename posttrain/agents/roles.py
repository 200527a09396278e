"""The six agent roles of seed 000: their JSON replies, deterministic rules policies and prompts.

Each role has
- a pydantic reply model that keeps the seed's JSON contract and *clamps* rather than rejects
  (an out-of-range learning rate becomes the nearest allowed one). Only the role's decision key
  is required (tuner `hparams`, judge `continue`, reward-penalty `override`, SEAL expert
  `seal_epochs`, QA generator `items`, QA evaluator `scores`); a reply without it is invalid
  and the backend asks once for a repair;
- a rules policy (`rules_<role>`), deterministic, used offline and as the fallback;
- a wire JSON schema (`reply_schema`) and a compact prompt (`build_messages`) for LLM backends.

Validation context: `Reply.model_validate(obj, context=ctx)` reads `ctx["space"]` (a
`SearchSpace` dump) to clamp hyperparameters, `ctx["n"]` to cap QA items and `ctx["items"]`
to check the number of QA scores. The role contexts built by `AgentTeam` carry exactly these.

History: a list of `EpisodeSummary` (or dicts with its fields), one per finished episode.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from posttrain.config.search_space import HPARAM_NAMES, Choice, SearchSpace, as_number

Role = Literal["tuner", "judge", "reward_penalty", "seal_expert", "qa_generator", "qa_evaluator"]
ROLES: tuple[str, ...] = ("tuner", "judge", "reward_penalty", "seal_expert", "qa_generator", "qa_evaluator")

MAX_TEXT = 2000  # characters kept from any free-text field; longer LLM prose is cut, not rejected
DIVERGED_IMPROVEMENT = -1.0  # a NaN/inf eval loss counts as losing one nat (JSON and the formula stay finite)
SEAL_EPOCHS = Choice(values=[1, 2], default=1)


# ---------------------------------------------------------------- history


class EpisodeSummary(BaseModel):
    """What the agents know about one finished episode (TRAIN, then the SEAL stage on top).

    `seal_delta` is `seal_eval_loss - eval_loss of the SEAL base episode` (the best TRAIN so far,
    seed 000 §SEAL Stage), so a negative delta means SEAL helped. `qa_score` is the mean QA
    score in [0, 1]. Non-finite losses are kept (they mean the trial diverged). A nested
    `metrics` dict (the seed's / the store's shape) is read for `eval_loss` and `perplexity`.
    """

    model_config = ConfigDict(extra="ignore")

    episode: int
    hparams: dict[str, Any] = Field(default_factory=dict)
    eval_loss: float | None = None
    perplexity: float | None = None
    seal_eval_loss: float | None = None
    seal_base_episode: int | None = None
    seal_delta: float | None = None
    seal_epochs: int | None = None
    seal_mode: str | None = None
    qa_score: float | None = None
    decisions: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _lift_metrics(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("metrics"), Mapping):
            data = {**data}
            for key in ("eval_loss", "perplexity"):
                data.setdefault(key, data["metrics"].get(key))
        return data

    @property
    def loss(self) -> float | None:
        """The TRAIN eval loss when finite, else None."""
        return _finite(self.eval_loss)


def as_history(history: Sequence[EpisodeSummary | Mapping[str, Any]] | None) -> list[EpisodeSummary]:
    """Coerce dicts to `EpisodeSummary`, ordered by episode."""
    items = [h if isinstance(h, EpisodeSummary) else EpisodeSummary.model_validate(h) for h in history or []]
    return sorted(items, key=lambda h: h.episode)


def history_context(history: Sequence[EpisodeSummary | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The history as JSON-able dicts for a role context: full precision, non-finite → null
    (a null eval_loss reads back as a diverged trial)."""
    return [jsonable(h.model_dump(exclude_none=True)) for h in as_history(history)]


def _finite(value: Any) -> float | None:
    return value if isinstance(value, float | int) and math.isfinite(value) else None


def jsonable(value: Any, digits: int | None = None) -> Any:
    """`value` with non-finite floats as None (strict JSON), floats optionally rounded to
    `digits` significant digits, pydantic models dumped by alias, tuples as lists."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{digits}g}") if digits else value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, digits) for v in value]
    return value


def _best(history: list[EpisodeSummary]) -> EpisodeSummary | None:
    finite = [h for h in history if h.loss is not None]
    return min(finite, key=lambda h: (h.loss, h.episode)) if finite else None


def _space(info: ValidationInfo | None) -> SearchSpace:
    raw = (info.context or {}).get("space") if info is not None else None
    return raw if isinstance(raw, SearchSpace) else SearchSpace.model_validate(raw or {})


# ---------------------------------------------------------------- lenient field coercion


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return value[:MAX_TEXT]


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    number = as_number(value)
    if number in (0.0, 1.0):
        return bool(number)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "continue", "y"):
            return True
        if word in ("false", "no", "stop", "n"):
            return False
    raise ValueError(f"expected true or false, got {value!r}")


Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_as_bool)]
SealEpochs = Annotated[int, BeforeValidator(SEAL_EPOCHS.clamp)]


class _Reply(BaseModel):
    # LLM replies: extra keys are ignored, free text is coerced to str and cut to MAX_TEXT.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _object(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return data


# ---------------------------------------------------------------- reply models


class SealPlan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seal_epochs: SealEpochs = 1


class TunerReply(_Reply):
    """Seed §3.1: `{say, hparams, seal_plan}`; hparams are clamped into the search space."""

    say: Text = ""
    hparams: dict[str, float | int]
    seal_plan: SealPlan = Field(default_factory=SealPlan)

    @field_validator("hparams", mode="before")
    @classmethod
    def _clamp(cls, value: Any, info: ValidationInfo) -> dict[str, float | int]:
        if not isinstance(value, Mapping):
            raise ValueError("hparams must be a JSON object")
        return _space(info).clamp(value)

    @field_validator("seal_plan", mode="before")
    @classmethod
    def _plan(cls, value: Any) -> Any:
        return value if isinstance(value, Mapping | SealPlan) else {"seal_epochs": value}


class JudgeReply(_Reply):
    """Seed §3.2: `{say, continue, reason, feedback}`. Dump with `by_alias=True` to get `continue`."""

    say: Text = ""
    continue_: Flag = Field(alias="continue")
    reason: Text = ""
    feedback: Text = ""


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


class RewardPenaltyReply(_Reply):
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
        space = _space(info)
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


class SealExpertReply(_Reply):
    """Seed §3.4: `{say, seal_epochs, evaluation}`; seal_epochs snaps to 1 or 2."""

    say: Text = ""
    seal_epochs: SealEpochs
    evaluation: Text = ""


class QAItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: Annotated[str, BeforeValidator(lambda v: _text(v).strip())] = Field(min_length=1)
    expected: Annotated[str, BeforeValidator(lambda v: _text(v).strip())]


class QAGenReply(_Reply):
    """Seed §3.5 QA generator: `{items: [{prompt, expected}]}`. Malformed items are dropped;
    at most `context["n"]` are kept; none left is invalid."""

    items: list[QAItem]

    @field_validator("items", mode="before")
    @classmethod
    def _keep_valid(cls, value: Any, info: ValidationInfo) -> list[QAItem]:
        if not isinstance(value, list):
            raise ValueError("items must be a JSON array")
        kept = []
        for item in value:
            try:
                kept.append(QAItem.model_validate(item))
            except ValueError:
                continue
        if not kept:
            raise ValueError("no item has a non-empty prompt and an expected answer")
        limit = (info.context or {}).get("n")
        return kept[:limit] if isinstance(limit, int) and limit > 0 else kept


class QAEvalReply(_Reply):
    """Seed §3.5 QA evaluator: `{scores, comments}`, one score in [0, 1] per item.

    Scores above 1 but at most 10 are read as a 0–10 scale (LLMs often answer so) and divided
    by 10; then everything is clamped to [0, 1]. With `context["items"]`, fewer scores than
    items is invalid and extra scores are dropped.
    """

    scores: list[float]
    comments: list[str] = Field(default_factory=list)

    @field_validator("scores", mode="before")
    @classmethod
    def _scale(cls, value: Any, info: ValidationInfo) -> list[float]:
        if not isinstance(value, list):
            value = [value]
        numbers = []
        for v in value:
            if isinstance(v, float) and not math.isfinite(v):
                numbers.append(1.0 if v == math.inf else 0.0)  # NaN and -inf grade as 0
                continue
            n = as_number(v)
            if n is None:
                raise ValueError(f"score {v!r} is not a number")
            numbers.append(n)
        if numbers and 1.0 < max(numbers) <= 10.0:
            numbers = [n / 10.0 for n in numbers]
        numbers = [min(max(n, 0.0), 1.0) for n in numbers]
        items = (info.context or {}).get("items")
        if isinstance(items, list) and items:
            if len(numbers) < len(items):
                raise ValueError(f"expected {len(items)} scores (one per item), got {len(numbers)}")
            numbers = numbers[: len(items)]
        if not numbers:
            raise ValueError("scores must not be empty")
        return numbers

    @field_validator("comments", mode="before")
    @classmethod
    def _comments(cls, value: Any) -> list[str]:
        if value is None:
            return []
        return [_text(v) for v in value] if isinstance(value, list) else [_text(value)]

    @property
    def mean_score(self) -> float:
        return sum(self.scores) / len(self.scores)


REPLY_MODELS: dict[str, type[_Reply]] = {
    "tuner": TunerReply,
    "judge": JudgeReply,
    "reward_penalty": RewardPenaltyReply,
    "seal_expert": SealExpertReply,
    "qa_generator": QAGenReply,
    "qa_evaluator": QAEvalReply,
}


# ---------------------------------------------------------------- reward-penalty (seed §3.3)


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
    seal = _seal_improvement(last, h)
    qa = 0.0
    previous_qa = [e.qa_score for e in h[:-1] if _finite(e.qa_score) is not None]
    if qa_weight and _finite(last.qa_score) is not None and previous_qa:
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


def _seal_improvement(episode: EpisodeSummary, history: list[EpisodeSummary]) -> float:
    if episode.seal_delta is not None:
        return -episode.seal_delta if math.isfinite(episode.seal_delta) else DIVERGED_IMPROVEMENT
    if episode.seal_eval_loss is None:
        return 0.0
    if not math.isfinite(episode.seal_eval_loss):
        return DIVERGED_IMPROVEMENT
    base_index = episode.seal_base_episode if episode.seal_base_episode is not None else episode.episode
    base = next((e.loss for e in history if e.episode == base_index), None)
    return base - episode.seal_eval_loss if base is not None else 0.0


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
    say = {
        "none": "No finished episode yet: no reward, no override.",
        "positive": "Clear improvement: lr up slightly, larger batch and LoRA, less dropout and warmup.",
        "negative": "Clear regression: halve lr, more epochs and dropout, smaller batch/LoRA, more warmup.",
        "plateau": "Plateau: mild exploration, lr down 10%.",
    }[signal.regime]
    say += f" total_improvement={signal.total_improvement:+.4f}"
    return RewardPenaltyReply(say=say, reward_signal=signal, override=override)


def merge_hparams(
    tuner: Mapping[str, Any] | None, override: Mapping[str, Any] | None, space: SearchSpace
) -> dict[str, float | int]:
    """Seed 000 episode step 5: the tuner's proposal, then the reward-penalty override on top,
    then defaults for anything missing, then clamp (add `trial_id` after)."""
    merged = {**(tuner or {}), **{k: v for k, v in (override or {}).items() if v is not None}}
    return space.clamp(merged)


# ---------------------------------------------------------------- judge (seed §3.2)


def clearly_degrading(history: Sequence[EpisodeSummary | Mapping[str, Any]], rel_tol: float = 0.05) -> bool:
    """The one case where the judge may stop before `force_min_episodes` (seed line 262).

    Clear degradation: the last two TRAIN runs both diverged (non-finite eval loss), or the eval
    loss rose in each of the last two episodes and ended more than `rel_tol` (5%) above where
    it was two episodes ago (a divergence after a rise counts as a rise).
    """
    losses = [h.loss for h in as_history(history)]
    if len(losses) >= 2 and losses[-1] is None and losses[-2] is None:
        return True
    if len(losses) < 3 or losses[-3] is None:
        return False
    a, b, c = (math.inf if x is None else x for x in losses[-3:])
    return a < b < c and c > a * (1 + rel_tol)


def rules_judge(
    history: Sequence[EpisodeSummary | Mapping[str, Any]],
    force_min_episodes: int = 3,
    max_episodes: int = 4,
    patience: int = 2,
    min_rel_improvement: float = 0.001,
    degrade_tol: float = 0.05,
) -> JudgeReply:
    """Continue until `max_episodes`; after `force_min_episodes`, stop once the best eval loss
    has not improved by `min_rel_improvement` (relative) for `patience` episodes; before it,
    stop only on `clearly_degrading`."""
    h = as_history(history)
    n = len(h)
    best = _best(h)
    feedback = _judge_feedback(h, best)
    if n == 0:
        return JudgeReply(say="No episode yet.", continue_=True, reason="nothing to judge", feedback=feedback)
    if clearly_degrading(h, degrade_tol):
        reason = f"eval loss clearly degrading (> {degrade_tol:.0%} over the last 2 episodes, or diverged)"
        return JudgeReply(say="Stop: metrics degrade.", continue_=False, reason=reason, feedback=feedback)
    if n >= max_episodes:
        reason = f"budget of {max_episodes} episodes spent"
        return JudgeReply(say="Stop: budget spent.", continue_=False, reason=reason, feedback=feedback)
    if n < force_min_episodes:
        reason = f"{n} < force_min_episodes={force_min_episodes} episodes and no clear degradation"
        return JudgeReply(say="Continue.", continue_=True, reason=reason, feedback=feedback)
    before = [e.loss for e in h[:-patience] if e.loss is not None]
    recent = [e.loss for e in h[-patience:] if e.loss is not None]
    if before and n > patience and (not recent or min(recent) > min(before) * (1 - min_rel_improvement)):
        reason = f"best eval loss has not improved for {patience} episodes (plateau)"
        return JudgeReply(say="Stop: no more gain.", continue_=False, reason=reason, feedback=feedback)
    return JudgeReply(
        say="Continue: still improving.", continue_=True, reason="recent gain", feedback=feedback
    )


def enforce_min_episodes(
    reply: JudgeReply,
    history: Sequence[EpisodeSummary | Mapping[str, Any]],
    force_min_episodes: int,
    degrade_tol: float = 0.05,
) -> JudgeReply:
    """Seed line 386 for any backend: a stop before `force_min_episodes` turns into continue
    unless the metrics clearly degrade."""
    h = as_history(history)
    if reply.continue_ or len(h) >= force_min_episodes or clearly_degrading(h, degrade_tol):
        return reply
    reason = f"{reply.reason} [overridden: {len(h)} < force_min_episodes={force_min_episodes}]".strip()
    return reply.model_copy(update={"continue_": True, "reason": reason})


def _judge_feedback(h: list[EpisodeSummary], best: EpisodeSummary | None) -> str:
    if best is None:
        return "No finite eval loss yet; lower the learning rate." if h else "Start from the defaults."
    last = h[-1]
    parts = [f"best eval_loss {best.loss:.4f} at episode {best.episode} (lr={best.hparams.get('lr')})"]
    if last.loss is None:
        parts.append(f"episode {last.episode} diverged: lower lr below {last.hparams.get('lr')}")
    elif last is not best:
        parts.append(f"last {last.loss:.4f} is worse than best: move back toward the best config")
    else:
        parts.append("last episode is the best so far: keep moving in the same direction")
    return "; ".join(parts)


# ---------------------------------------------------------------- SEAL expert (seed §3.4)


def seal_effect_summary(history: Sequence[EpisodeSummary | Mapping[str, Any]]) -> str:
    """Seed episode step 3: one line on how SEAL changed the eval loss so far."""
    deltas = [(e.episode, -_seal_improvement(e, as_history(history))) for e in as_history(history)]
    deltas = [(ep, d) for ep, d in deltas if d != 0.0]
    if not deltas:
        return "SEAL has not run yet."
    helped = sum(d < 0 for _, d in deltas)
    shown = ", ".join(f"ep{ep}: {d:+.4f}" for ep, d in deltas[-4:])
    return (
        f"SEAL eval-loss delta vs its base TRAIN (negative = helped): {shown}; helped {helped}/{len(deltas)}."
    )


def rules_seal_expert(
    history: Sequence[EpisodeSummary | Mapping[str, Any]], tol: float = 0.001
) -> SealExpertReply:
    """Two SEAL epochs while the last SEAL stage lowered the loss by more than `tol`, else one."""
    h = as_history(history)
    ran = [e for e in h if e.seal_delta is not None or e.seal_eval_loss is not None]
    if not ran:
        return SealExpertReply(say="No SEAL result yet.", seal_epochs=1, evaluation="start with 1 SEAL epoch")
    last = ran[-1]
    improvement = _seal_improvement(last, h)
    if improvement > tol:
        verdict, epochs = f"SEAL helps (loss −{improvement:.4f}): refine for 2 epochs", 2
    elif improvement < -tol:
        verdict, epochs = f"SEAL hurts (loss +{-improvement:.4f}): keep it to 1 epoch", 1
    else:
        verdict, epochs = "SEAL is neutral: 1 epoch is enough", 1
    return SealExpertReply(say=verdict.split(":")[0] + ".", seal_epochs=epochs, evaluation=verdict)


# ---------------------------------------------------------------- tuner (seed §3.1)

# Local search around the best configuration so far. The order encodes a prior for short LoRA
# budgets: the learning rate matters most, then more optimizer steps (epochs up, batch down),
# then LoRA scale; the reverse moves come later so a failed direction is tried the other way.
_MOVES: tuple[tuple[str, int], ...] = (
    ("lr", +1),
    ("lr", -1),
    ("epochs", +1),
    ("batch_size", -1),
    ("lora_alpha", +1),
    ("lora_r", +1),
    ("lora_dropout", -1),
    ("warmup_ratio", -1),
    ("batch_size", +1),
    ("lora_alpha", -1),
    ("lora_r", -1),
    ("epochs", -1),
    ("lora_dropout", +1),
    ("warmup_ratio", +1),
)
_LR_FACTOR = 3.0  # first lr step from a center; it shrinks to its square root each time it is spent


def rules_tuner(
    history: Sequence[EpisodeSummary | Mapping[str, Any]],
    space: SearchSpace | None = None,
    seed: int = 0,
    judge_feedback: str = "",
    reward: Mapping[str, Any] | None = None,
) -> TunerReply:
    """Deterministic local search around the best TRAIN so far (pattern search with momentum).

    - no history → the space's defaults;
    - the last trial beat the previous best → repeat the same move (momentum);
    - otherwise the next untried move from the best config in `_MOVES`; once every move has
      been tried around it, the numeric steps halve (lr: ×3, ×√3, ×3^¼ …) so the search narrows;
    - every trial diverged → lr three times below the lowest tried;
    - all moves tried → a seeded random perturbation around the best.
    Judge feedback and the reward signal are already reflected in the history it reads
    (the best config, the last move's outcome), so they only shape the `say` text.
    """
    space = space or SearchSpace()
    h = as_history(history)
    seal_plan = SealPlan(seal_epochs=rules_seal_expert(h).seal_epochs)
    if not h:
        return TunerReply(
            say="Episode 0: start from the defaults.", hparams=space.defaults(), seal_plan=seal_plan
        )
    tried = [space.clamp(e.hparams) for e in h]
    best = _best(h)
    if best is None:
        lowest = min(t["lr"] for t in tried)
        proposal = {**space.clamp(h[-1].hparams), "lr": lowest / _LR_FACTOR}
        say = "Every trial diverged: lower the learning rate."
        return TunerReply(say=say, hparams=space.clamp(proposal), seal_plan=seal_plan)
    center = space.clamp(best.hparams)
    proposal, why = _momentum(h, tried, center, space)
    if proposal is None:
        proposal, why = _next_move(h, tried, center, space)
    if proposal is None:
        proposal, why = (
            _perturb(center, space, random.Random(seed * 1_000_003 + len(h))),
            "random perturbation",
        )
    reward = reward or {}
    regime = reward.get("regime") or (reward.get("reward_signal") or {}).get("regime", "")
    say = f"Around best episode {best.episode} (eval_loss {best.loss:.4f}): {why}."
    if regime:
        say += f" Reward regime: {regime}."
    return TunerReply(say=say, hparams=proposal, seal_plan=seal_plan)


def _momentum(
    h: list[EpisodeSummary], tried: list[dict], center: dict, space: SearchSpace
) -> tuple[dict | None, str]:
    if len(h) < 2 or h[-1].loss is None or _best(h) is not h[-1]:
        return None, ""
    previous = _best(h[:-1])
    if previous is None:
        return None, ""
    before = space.clamp(previous.hparams)
    proposal = dict(center)
    for name in HPARAM_NAMES:
        p, old, new = space.param(name), before[name], center[name]
        if old == new:
            continue
        if name == "lr":
            proposal[name] = p.clamp(new * new / old)
        elif isinstance(p, Choice):
            proposal[name] = p.step(new, 1 if new > old else -1)
        else:
            proposal[name] = p.clamp(new + (new - old))
    proposal = space.clamp(proposal)
    if proposal == center or _seen(proposal, tried):
        return None, ""
    return proposal, "the last move paid off, repeat it"


def _next_move(
    h: list[EpisodeSummary], tried: list[dict], center: dict, space: SearchSpace
) -> tuple[dict | None, str]:
    # Pattern search: pass p walks every move with steps shrunk by 2^-p (lr: ×3, ×√3, ×3^¼ …);
    # categorical moves are the same in every pass, so later passes only refine the numbers.
    # A move that already failed (same direction, at least this big, from an earlier center)
    # waits until every fresh move has been tried.
    failed = _failed_moves(h, space)
    for retry_failed in (False, True):
        for p in range(6):
            for name, direction in _MOVES:
                proposal = _move(center, name, direction, p, space)
                size = _move_size(space, name, center[name], proposal[name])
                if not retry_failed and size >= failed.get((name, direction), math.inf) - 1e-12:
                    continue
                if proposal != center and not _seen(proposal, tried):
                    return proposal, f"try {name} {'up' if direction > 0 else 'down'}"
    return None, ""


def _move(center: dict, name: str, direction: int, p: int, space: SearchSpace) -> dict:
    param = space.param(name)
    proposal = dict(center)
    if name == "lr":
        proposal[name] = param.clamp(center[name] * (_LR_FACTOR ** (0.5**p)) ** direction)
    elif isinstance(param, Choice):
        proposal[name] = param.step(center[name], direction)
    else:
        proposal[name] = param.clamp(center[name] + direction * (param.high - param.low) / 4 * 0.5**p)
    return proposal


def _move_size(space: SearchSpace, name: str, old: float, new: float) -> float:
    param = space.param(name)
    if name == "lr":
        return abs(math.log(new / old))
    if isinstance(param, Choice):
        return abs(param.values.index(new) - param.values.index(old))
    return abs(new - old)


def _failed_moves(h: list[EpisodeSummary], space: SearchSpace) -> dict[tuple[str, int], float]:
    """(name, direction) → the smallest single-key move from the best-so-far that did not beat it."""
    failed: dict[tuple[str, int], float] = {}
    for i in range(1, len(h)):
        before = _best(h[:i])
        if before is None or (h[i].loss is not None and h[i].loss < before.loss):
            continue
        a, b = space.clamp(before.hparams), space.clamp(h[i].hparams)
        changed = [k for k in HPARAM_NAMES if a[k] != b[k]]
        if len(changed) == 1:
            k = changed[0]
            key = (k, 1 if b[k] > a[k] else -1)
            failed[key] = min(failed.get(key, math.inf), _move_size(space, k, a[k], b[k]))
    return failed


def _perturb(center: dict, space: SearchSpace, rng: random.Random) -> dict:
    proposal = dict(center)
    proposal["lr"] = center["lr"] * math.exp(rng.gauss(0.0, 0.3))
    name = rng.choice([n for n in HPARAM_NAMES if n != "lr"])
    proposal[name] = space.param(name).sample(rng)
    return space.clamp(proposal)


def _seen(proposal: dict, tried: list[dict]) -> bool:
    # lr compared at 3 significant digits: a 0.1% lr change is not a new experiment.
    def key(d: dict) -> tuple:
        return tuple(float(f"{d[k]:.3g}") if k == "lr" else d[k] for k in HPARAM_NAMES)

    return key(proposal) in {key(t) for t in tried}


# ---------------------------------------------------------------- QA (seed §3.5)

_PROMPT_KEYS = (
    ("instruction", "input", "output"),
    ("prompt", None, "completion"),
    ("prompt", None, "expected"),
)


def rules_qa_generator(val_rows: Sequence[Mapping[str, Any]], n: int = 4) -> QAGenReply:
    """`n` rows spread evenly over the validation data, their prompt and reference answer.
    Reads Alpaca rows (instruction/input/output) and prompt/completion or prompt/expected rows."""
    usable = [item for row in val_rows if (item := _qa_item(row)) is not None]
    if not usable:
        return QAGenReply.model_construct(items=[])
    n = max(1, min(n, len(usable)))
    picks = [usable[i * len(usable) // n] for i in range(n)]
    return QAGenReply(items=picks)


def _qa_item(row: Mapping[str, Any]) -> QAItem | None:
    for prompt_key, extra_key, answer_key in _PROMPT_KEYS:
        prompt, answer = row.get(prompt_key), row.get(answer_key)
        if isinstance(prompt, str) and prompt.strip() and isinstance(answer, str):
            extra = row.get(extra_key) if extra_key else None
            text = (
                f"{prompt.strip()}\n\n{extra.strip()}" if isinstance(extra, str) and extra.strip() else prompt
            )
            return QAItem(prompt=text, expected=answer)
    return None


def _tokens(text: str) -> list[str]:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).split()


def token_f1(answer: str, expected: str) -> float:
    """SQuAD-style token F1 after lowercasing and removing punctuation."""
    a, e = _tokens(answer), _tokens(expected)
    if not a or not e:
        return float(a == e)
    common = sum(min(a.count(t), e.count(t)) for t in set(e))
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(e)
    return 2 * precision * recall / (precision + recall)


def rules_qa_evaluator(items: Sequence[QAItem | Mapping[str, Any]], answers: Sequence[str]) -> QAEvalReply:
    """Score 1.0 when the normalized expected answer is contained in the answer, else token F1."""
    scores, comments = [], []
    for item, answer in zip(items, answers, strict=False):
        expected = item.expected if isinstance(item, QAItem) else str(item.get("expected", ""))
        norm_e, norm_a = " ".join(_tokens(expected)), " ".join(_tokens(answer or ""))
        if norm_e and norm_e in norm_a:
            scores.append(1.0)
            comments.append("contains the expected answer")
        else:
            f1 = token_f1(answer or "", expected)
            scores.append(round(f1, 4))
            comments.append(f"token F1 {f1:.2f}")
    if not scores:
        return QAEvalReply.model_construct(scores=[0.0], comments=["no answers"])
    return QAEvalReply(scores=scores, comments=comments)


# ---------------------------------------------------------------- dispatch + prompts


def rules_answer(role: str, context: Mapping[str, Any]) -> BaseModel:
    """The rules policy of `role`, fed from the JSON context `AgentTeam` builds for it."""
    space = SearchSpace.model_validate(context.get("space") or {})
    history = context.get("history") or []
    if role == "tuner":
        return rules_tuner(
            history,
            space,
            context.get("seed", 0),
            context.get("judge_feedback", ""),
            context.get("reward_feedback"),
        )
    if role == "judge":
        return rules_judge(
            history,
            context.get("force_min_episodes", 3),
            context.get("max_episodes", 4),
            context.get("patience", 2),
            degrade_tol=context.get("degrade_tol", 0.05),
        )
    if role == "reward_penalty":
        return rules_reward_penalty(
            history, space, context.get("qa_weight", 0.0), context.get("plateau_tol", 0.01)
        )
    if role == "seal_expert":
        return rules_seal_expert(history)
    if role == "qa_generator":
        return rules_qa_generator(context.get("val_rows") or [], context.get("n", 4))
    if role == "qa_evaluator":
        return rules_qa_evaluator(context.get("items") or [], context.get("answers") or [])
    raise ValueError(f"unknown agent role {role!r} (known: {', '.join(ROLES)})")


def _hparams_schema(space: SearchSpace, nullable: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name in HPARAM_NAMES:
        p = space.param(name)
        if isinstance(p, Choice):
            props[name] = {"type": "integer", "enum": list(p.values)}
        else:
            props[name] = {"type": "number", "minimum": p.low, "maximum": p.high}
        if nullable:
            props[name] = {"anyOf": [props[name], {"type": "null"}]}
    return _obj(props)


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    # Every key required and nothing else allowed: what OpenAI's strict mode and llguidance need.
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def reply_schema(role: str, context: Mapping[str, Any] | None = None, max_text: int = 400) -> dict[str, Any]:
    """The wire JSON schema of `role`'s reply: the seed's keys, bounded strings and arrays (so
    constrained decoding always terminates), the space's ranges. Used in prompts, as OpenAI's
    `response_format` and as the llguidance grammar."""
    context = context or {}
    space = SearchSpace.model_validate(context.get("space") or {})
    text = {"type": "string", "maxLength": max_text}
    number = {"type": "number", "minimum": -100.0, "maximum": 100.0}
    if role == "tuner":
        plan = _obj({"seal_epochs": {"type": "integer", "enum": [1, 2]}})
        return _obj({"say": text, "hparams": _hparams_schema(space), "seal_plan": plan})
    if role == "judge":
        return _obj({"say": text, "continue": {"type": "boolean"}, "reason": text, "feedback": text})
    if role == "reward_penalty":
        signal = _obj(
            {
                k: number
                for k in ("train_improvement", "seal_improvement", "qa_improvement", "total_improvement")
            }
            | {k: {"type": "number", "minimum": 0.0, "maximum": 100.0} for k in ("reward", "penalty")}
            | {"regime": {"type": "string", "enum": ["none", "positive", "negative", "plateau"]}}
        )
        return _obj({"say": text, "reward_signal": signal, "override": _hparams_schema(space, nullable=True)})
    if role == "seal_expert":
        return _obj({"say": text, "seal_epochs": {"type": "integer", "enum": [1, 2]}, "evaluation": text})
    if role == "qa_generator":
        n = max(1, int(context.get("n", 4)))
        item = _obj({"prompt": text, "expected": text})
        return _obj({"items": {"type": "array", "items": item, "minItems": 1, "maxItems": n}})
    if role == "qa_evaluator":
        n = max(1, len(context.get("items") or []) or 1)
        score = {"type": "number", "minimum": 0.0, "maximum": 1.0}
        return _obj(
            {
                "scores": {"type": "array", "items": score, "minItems": n, "maxItems": n},
                "comments": {"type": "array", "items": text, "maxItems": n},
            }
        )
    raise ValueError(f"unknown agent role {role!r} (known: {', '.join(ROLES)})")


# Adapted from seed 000 §3 (compact: small models read these too).
SYSTEM_PROMPTS: dict[str, str] = {
    "tuner": (
        "You are the lead ML engineer of a team fine-tuning a language model with LoRA in episodes. "
        "Read the history (hyperparameters and eval_loss per episode, lower is better), the judge's "
        "feedback, the reward-penalty signal and the SEAL summary, and propose the next hyperparameters "
        "inside the search space, plus how many SEAL refinement epochs (1 or 2) to plan."
    ),
    "judge": (
        "You are the judge of a LoRA fine-tuning run. Look at the trend of eval_loss and perplexity and "
        "decide whether another episode is worth it. You may not stop before force_min_episodes unless "
        "the metrics clearly degrade. Give actionable feedback for the tuner and the SEAL expert."
    ),
    "reward_penalty": (
        "You are the reward-penalty agent. reward_signal is already computed (total = train_improvement "
        "+ 0.5*seal_improvement; reward = max(total,0); penalty = max(-total,0)); copy it. Propose "
        "overrides on the last hyperparameters: if clearly positive raise lr slightly, larger batch, less "
        "dropout, larger LoRA r/alpha, less warmup; if clearly negative halve lr, more epochs and dropout, "
        "smaller batch and LoRA, more warmup; on a plateau decrease lr a little. null = no override."
    ),
    "seal_expert": (
        "You are the SEAL expert. SEAL refines the best TRAIN configuration for 1 or 2 more epochs. "
        "Decide seal_epochs for the next SEAL stage from whether SEAL helped (negative seal_delta), "
        "hurt or was neutral, and explain. You do not change TRAIN hyperparameters."
    ),
    "qa_generator": (
        "You write evaluation questions for a fine-tuned model. From the validation examples, write "
        "short prompts and the expected answers (at most n items)."
    ),
    "qa_evaluator": (
        "You grade a model's answers against the expected answers. Give one score in [0, 1] per item "
        "(1 = fully correct) and a short comment per item."
    ),
}


def build_messages(role: str, context: Mapping[str, Any], max_text: int = 400) -> list[dict[str, str]]:
    """System + user chat messages for an LLM backend: the role's prompt, the reply schema, and
    the role's context as JSON (internal keys such as the RNG seed left out)."""
    if role not in SYSTEM_PROMPTS:
        raise ValueError(f"unknown agent role {role!r} (known: {', '.join(ROLES)})")
    schema = json.dumps(reply_schema(role, context, max_text), separators=(",", ":"))
    system = f"{SYSTEM_PROMPTS[role]}\nReply with one JSON object only, matching this JSON schema:\n{schema}"
    shown = {
        k: v for k, v in context.items() if k not in ("seed", "space") or role == "tuner" and k == "space"
    }
    user = json.dumps(jsonable(shown, digits=4), separators=(",", ":"), default=str)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
