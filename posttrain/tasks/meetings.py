"""Conference meeting-success prediction (seed 002): data, tools, trajectories, rewards, metrics.

Two attendees, A and B, meet at a conference. Their roles, seniority, interests, engagement,
energy and fatigue, plus the time of day and the conference day, set a documented success
probability (`FORMULA_DOC`). A model predicts it from text (phase 1, SFT) or gathers the
features with tools before answering (phase 2, trajectories); trajectories ranked by
`calculate_reward` become DPO preference pairs (phase 3).

Everything here is deterministic given a seed and needs no model.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import DataError

ROLES = (
    "founder",
    "engineer",
    "investor",
    "researcher",
    "designer",
    "student",
    "recruiter",
    "product manager",
)
SENIORITY = ("junior", "mid", "senior", "executive")
TOPICS = (
    "AI",
    "climate",
    "fintech",
    "healthcare",
    "robotics",
    "security",
    "crypto",
    "education",
    "open source",
    "hiring",
    "biotech",
    "developer tools",
)
TIMES_OF_DAY = ("morning", "midday", "afternoon", "evening")
DAYS = (1, 2, 3)

# Role complementarity in [-1, 1], symmetric; pairs not listed are 0. Founders need money and
# builders, students need recruiters; two people who both want to sell or invest do not click.
_ROLE_PAIRS: dict[tuple[str, str], float] = {
    ("founder", "investor"): 1.0,
    ("founder", "engineer"): 0.6,
    ("founder", "designer"): 0.5,
    ("founder", "product manager"): 0.4,
    ("founder", "researcher"): 0.3,
    ("founder", "student"): -0.4,
    ("engineer", "researcher"): 0.6,
    ("engineer", "product manager"): 0.5,
    ("engineer", "recruiter"): 0.4,
    ("engineer", "designer"): 0.3,
    ("engineer", "investor"): -0.6,
    ("engineer", "engineer"): 0.3,
    ("investor", "investor"): -0.8,
    ("investor", "student"): -1.0,
    ("investor", "designer"): -0.6,
    ("investor", "recruiter"): -0.7,
    ("investor", "researcher"): -0.3,
    ("researcher", "student"): 0.6,
    ("researcher", "researcher"): 0.4,
    ("researcher", "recruiter"): -0.6,
    ("researcher", "designer"): -0.4,
    ("designer", "product manager"): 0.8,
    ("student", "recruiter"): 0.8,
    ("student", "student"): -0.3,
    ("recruiter", "recruiter"): -1.0,
    ("product manager", "product manager"): -0.3,
}
SENIORITY_LEVEL = {s: i for i, s in enumerate(SENIORITY)}
TIME_EFFECT = {"morning": 1.2, "midday": 0.4, "afternoon": -0.4, "evening": -1.2}
DAY_EFFECT = {1: 0.8, 2: 0.1, 3: -0.9}

# Logit weights and centres. Each term is centred on its population mean, so its sign says
# whether it helped this pair; `target_reason` relies on that.
W_ROLE = 4.0  # x complementarity in [-1, 1]
W_TOPIC = 8.0  # x (jaccard - C_TOPIC)
W_SENIORITY = 1.0  # x (C_GAP - |level gap|)
W_ENGAGEMENT = 1.7  # x (mean engagement - 3), engagement 1..5
W_ENERGY = 1.4  # x (lower energy - C_ENERGY), energy 1..5
W_FATIGUE = 0.5  # x (meetings both already had today - C_MEETINGS), subtracted
C_TOPIC, C_GAP, C_ENERGY, C_MEETINGS = 0.45, 1.25, 2.2, 6

TERMS = ("role", "topic", "seniority", "engagement", "energy", "fatigue", "timing")
# target_reason: (reason when the term helped, reason when it hurt).
_TERM_REASONS = {
    "role": ("complementary roles", "role mismatch"),
    "topic": ("strong topic overlap", "no shared topics"),
    "seniority": ("seniority match", "seniority gap"),
    "engagement": ("high engagement", "low engagement"),
    "energy": ("high energy", "low energy"),
    "fatigue": ("well rested", "fatigue"),
    "timing": ("good timing", "bad timing"),
}
REASONS = tuple(r for pair in _TERM_REASONS.values() for r in pair)

_ROLES_DOC = ", ".join(f"{a} + {b} {v:+.1f}" for (a, b), v in _ROLE_PAIRS.items())

FORMULA_DOC = f"""\
### Meeting success: the ground-truth formula

