"""Meeting scenarios (seed 002) and the hidden outcome: the documented formula (`FORMULA_DOC`)
that turns two attendees' features into a success probability, the noise that decides what
actually happened, and the text a model reads.

Two attendees, A and B, meet at a conference. Their roles, seniority, interests, engagement,
energy and fatigue, plus the time of day and the conference day, set the success probability.
Everything here is deterministic given a seed and needs no model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

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


# The formula's terms, one function each: `Scenario.contributions` applies them to the true
# features, a scripted agent (trajectories.py) to what its tool calls revealed.


def role_term(a: str, b: str) -> float:
    return W_ROLE * role_complementarity(a, b)


def topic_term(jaccard: float) -> float:
    return W_TOPIC * (jaccard - C_TOPIC)


def seniority_term(a: str, b: str) -> float:
    return W_SENIORITY * (C_GAP - abs(SENIORITY_LEVEL[a] - SENIORITY_LEVEL[b]))


def engagement_term(levels: Sequence[int]) -> float:
    return W_ENGAGEMENT * (sum(levels) / len(levels) - 3)


def energy_term(levels: Sequence[int]) -> float:
    return W_ENERGY * (min(levels) - C_ENERGY)


def fatigue_term(total_meetings: float) -> float:
    return -W_FATIGUE * (total_meetings - C_MEETINGS)


def timing_term(time_of_day: str, day: int) -> float:
    return TIME_EFFECT[time_of_day] + DAY_EFFECT[day]


def sigmoid(x: float) -> float:
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
            "role": role_term(a.role, b.role),
            "topic": topic_term(self.jaccard),
            "seniority": seniority_term(a.seniority, b.seniority),
            "engagement": engagement_term([a.engagement, b.engagement]),
            "energy": energy_term([a.energy, b.energy]),
            "fatigue": fatigue_term(a.meetings_so_far + b.meetings_so_far),
            "timing": timing_term(self.time_of_day, self.day),
        }

    @property
    def logit(self) -> float:
        return sum(self.contributions().values())

    @property
    def clean_prob(self) -> float:
        """Noise-free success probability: what a perfect reader of the text should predict."""
        return sigmoid(self.logit)

    @property
    def ground_truth_prob(self) -> float:
        return sigmoid(self.logit + self.noise)

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
