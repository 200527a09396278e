"""The tuner (seed 000 §3.1): the next episode's hyperparameters and its SEAL plan.

Its rules policy is a deterministic pattern search with momentum around the best TRAIN so far.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from posttrain.agents.history import EpisodeSummary, as_history, best_episode
from posttrain.agents.roles.base import (
    Reply,
    Text,
    change_list,
    context_space,
    hparam_text,
    hparams_schema,
    json_object,
    trend,
    validation_space,
)
from posttrain.agents.roles.seal_expert import SealPlan, rules_seal_expert
from posttrain.config.search_space import HPARAM_NAMES, Choice, SearchSpace

SYSTEM_PROMPT = (
    "You are the lead ML engineer of a team fine-tuning a language model with LoRA in episodes. "
    "Read the history (hyperparameters and eval_loss per episode, lower is better), the judge's "
    "feedback, the reward-penalty signal and the SEAL summary, and propose the next hyperparameters "
    "inside the search space, plus how many SEAL refinement epochs (1 or 2) to plan."
)

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


class TunerReply(Reply):
    """Seed §3.1: `{say, hparams, seal_plan}`; hparams are clamped into the search space."""

    say: Text = ""
    hparams: dict[str, float | int]
    seal_plan: SealPlan = Field(default_factory=SealPlan)

    @field_validator("hparams", mode="before")
    @classmethod
    def _clamp(cls, value: Any, info: ValidationInfo) -> dict[str, float | int]:
        if not isinstance(value, Mapping):
            raise ValueError("hparams must be a JSON object")
        return validation_space(info).clamp(value)

    @field_validator("seal_plan", mode="before")
    @classmethod
    def _plan(cls, value: Any) -> Any:
        return value if isinstance(value, Mapping | SealPlan) else {"seal_epochs": value}


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
        say = "Episode 0: start from the defaults."
        return _reply(space, say=say, hparams=space.defaults(), seal_plan=seal_plan)
    tried = [space.clamp(e.hparams) for e in h]
    best = best_episode(h)
    if best is None:
        lowest = min(t["lr"] for t in tried)
        proposal = {**space.clamp(h[-1].hparams), "lr": lowest / _LR_FACTOR}
        say = f"Every trial diverged: lower the learning rate to {hparam_text('lr', lowest / _LR_FACTOR)}."
        return _reply(space, say=say, hparams=space.clamp(proposal), seal_plan=seal_plan)
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
    moved = {k: v for k, v in proposal.items() if trend(center.get(k), v) != "same"}
    say = f"Around best episode {best.episode} (eval_loss {best.loss:.4f}): {why}"
    say += f": {change_list(center, moved)}." if moved else "."
    if regime:
        say += f" Reward regime: {regime}."
    return _reply(space, say=say, hparams=proposal, seal_plan=seal_plan)


def _reply(space: SearchSpace, **fields: Any) -> TunerReply:
    # Validated against the run's space: a bare TunerReply(...) clamps to the default space.
    return TunerReply.model_validate(fields, context={"space": space})


def _momentum(
    h: list[EpisodeSummary], tried: list[dict], center: dict, space: SearchSpace
) -> tuple[dict | None, str]:
    if len(h) < 2 or h[-1].loss is None or best_episode(h) is not h[-1]:
        return None, ""
    previous = best_episode(h[:-1])
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
        before = best_episode(h[:i])
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


def answer(context: Mapping[str, Any]) -> TunerReply:
    """The rules policy fed from the role context `AgentTeam` builds."""
    return rules_tuner(
        context.get("history") or [],
        context_space(context),
        context.get("seed", 0),
        context.get("judge_feedback", ""),
        context.get("reward_feedback"),
    )


def schema(context: Mapping[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """The wire schema of the reply; `text` is the bounded string schema for free text."""
    plan = json_object({"seal_epochs": {"type": "integer", "enum": [1, 2]}})
    return json_object({"say": text, "hparams": hparams_schema(context_space(context)), "seal_plan": plan})