For attendees A and B the noise-free logit is

    z = {W_ROLE} * role_complementarity(A.role, B.role)          # table in [-1, 1]
      + {W_TOPIC} * (jaccard(A.interests, B.interests) - {C_TOPIC})
      + {W_SENIORITY} * ({C_GAP} - |seniority_level(A) - seniority_level(B)|)   # junior=0 .. executive=3
      + {W_ENGAGEMENT} * (mean(A.engagement, B.engagement) - 3)   # engagement 1..5
      + {W_ENERGY} * (min(A.energy, B.energy) - {C_ENERGY})   # energy 1..5; the tireder one sets the pace
      - {W_FATIGUE} * (A.meetings_so_far + B.meetings_so_far - {C_MEETINGS})   # meetings already had today
      + time_effect[time_of_day] + day_effect[day]

time_effect = {TIME_EFFECT}, day_effect = {DAY_EFFECT}.
role_complementarity is symmetric, 0 for pairs not listed: {_ROLES_DOC}.

- `target_probability` = sigmoid(z): the success probability given everything the text shows.
- `ground_truth_prob` = sigmoid(z + e) with e ~ Logistic(0, 1), the unobserved chemistry of this
  particular meeting.
- `outcome` = 1 iff ground_truth_prob > 0.5. Because e is standard logistic,
  P(outcome = 1 | features) = sigmoid(z) exactly, so thresholding the noisy probability and
  sampling from the noise-free one are the same process, and `target_probability` is calibrated.
- `target_reason` names the term with the largest contribution in the direction of the
  prediction (the largest positive term when sigmoid(z) > 0.5, else the most negative one).

The oracle (predict success iff sigmoid(z) > 0.5) is right about 88% of the time; the rest is
the irreducible noise e. Success and failure are roughly balanced (majority class ~ 50%).
"""


def role_complementarity(a: str, b: str) -> float:
    """Symmetric role fit in [-1, 1]; 0 for pairs the table does not list."""
    return _ROLE_PAIRS.get((a, b), _ROLE_PAIRS.get((b, a), 0.0))


def _role_term(a: str, b: str) -> float:
    return W_ROLE * role_complementarity(a, b)


def _topic_term(jaccard: float) -> float:
    return W_TOPIC * (jaccard - C_TOPIC)


def _seniority_term(a: str, b: str) -> float:
    return W_SENIORITY * (C_GAP - abs(SENIORITY_LEVEL[a] - SENIORITY_LEVEL[b]))


def _engagement_term(levels: Sequence[int]) -> float:
    return W_ENGAGEMENT * (sum(levels) / len(levels) - 3)


def _energy_term(levels: Sequence[int]) -> float:
    return W_ENERGY * (min(levels) - C_ENERGY)


def _fatigue_term(total_meetings: float) -> float:
    return -W_FATIGUE * (total_meetings - C_MEETINGS)


def _timing_term(time_of_day: str, day: int) -> float:
    return TIME_EFFECT[time_of_day] + DAY_EFFECT[day]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class Person:
    role: str
    seniority: str
    interests: tuple[str, ...]
    engagement: int  # 1..5
    energy: int  # 1..5
    meetings_so_far: int  # meetings already had today, 0..6


@dataclass(frozen=True)
class Scenario:
    """One meeting request. `noise` is the logit-space noise e of `FORMULA_DOC`."""

    scenario_id: str
    a: Person
    b: Person
    day: int
    time_of_day: str
    noise: float

    def person(self, who: str) -> Person:
        if who not in ("A", "B"):
            raise ValueError(f'person must be "A" or "B", got {who!r}')
        return self.a if who == "A" else self.b

    @property
    def shared_interests(self) -> list[str]:
        return sorted(set(self.a.interests) & set(self.b.interests))

    @property
    def jaccard(self) -> float:
        union = set(self.a.interests) | set(self.b.interests)
        return len(self.shared_interests) / len(union) if union else 0.0

    def contributions(self) -> dict[str, float]:
        """The terms of the logit (see `FORMULA_DOC`); they sum to `logit`."""
        a, b = self.a, self.b
        return {
            "role": _role_term(a.role, b.role),
            "topic": _topic_term(self.jaccard),
            "seniority": _seniority_term(a.seniority, b.seniority),
            "engagement": _engagement_term([a.engagement, b.engagement]),
            "energy": _energy_term([a.energy, b.energy]),
            "fatigue": _fatigue_term(a.meetings_so_far + b.meetings_so_far),
            "timing": _timing_term(self.time_of_day, self.day),
        }

    @property
    def logit(self) -> float:
        return sum(self.contributions().values())

    @property
    def clean_prob(self) -> float:
        """Noise-free success probability: what a perfect reader of the text should predict."""
        return _sigmoid(self.logit)

    @property
    def ground_truth_prob(self) -> float:
        return _sigmoid(self.logit + self.noise)

    @property
    def outcome(self) -> int:
        return int(self.logit + self.noise > 0)

    @property
    def reason(self) -> str:
        return reason_from_terms(self.contributions(), self.clean_prob > 0.5)


def reason_from_terms(terms: dict[str, float], success: bool) -> str:
    """Name the largest term pushing toward `success` (or, if none does, the largest overall)."""
    sign = 1.0 if success else -1.0
    aligned = {k: v for k, v in terms.items() if v * sign > 0}
    pool = aligned or terms
    name = max(pool, key=lambda k: abs(pool[k]))
    return _TERM_REASONS[name][0 if pool[name] > 0 else 1]


# ---------------------------------------------------------------- generation


def _person(rng: random.Random, interests: tuple[str, ...]) -> Person:
    return Person(
        role=rng.choice(ROLES),
        seniority=rng.choice(SENIORITY),
        interests=interests,
        engagement=rng.randint(1, 5),
        energy=rng.randint(1, 5),
        meetings_so_far=rng.randint(0, 6),
    )


def generate_scenarios(n: int, seed: int) -> list[Scenario]:
    """`n` scenarios, identical for the same seed; ids embed the seed so splits never collide."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a_int = tuple(sorted(rng.sample(TOPICS, rng.randint(2, 4))))
        # B shares topics with A at a per-pair rate, so overlap ranges from none to identical.
        share = rng.random()
        b_set: set[str] = set()
        for _ in range(rng.randint(2, 4)):
            pool = [t for t in (a_int if rng.random() < share else TOPICS) if t not in b_set]
            b_set.add(rng.choice(pool or [t for t in TOPICS if t not in b_set]))
        u = min(max(rng.random(), 1e-12), 1 - 1e-12)
        out.append(
            Scenario(
                scenario_id=f"s{seed}-{i:05d}",
                a=_person(rng, a_int),
                b=_person(rng, tuple(sorted(b_set))),
                day=rng.choice(DAYS),
                time_of_day=rng.choice(TIMES_OF_DAY),
                noise=math.log(u / (1 - u)),  # standard logistic
            )
        )
    return out


