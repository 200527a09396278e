"""SEAL rewards: a self-edit's reward from the domain's score before and after its update.

Rewards are pluggable: subclass `BaseRewardModel` and pass it to a domain, or name a
built-in one (`make_reward_model`) in the config's `reward.kind`.
"""

from __future__ import annotations

from typing import Any


class BaseRewardModel:
    """Turns a score before and after a self-edit's update into a reward (higher is better).

    `before` and `after` are the domain's scalar scores (knowledge: mean F1 of the passage's
    questions; ARC: 1.0 if the test grid is solved). `task` is the item they were measured on,
    for rewards that depend on it.
    """

    name = "base"

    def compute_reward(self, before: float, after: float, task: Any) -> float:
        raise NotImplementedError


class BinaryReward(BaseRewardModel):
    """1.0 when the update improves the score by more than `margin`, else 0.0 (SEAL's r)."""

    name = "binary"

    def __init__(self, margin: float = 0.0) -> None:
        self.margin = margin

    def compute_reward(self, before: float, after: float, task: Any) -> float:
        return 1.0 if after - before > self.margin else 0.0


class ContinuousReward(BaseRewardModel):
    """The improvement itself, after - before (negative when the update hurts)."""

    name = "continuous"

    def compute_reward(self, before: float, after: float, task: Any) -> float:
        return after - before


class SuccessReward(BaseRewardModel):
    """1.0 when the score after the update reaches `at`, whatever it was before (ARC: solved)."""

    name = "success"

    def __init__(self, at: float = 1.0) -> None:
        self.at = at

    def compute_reward(self, before: float, after: float, task: Any) -> float:
        return 1.0 if after >= self.at else 0.0


def make_reward_model(kind: str, margin: float = 0.0, success_at: float = 1.0) -> BaseRewardModel:
    """binary | continuous | success."""
    if kind == "binary":
        return BinaryReward(margin)
    if kind == "continuous":
        return ContinuousReward()
    if kind == "success":
        return SuccessReward(success_at)
    raise ValueError(f"unknown reward kind {kind!r} (expected binary, continuous or success)")
