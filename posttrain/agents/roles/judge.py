"""The judge (seed 000 §3.2): whether another episode is worth it, and feedback for the others."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from posttrain.agents.history import EpisodeSummary, as_history, best_episode
from posttrain.agents.roles.base import Flag, Reply, Text, json_object

SYSTEM_PROMPT = (
    "You are the judge of a LoRA fine-tuning run. Look at the trend of eval_loss and perplexity and "
    "decide whether another episode is worth it. You may not stop before force_min_episodes unless "
    "the metrics clearly degrade. Give actionable feedback for the tuner and the SEAL expert."
)


class JudgeReply(Reply):
    """Seed §3.2: `{say, continue, reason, feedback}`. Dump with `by_alias=True` to get `continue`."""

    say: Text = ""
    continue_: Flag = Field(alias="continue")
    reason: Text = ""
    feedback: Text = ""


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
    best = best_episode(h)
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
        say = f"Continue: {n} of at least {force_min_episodes} episodes done."
        return JudgeReply(say=say, continue_=True, reason=reason, feedback=feedback)
    before = [e.loss for e in h[:-patience] if e.loss is not None]
    recent = [e.loss for e in h[-patience:] if e.loss is not None]
    if before and n > patience and (not recent or min(recent) > min(before) * (1 - min_rel_improvement)):
        reason = f"best eval loss has not improved for {patience} episodes (plateau)"
        return JudgeReply(say="Stop: no more gain.", continue_=False, reason=reason, feedback=feedback)
    return JudgeReply(
        say=_continue_say(h, best, patience), continue_=True, reason="recent gain", feedback=feedback
    )


def _continue_say(h: list[EpisodeSummary], best: EpisodeSummary | None, patience: int) -> str:
    """Why the judge goes on, in words that agree with `_judge_feedback` on the same history."""
    last = h[-1]
    if best is not None and last is best:
        return f"Continue: episode {last.episode} is the best so far (eval_loss {best.loss:.4f})."
    if best is None:
        return "Continue: no finite eval loss to compare yet."
    last_text = "diverged" if last.loss is None else f"is worse ({last.loss:.4f})"
    return (
        f"Continue: the best eval_loss {best.loss:.4f} (episode {best.episode}) is within the last "
        f"{patience} episodes, though the last one {last_text}."
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
    # The backend's `say` argued for stopping; keep it visible but say what was actually decided.
    say = f"Continue (a stop was overridden: {len(h)} < force_min_episodes={force_min_episodes})."
    if reply.say:
        say += f" The judge had said: {reply.say}"
    return reply.model_copy(update={"continue_": True, "reason": reason, "say": say})


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


def answer(context: Mapping[str, Any]) -> JudgeReply:
    """The rules policy fed from the role context `AgentTeam` builds."""
    return rules_judge(
        context.get("history") or [],
        context.get("force_min_episodes", 3),
        context.get("max_episodes", 4),
        context.get("patience", 2),
        degrade_tol=context.get("degrade_tol", 0.05),
    )


def schema(context: Mapping[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """The wire schema of the reply; `text` is the bounded string schema for free text."""
    return json_object({"say": text, "continue": {"type": "boolean"}, "reason": text, "feedback": text})
