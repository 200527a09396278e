"""Trajectories: the phase-2 prompt, the final-answer format, and scripted heuristic agents
that stand in for a model before one is trained (seeding phase 2 with good and bad traces)."""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posttrain.tasks.meetings.checklist import checklist, observed_lines
from posttrain.tasks.meetings.scenario import (
    C_ENERGY,
    DAY_EFFECT,
    REASONS,
    TERMS,
    TIME_EFFECT,
    W_ENERGY,
    Scenario,
    energy_term,
    engagement_term,
    fatigue_term,
    generate_scenarios,
    reason_from_terms,
    role_term,
    seniority_term,
    sigmoid,
    timing_term,
    topic_term,
)
from posttrain.tasks.meetings.tools import ExecutedCall, execute_call, seen

# The answer's shape as the prompts ask for it, in `final_answer`'s key order (side first).
ANSWER_SHAPE = 'Final Answer: {"success": <true|false>, "reason": "<reason>", "probability": <0-1>}'
AGENT_INSTRUCTION = (
    "Use the tools get_profile, get_schedule_context and topic_overlap (1 to 3 calls), then reply "
    f"{ANSWER_SHAPE}."
)


def agent_prompt(scenario: Scenario) -> str:
    """The phase-2 prompt: only the day is given, so the features must be gathered with tools."""
    return (
        f"Person A and Person B plan to meet on day {scenario.day} of a 3-day conference. "
        f"Will the meeting succeed? {AGENT_INSTRUCTION}"
    )


def final_answer(probability: float, reason: str) -> str:
    """The answer with the side FIRST, then the reason, then the probability.

    Probability first, greedy decoding picked the commonest first digit: targets cluster near 0
    and 1 and "0.0" is the mode, so SFT'd smollm2-135m answered 0.0 on every held-out scenario
    (accuracy 0.48 = the minority rate, n=200). Reason first (a reason names the term that
    decided the side), the answers followed the input: 0.585. But greedy then takes the likeliest
    of 14 reasons, and the likeliest single reason can sit on the side the model finds less likely
    in total; a `success` flag first is one binary token, so greedy takes the likelier side:
    0.60 at lr 1e-3 and 0.62 at 3e-3 (n=200, same 300 rows x 3 epochs; bench/results/
    align_quality.json -> meetings_variants)."""
    answer = {"success": probability > 0.5, "reason": reason, "probability": round(probability, 2)}
    return "Final Answer: " + json.dumps(answer)


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
    prof, sched, ov = seen(calls)
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


# ---------------------------------------------------------------- SFT demos that answer early

# A demo's calls in order of what they reveal: the two profiles give role, seniority, engagement
# and energy, the overlap the topic term; after these three the oracle's accuracy is within a few
# points of all five calls. A demo stops after the first `k` of them.
DEMO_CALLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("get_profile", {"person": "A"}),
    ("get_profile", {"person": "B"}),
    ("topic_overlap", {"a": "A", "b": "B"}),
)
# How many calls a demo makes: mostly 1-3, a few none (the day in the prompt is all it knows),
# never the loop's step cap, so the model learns to stop and answer rather than to run out of turns.
DEMO_CALL_WEIGHTS: dict[int, float] = {0: 0.1, 1: 0.15, 2: 0.25, 3: 0.5}
# The Thought of every demo's answer, and the prefix a forced answer is prefilled with (agent.py),
# so a forced answer continues text the model was trained to write.
ANSWER_THOUGHT = "I have enough to answer."


@functools.cache
def _term_spread() -> dict[str, tuple[float, float]]:
    """(mean, variance) of each logit term over a fixed population; timing's is the time of day's
    alone, since the day is in the prompt."""
    sample = generate_scenarios(4000, 0)
    out = {}
    for term in TERMS:
        if term == "timing":
            values = [TIME_EFFECT[s.time_of_day] for s in sample]
        else:
            values = [s.contributions()[term] for s in sample]
        mean = sum(values) / len(values)
        out[term] = (mean, sum((v - mean) ** 2 for v in values) / len(values))
    return out


def informed_probability(terms: dict[str, float], day: int) -> float:
    """P(success | the terms seen and the day): unseen terms are marginalised as a normal with
    the population's mean and variance (probit approximation of the logistic-normal), so an agent
    that saw less answers closer to its prior, which is what a calibrated answer must do."""
    spread = _term_spread()
    unseen = [t for t in TERMS if t not in terms]
    z = sum(terms.values()) + sum(spread[t][0] for t in unseen)
    if "timing" not in terms:
        z += DAY_EFFECT[day]
    var = sum(spread[t][1] for t in unseen)
    return sigmoid(z / math.sqrt(1.0 + math.pi * var / 8.0))


def answer_thought(calls: Sequence[ExecutedCall]) -> str:
    """`ANSWER_THOUGHT`, then the checklist of what the calls revealed (checklist.py)."""
    return " ".join(filter(None, (ANSWER_THOUGHT, checklist(observed_lines(calls)))))


def demo_trajectory(scenario: Scenario, rng: random.Random, calls: int | None = None) -> Trajectory:
    """An SFT demo: the first `calls` of `DEMO_CALLS` (drawn from `DEMO_CALL_WEIGHTS` when None),
    then a Final Answer with the probability calibrated to what those calls revealed."""
    k = rng.choices(list(DEMO_CALL_WEIGHTS), weights=list(DEMO_CALL_WEIGHTS.values()))[0]
    k = k if calls is None else calls
    done = [execute_call(scenario, n, a, _THOUGHTS[n].format(**a)) for n, a in DEMO_CALLS[:k]]
    terms = _terms_from_observations(done)
    profiles = [c.observation for c in done if c.name == "get_profile"]
    if len(profiles) == 1:  # the other attendee's levels are unknown: their expectation (uniform 1..5)
        seen = profiles[0]
        terms["engagement"] = engagement_term([seen["engagement"], 3])
        terms["energy"] = W_ENERGY * (sum(min(seen["energy"], u) for u in range(1, 6)) / 5 - C_ENERGY)
    prob = min(max(round(informed_probability(terms, scenario.day), 2), 0.01), 0.99)
    shown = terms | ({} if "timing" in terms else {"timing": DAY_EFFECT[scenario.day]})
    reason = reason_from_terms(shown, prob > 0.5)
    return Trajectory(
        scenario_id=scenario.scenario_id,
        prompt=agent_prompt(scenario),
        tool_calls=done,
        probability=prob,
        reason=reason,
        final_text=f"Thought: {answer_thought(done)}\n{final_answer(prob, reason)}",
        policy=f"demo(calls={k})",
    )