def _describe(p: Person) -> str:
    return (
        f"{p.seniority} {p.role}; likes {', '.join(p.interests)}; engagement {p.engagement}/5, "
        f"energy {p.energy}/5, {p.meetings_so_far} meeting{'' if p.meetings_so_far == 1 else 's'} today"
    )


def input_text(s: Scenario) -> str:
    """Every feature of the formula in one short paragraph (a 135M model reads it on CPU)."""
    shared = ", ".join(s.shared_interests) or "none"
    return (
        f"A: {_describe(s.a)}. B: {_describe(s.b)}. Shared interests: {shared}. "
        f"Day {s.day} of 3, {s.time_of_day}."
    )


CSV_COLUMNS = (
    "input_text",
    "target_probability",
    "target_reason",
    "ground_truth_prob",
    "scenario_id",
    "outcome",
)


def csv_row(s: Scenario) -> dict[str, Any]:
    return {
        "input_text": input_text(s),
        "target_probability": round(s.clean_prob, 4),
        "target_reason": s.reason,
        "ground_truth_prob": round(s.ground_truth_prob, 4),
        "scenario_id": s.scenario_id,
        "outcome": s.outcome,
    }


def write_csv(path: str | Path, scenarios: Sequence[Scenario]) -> None:
    """Seed 002's `sft_training_data.csv` columns, plus `scenario_id` and `outcome`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(s) for s in scenarios)


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a meetings CSV (ours or seed 002's own), numbers parsed; only the seed's four
    columns are required. Raises `DataError` naming the line and field."""
    path = Path(path)
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, raw in enumerate(csv.DictReader(f), start=2):
            row: dict[str, Any] = dict(raw)
            for col in CSV_COLUMNS[:4]:
                if not row.get(col):
                    raise DataError(str(path), line, col, f"is missing (expected columns {CSV_COLUMNS[:4]})")
            for col in ("target_probability", "ground_truth_prob"):
                try:
                    row[col] = float(row[col])
                except ValueError:
                    raise DataError(str(path), line, col, f"is not a number: {row[col]!r}") from None
                if not 0.0 <= row[col] <= 1.0:
                    raise DataError(str(path), line, col, f"must be in [0, 1], got {row[col]}")
            if row.get("outcome") not in (None, ""):
                row["outcome"] = int(row["outcome"])
            rows.append(row)
    return rows


