"""Scoring: the final answer parsed back, the rewards of a trajectory (seed 002's: accuracy, side
of 0.5, tool use; align's: a calibrated answer first, Brier, then tool use), and the prediction
metrics reported against realised outcomes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from posttrain.tasks.meetings.scenario import Scenario
from posttrain.tasks.meetings.tools import TOOL_NAMES, ExecutedCall
from posttrain.tasks.meetings.trajectories import Trajectory


def parse_prediction(text: str) -> tuple[float, str] | None:
    """(probability, reason) from the last `Final Answer: {...}` in `text` (the object may sit in
    a ```json fence; text after it is ignored), or None when it is missing, not a JSON object, or
    its probability is not a number in [0, 1]."""
    idx = text.rfind("Final Answer:")
    if idx < 0:
        return None
    rest = text[idx + len("Final Answer:") :].lstrip()
    for fence in ("```json", "```"):  # a fenced object is tolerated; anything else before it is not
        if rest.startswith(fence):
            rest = rest[len(fence) :].lstrip()
            break
    if not rest.startswith("{"):
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(rest)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    prob, reason = obj.get("probability"), obj.get("reason", "")
    if isinstance(prob, str):
        try:
            prob = float(prob)
        except ValueError:
            return None
    if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0.0 <= prob <= 1.0:
        return None
    return float(prob), str(reason).strip()


# ---------------------------------------------------------------- reward

# total = W_ACC * (1 - |pred - ground_truth_prob|) + W_SIDE * [pred on the outcome's side of 0.5]
#       + W_TOOLS * tool_use, each component in [0, 1], so total is in [0, 1].
W_ACC, W_SIDE, W_TOOLS = 0.5, 0.3, 0.2
# tool_use = 0 with no calls, else the sum of these parts:
T_COUNT, T_NO_DUP, T_COVERAGE, T_VALID = 0.4, 0.2, 0.3, 0.1


@dataclass(frozen=True)
class RewardBreakdown:
    accuracy: float  # 1 - |pred - ground_truth_prob|; 0 when the answer did not parse
    side: float  # 1 if pred > 0.5 == outcome
    tool_use: float
    total: float

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "side": self.side, "tool_use": self.tool_use, "total": self.total}


def tool_use_score(calls: Sequence[ExecutedCall]) -> float:
    """0.4 for 2-5 calls, 0.2 for no repeated (name, args), 0.3 x share of the three tools used
    successfully, 0.1 x share of calls without error; 0 when no tool was called."""
    if not calls:
        return 0.0
    keys = [(c.name, json.dumps(c.args, sort_keys=True)) for c in calls]
    used = {c.name for c in calls if not c.error and c.name in TOOL_NAMES}
    score = T_COUNT * (2 <= len(calls) <= 5)
    score += T_NO_DUP * (len(set(keys)) == len(keys))
    score += T_COVERAGE * len(used) / len(TOOL_NAMES)
    score += T_VALID * sum(c.error is None for c in calls) / len(calls)
    return score


def calculate_reward(traj: Trajectory, scenario: Scenario) -> RewardBreakdown:
    """Weights in the comment above `W_ACC`. Accuracy is measured against the noisy
    `ground_truth_prob` (what happened), not the noise-free formula."""
    if traj.scenario_id != scenario.scenario_id:
        raise ValueError(f"trajectory is for {traj.scenario_id}, scenario is {scenario.scenario_id}")
    if traj.probability is None:
        acc = side = 0.0
    else:
        acc = 1.0 - abs(traj.probability - scenario.ground_truth_prob)
        side = float(int(traj.probability > 0.5) == scenario.outcome)
    tools = tool_use_score(traj.tool_calls)
    return RewardBreakdown(acc, side, tools, W_ACC * acc + W_SIDE * side + W_TOOLS * tools)


# The calibrated reward `posttrain align` ranks meetings trajectories by:
# total = B_ANSWER + B_BRIER * (1 - (pred - outcome)^2) + B_TOOLS * tool_use when the answer parses,
# 0 when it does not, whatever the calls. A parsed answer, even the worst, beats none (>= B_ANSWER),
# and the Brier term can move the total by more than all tool use can, so a trajectory is paid
# for a calibrated answer first and for its calls a little.
B_ANSWER, B_BRIER, B_TOOLS = 0.1, 0.75, 0.15


@dataclass(frozen=True)
class CalibratedReward:
    answered: float  # 1 when the final answer parsed
    brier: float  # 1 - (pred - outcome)^2; 0 when the answer did not parse
    tool_use: float  # `tool_use_score`, counted only with an answer
    total: float

    def as_dict(self) -> dict[str, float]:
        return {
            "answered": self.answered,
            "brier": self.brier,
            "tool_use": self.tool_use,
            "total": self.total,
        }


def calibrated_reward(traj: Trajectory, scenario: Scenario) -> CalibratedReward:
    """The reward of the comment above `B_ANSWER`, against the realised outcome (a proper scoring
    rule: its expectation is highest at the probability the calls' evidence supports)."""
    if traj.scenario_id != scenario.scenario_id:
        raise ValueError(f"trajectory is for {traj.scenario_id}, scenario is {scenario.scenario_id}")
    tools = tool_use_score(traj.tool_calls)
    if traj.probability is None:
        return CalibratedReward(0.0, 0.0, tools, 0.0)
    score = 1.0 - (traj.probability - scenario.outcome) ** 2
    return CalibratedReward(1.0, score, tools, B_ANSWER + B_BRIER * score + B_TOOLS * tools)


# ---------------------------------------------------------------- metrics


def _check(preds: Sequence[float], outcomes: Sequence[int]) -> None:
    if len(preds) != len(outcomes) or not preds:
        raise ValueError(f"need equal non-empty lengths, got {len(preds)} preds and {len(outcomes)} outcomes")


def accuracy(preds: Sequence[float], outcomes: Sequence[int]) -> float:
    """Share of predictions on the outcome's side of 0.5 (exactly 0.5 counts as 'fails')."""
    _check(preds, outcomes)
    return sum(int(p > 0.5) == int(o) for p, o in zip(preds, outcomes, strict=True)) / len(preds)


def brier(preds: Sequence[float], outcomes: Sequence[int]) -> float:
    _check(preds, outcomes)
    return sum((p - o) ** 2 for p, o in zip(preds, outcomes, strict=True)) / len(preds)


def majority_baseline(train_outcomes: Sequence[int], test_outcomes: Sequence[int]) -> float:
    """Accuracy on test of always predicting the training majority (ties go to success)."""
    if not train_outcomes or not test_outcomes:
        raise ValueError("majority_baseline needs non-empty train and test outcomes")
    majority = int(2 * sum(train_outcomes) >= len(train_outcomes))
    return sum(int(o) == majority for o in test_outcomes) / len(test_outcomes)


def oracle_accuracy(scenarios: Sequence[Scenario]) -> float:
    """Accuracy of the noise-free formula against realised outcomes: the ceiling for any model."""
    return accuracy([s.clean_prob for s in scenarios], [s.outcome for s in scenarios])
