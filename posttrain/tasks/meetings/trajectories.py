"""Trajectories: the phase-2 prompt, the final-answer format, and scripted heuristic agents
that stand in for a model before one is trained (seeding phase 2 with good and bad traces)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posttrain.tasks.meetings.scenario import (
    REASONS,
    Scenario,
    energy_term,
    engagement_term,
    fatigue_term,
    reason_from_terms,
    role_term,
    seniority_term,
    sigmoid,
    timing_term,
    topic_term,
)
from posttrain.tasks.meetings.tools import ExecutedCall, execute_call

AGENT_INSTRUCTION = (
    "Use the tools get_profile, get_schedule_context and topic_overlap (2 to 5 calls), then reply "
    'Final Answer: {"probability": <0-1>, "reason": "<reason>"}.'
)


def agent_prompt(scenario: Scenario) -> str:
    """The phase-2 prompt: only the day is given, so the features must be gathered with tools."""
    return (
        f"Person A and Person B plan to meet on day {scenario.day} of a 3-day conference. "
        f"Will the meeting succeed? {AGENT_INSTRUCTION}"
    )


def final_answer(probability: float, reason: str) -> str:
    return "Final Answer: " + json.dumps({"probability": round(probability, 2), "reason": reason})


@dataclass
class Trajectory:
    scenario_id: str
    prompt: str
    tool_calls: list[ExecutedCall]
    probability: float | None  # None when the final answer did not parse
    reason: str | None
    final_text: str  # the last turn: "Thought: ...\nFinal Answer: {...}"
    policy: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The assistant side as one string, in toolcall's Thought/Action format; each
        observation follows its action as `Observation: <json>`."""
        parts = []
        for c in self.tool_calls:
            action = json.dumps({"tool": c.name, "args": c.args})
            obs = json.dumps(c.observation)
            parts.append(f"Thought: {c.thought}\nAction: ```json\n{action}\n```\nObservation: {obs}")
        parts.append(self.final_text)
        return "\n".join(parts)


_THOUGHTS = {
    "get_profile": "I need to know who Person {person} is.",
    "get_schedule_context": "How tired is Person {person} on day {day}, and when do they meet?",
    "topic_overlap": "Do they have interests in common?",
}


def _terms_from_observations(calls: Sequence[ExecutedCall]) -> dict[str, float]:
    """The formula's terms from what the calls revealed; unseen terms count as neutral (0)."""
    ok = [c for c in calls if c.error is None]
    prof = {c.args["person"]: c.observation for c in ok if c.name == "get_profile"}
    sched = {c.args["person"]: c.observation for c in ok if c.name == "get_schedule_context"}
    ov = next((c.observation for c in ok if c.name == "topic_overlap"), None)
    terms: dict[str, float] = {}
    if len(prof) == 2:
        terms["role"] = role_term(prof["A"]["role"], prof["B"]["role"])
        terms["seniority"] = seniority_term(prof["A"]["seniority"], prof["B"]["seniority"])
    if prof:
        terms["engagement"] = engagement_term([p["engagement"] for p in prof.values()])
        terms["energy"] = energy_term([p["energy"] for p in prof.values()])
    if ov is not None:
        terms["topic"] = topic_term(ov["jaccard"])
    if sched:
        # One person's count stands in for both when only one schedule was looked up.
        terms["fatigue"] = fatigue_term(sum(x["meetings_so_far"] for x in sched.values()) * 2 / len(sched))
        first = next(iter(sched.values()))
        terms["timing"] = timing_term(first["time_of_day"], first["day"])
    return terms


def scripted_trajectory(scenario: Scenario, rng: random.Random, quality: float) -> Trajectory:
    """A heuristic agent of `quality` in [0, 1], standing in for a model before one is trained.

    At 1 it makes the five informative calls and applies the formula to what it saw; lower
    quality drops calls (padding with repeats or a wrong-day call to keep 2-5 calls), adds
    logit noise and sometimes guesses. Used to seed phase 2 with a mix of good and bad traces.
    """
    sloppy = 1.0 - min(max(quality, 0.0), 1.0)
    plan: list[tuple[str, dict[str, Any]]] = [
        ("get_profile", {"person": "A"}),
        ("get_profile", {"person": "B"}),
        ("topic_overlap", {"a": "A", "b": "B"}),
        ("get_schedule_context", {"person": "A", "day": scenario.day}),
        ("get_schedule_context", {"person": "B", "day": scenario.day}),
    ]
    plan = [c for c in plan if rng.random() >= 0.6 * sloppy]
    while len(plan) < 2 or (len(plan) < 5 and rng.random() < 0.4 * sloppy):
        if plan and rng.random() < 0.6:
            plan.insert(rng.randrange(len(plan) + 1), rng.choice(plan))  # a repeated call
        else:
            plan.append(("get_schedule_context", {"person": "A", "day": scenario.day % 3 + 1}))  # wrong day
    calls = [execute_call(scenario, n, a, _THOUGHTS[n].format(**a)) for n, a in plan]

    terms = _terms_from_observations(calls)
    if rng.random() < 0.5 * sloppy:
        prob, reason, thought = rng.uniform(0.05, 0.95), rng.choice(REASONS), "I will go with my gut."
    else:
        z = sum(terms.values()) + rng.gauss(0.0, 0.3 + 3.0 * sloppy)
        prob = sigmoid(z)
        reason = reason_from_terms(terms, prob > 0.5) if terms else rng.choice(REASONS)
        thought = f"The deciding factor is {reason}."
    prob = min(max(round(prob, 2), 0.01), 0.99)
    return Trajectory(
        scenario_id=scenario.scenario_id,
        prompt=agent_prompt(scenario),
        tool_calls=calls,
        probability=prob,
        reason=reason,
        final_text=f"Thought: {thought}\n{final_answer(prob, reason)}",
        policy=f"scripted(quality={quality:.2f})",
    )


def scripted_trajectories(scenarios: Sequence[Scenario], per_scenario: int, seed: int) -> list[Trajectory]:
    """`per_scenario` scripted trajectories per scenario, qualities spread evenly over [0, 1]."""
    rng = random.Random(seed)
    out = []
    for s in scenarios:
        for k in range(per_scenario):
            q = (k + rng.random()) / per_scenario
            out.append(scripted_trajectory(s, rng, q))
    return out