# ---------------------------------------------------------------- tools


def get_profile(scenario: Scenario, person: str) -> dict[str, Any]:
    p = scenario.person(person)
    return {
        "person": person,
        "role": p.role,
        "seniority": p.seniority,
        "interests": list(p.interests),
        "engagement": p.engagement,
        "energy": p.energy,
    }


def get_schedule_context(scenario: Scenario, person: str, day: int) -> dict[str, Any]:
    p = scenario.person(person)
    if day != scenario.day:
        raise ValueError(f"no meeting is planned on day {day}; this meeting is on day {scenario.day}")
    return {
        "person": person,
        "day": day,
        "meetings_so_far": p.meetings_so_far,
        "time_of_day": scenario.time_of_day,
    }


def topic_overlap(scenario: Scenario, a: str, b: str) -> dict[str, Any]:
    if a == b:
        raise ValueError("topic_overlap needs two different people, A and B")
    scenario.person(a), scenario.person(b)
    return {"shared": scenario.shared_interests, "jaccard": round(scenario.jaccard, 3)}


_PERSON = {"type": "string", "enum": ["A", "B"], "description": 'Which attendee: "A" or "B".'}


def tool_schemas() -> list[dict[str, Any]]:
    """The three tools in OpenAI function format (also what `apply_chat_template(tools=)` takes)."""

    def fn(name: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
        params = {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }
        return {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": params},
        }

    day = {
        "type": "integer",
        "minimum": 1,
        "maximum": 3,
        "description": "Conference day of the meeting (1-3).",
    }
    profile = "Role, seniority, interests, engagement (1-5) and energy (1-5) of one attendee."
    schedule = "Meetings the attendee already had that day, and the meeting's time of day."
    overlap = "Interests two attendees share, and their Jaccard similarity (0-1)."
    return [
        fn("get_profile", profile, {"person": _PERSON}),
        fn("get_schedule_context", schedule, {"person": _PERSON, "day": day}),
        fn("topic_overlap", overlap, {"a": _PERSON, "b": _PERSON}),
    ]


TOOL_NAMES = ("get_profile", "get_schedule_context", "topic_overlap")


def make_tools(scenario: Scenario) -> dict[str, Callable[..., dict[str, Any]]]:
    """Tools bound to one scenario, keyed by name; they take the schema's arguments as keywords,
    return JSON-serialisable dicts and raise ValueError on arguments the scenario cannot answer."""
    return {
        "get_profile": lambda person: get_profile(scenario, person),
        "get_schedule_context": lambda person, day: get_schedule_context(scenario, person, day),
        "topic_overlap": lambda a, b: topic_overlap(scenario, a, b),
    }


# ---------------------------------------------------------------- trajectories


@dataclass
class ToolCall:
    name: str
    args: dict[str, Any]
    observation: Any
    error: str | None = None
    thought: str = ""


def execute_call(scenario: Scenario, name: str, args: dict[str, Any], thought: str = "") -> ToolCall:
    """Run one call; unknown tools and bad arguments become an `error` observation, never raise."""
    tools = make_tools(scenario)
    try:
        if name not in tools:
            raise ValueError(f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}")
        obs: Any = tools[name](**args)
        return ToolCall(name, dict(args), obs, None, thought)
    except (TypeError, ValueError) as exc:
        return ToolCall(name, dict(args), {"error": str(exc)}, str(exc), thought)


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
    tool_calls: list[ToolCall]
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


def _terms_from_observations(calls: Sequence[ToolCall]) -> dict[str, float]:
    """The formula's terms from what the calls revealed; unseen terms count as neutral (0)."""
    ok = [c for c in calls if c.error is None]
    prof = {c.args["person"]: c.observation for c in ok if c.name == "get_profile"}
    sched = {c.args["person"]: c.observation for c in ok if c.name == "get_schedule_context"}
    ov = next((c.observation for c in ok if c.name == "topic_overlap"), None)
    terms: dict[str, float] = {}
    if len(prof) == 2:
        terms["role"] = _role_term(prof["A"]["role"], prof["B"]["role"])
        terms["seniority"] = _seniority_term(prof["A"]["seniority"], prof["B"]["seniority"])
    if prof:
        terms["engagement"] = _engagement_term([p["engagement"] for p in prof.values()])
        terms["energy"] = _energy_term([p["energy"] for p in prof.values()])
    if ov is not None:
        terms["topic"] = _topic_term(ov["jaccard"])
    if sched:
        # One person's count stands in for both when only one schedule was looked up.
        terms["fatigue"] = _fatigue_term(sum(x["meetings_so_far"] for x in sched.values()) * 2 / len(sched))
        first = next(iter(sched.values()))
        terms["timing"] = _timing_term(first["time_of_day"], first["day"])
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
        prob = _sigmoid(z)
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


def tool_use_score(calls: Sequence[ToolCall]) -> float:
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


# ---------------------------------------------------------------- preference pairs and files


def build_preference_pairs(
    trajectories: Sequence[Trajectory], scenarios: Sequence[Scenario], min_margin: float
) -> list[dict[str, Any]]:
    """Pairs from the same scenario: best vs worst, second best vs second worst, ..., each kept
    only if the rewards differ by at least `min_margin` and the texts differ. Every trajectory is
    used at most once, so no single trace dominates the DPO data."""
    by_id = {s.scenario_id: s for s in scenarios}
    groups: dict[str, list[tuple[float, Trajectory]]] = defaultdict(list)
    for t in trajectories:
        groups[t.scenario_id].append((calculate_reward(t, by_id[t.scenario_id]).total, t))
    pairs = []
    for sid, group in groups.items():
        group.sort(key=lambda rt: rt[0], reverse=True)
        for i in range(len(group) // 2):
            (r_hi, hi), (r_lo, lo) = group[i], group[-1 - i]
            if r_hi - r_lo < min_margin or hi.text == lo.text:
                continue
            pairs.append(
                {
                    "prompt": hi.prompt,
                    "chosen": hi.text,
                    "rejected": lo.text,
                    "scenario_id": sid,
                    "chosen_reward": round(r_hi, 4),
                    "rejected_reward": round(r_lo, 4),
                    "margin": round(r_hi - r_lo, 4),
                }
            )
    return pairs


def trace_record(traj: Trajectory, scenario: Scenario | None = None) -> dict[str, Any]:
    """One entry of agent_traces.json; with the scenario it also carries truth and reward."""
    rec: dict[str, Any] = {
        "scenario_id": traj.scenario_id,
        "policy": traj.policy,
        "initial_user_prompt": traj.prompt,
        "tool_calls": [
            {"tool": c.name, "args": c.args, "observation": c.observation, "error": c.error}
            for c in traj.tool_calls
        ],
        "tools_used": sorted({c.name for c in traj.tool_calls}),
        "num_tool_calls": len(traj.tool_calls),
        "predicted_probability": traj.probability,
        "reason": traj.reason,
        "final_answer": traj.final_text,
        "text": traj.text,
    }
    if scenario is not None:
        pred = traj.probability
        rec |= {
            "ground_truth_prob": round(scenario.ground_truth_prob, 4),
            "true_outcome": "YES" if scenario.outcome else "NO",
            "agent_outcome": None if pred is None else ("YES" if pred > 0.5 else "NO"),
            "correct": pred is not None and int(pred > 0.5) == scenario.outcome,
            "reward": calculate_reward(traj, scenario).as_dict(),
        }
    return rec


def _write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written file under the real name


def save_traces(
    path: str | Path, trajectories: Sequence[Trajectory], scenarios: Sequence[Scenario] | None = None
) -> None:
    """Write agent_traces.json: a list of `trace_record`s (with rewards when scenarios are given)."""
    by_id = {s.scenario_id: s for s in scenarios or ()}
    _write_json(path, [trace_record(t, by_id.get(t.scenario_id)) for t in trajectories])


def save_pairs(path: str | Path, pairs: Sequence[dict[str, Any]]) -> None:
    """Write preference_pairs.json: a list of {prompt, chosen, rejected, scenario_id, rewards}."""
    _write_json(path, list(pairs))


# ---------------------------------------------------------------- SFT rows

SFT_INSTRUCTION = (
    '\nWill this meeting succeed? Reply as Final Answer: {"probability": <0-1>, "reason": "<reason>"}'
)


def sft_rows(scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    """TRL conversational prompt-completion rows. The target is the noise-free probability
    (2 decimals), not the realised outcome or the noisy probability: the noise is unobservable,
    so the expected probability is the best any reader of the text can say, and training on it
    avoids teaching the model to fit noise."""
    return [
        {
            "prompt": [{"role": "user", "content": input_text(s) + SFT_INSTRUCTION}],
            "completion": [{"role": "assistant", "content": final_answer(s.clean_prob, s.reason)}],
        }
        for s in scenarios
    ]


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


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (e.g. 0/1 correctness per example)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = np.array([x[rng.integers(0, x.size, x.size)].mean() for _ in range(n_boot)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
