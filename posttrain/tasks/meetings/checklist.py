"""The checklist a meetings answer opens with: each term of the formula as the inputs that set it,
copied from what the model read, one word for the side it pushes, then the count of pros and cons.

Why: asked for the answer alone, smollm2-135m keyed it on one salient feature (0.58-0.62 accuracy
on held-out scenarios at ~100 SFT steps, below the topic term alone, 0.68); a sign vote over the
seven terms is right 0.78 of the time, the formula 0.88. Each checklist word is a local reading
of two values the line has just copied (`engagement 4 and 2: low`), so the model learns seven
small comparisons instead of one seven-way sum, and the same lines open the direct answer (from
the scenario text) and the agent's (from its observations), so what one teaches serves the
other. With it the direct predictor went from 0.62 to 0.70 (n=200, same rows and rate; words right
0.58 for roles, a 36-pair table, 0.92-1.00 for the rest), and in the align bench the SFT predictor
reached 0.81 and the DPO agent 0.70 (n=64; bench/results/align_quality.json, meetings and
meetings_variants).
"""

from __future__ import annotations

from collections.abc import Sequence

from posttrain.tasks.meetings.scenario import (
    Scenario,
    energy_term,
    engagement_term,
    fatigue_term,
    role_term,
    seniority_term,
    timing_term,
    topic_term,
)
from posttrain.tasks.meetings.tools import ExecutedCall, execute_call, seen

# The word for a term that helped, and for one that hurt; a term of exactly 0 is "neutral".
WORDS: dict[str, tuple[str, str]] = {
    "role": ("fit", "clash"),
    "topic": ("overlap", "apart"),
    "seniority": ("close", "gap"),
    "engagement": ("high", "low"),
    "energy": ("high", "low"),
    "fatigue": ("rested", "tired"),
    "timing": ("good", "bad"),
}

# One checklist line: (term, its inputs as shown, the term's value).
Line = tuple[str, str, float]


def checklist(lines: Sequence[Line]) -> str:
    """`Checklist: <inputs>: <word>; ... Pros p, cons c.`; empty when nothing is known."""
    if not lines:
        return ""
    words = []
    for term, shown, value in lines:
        good, bad = WORDS[term]
        words.append(f"{shown}: {good if value > 0 else bad if value < 0 else 'neutral'}")
    pros = sum(v > 0 for _, _, v in lines)
    cons = sum(v < 0 for _, _, v in lines)
    return "Checklist: " + "; ".join(words) + f". Pros {pros}, cons {cons}."


# Every call there is for a scenario, so its lines come from the same reading as the agent's.
_ALL_CALLS: tuple[tuple[str, str], ...] = (
    ("get_profile", "A"),
    ("get_profile", "B"),
    ("topic_overlap", ""),
    ("get_schedule_context", "A"),
    ("get_schedule_context", "B"),
)


def scenario_lines(s: Scenario) -> list[Line]:
    """All seven terms, read from what every tool shows for the scenario (the same values
    `input_text` shows), so the direct answer's lines are the agent's with everything seen."""
    args = {"get_profile": {}, "topic_overlap": {"a": "A", "b": "B"}, "get_schedule_context": {"day": s.day}}
    return observed_lines(
        [execute_call(s, name, args[name] | ({"person": who} if who else {})) for name, who in _ALL_CALLS]
    )


def observed_lines(calls: Sequence[ExecutedCall]) -> list[Line]:
    """The terms the calls revealed in full (both attendees' values), in the formula's order; a
    term half seen is left out rather than guessed."""
    prof, sched, overlap = seen(calls)
    lines: list[Line] = []
    both = "A" in prof and "B" in prof
    if both:
        pa, pb = prof["A"], prof["B"]
        lines.append(("role", f"roles {pa['role']} and {pb['role']}", role_term(pa["role"], pb["role"])))
    if overlap is not None:
        k, j = len(overlap["shared"]), overlap["jaccard"]
        if both:
            shown = f"shared {k} of {len(set(pa['interests']) | set(pb['interests']))} interests"
        elif j > 0:  # one profile or none: the union from the Jaccard
            shown = f"shared {k} of {round(k / j)} interests"
        else:
            shown = f"shared {k} interests"
        lines.append(("topic", shown, topic_term(j)))
    if both:
        se, en, ey = (
            (pa["seniority"], pb["seniority"]),
            (pa["engagement"], pb["engagement"]),
            (pa["energy"], pb["energy"]),
        )
        lines += [
            ("seniority", f"seniority {se[0]} and {se[1]}", seniority_term(*se)),
            ("engagement", f"engagement {en[0]} and {en[1]}", engagement_term(en)),
            ("energy", f"energy {ey[0]} and {ey[1]}", energy_term(ey)),
        ]
    if "A" in sched and "B" in sched:
        ma, mb = sched["A"]["meetings_so_far"], sched["B"]["meetings_so_far"]
        lines.append(("fatigue", f"meetings {ma} and {mb}", fatigue_term(ma + mb)))
    if sched:
        first = next(iter(sched.values()))
        shown = f"day {first['day']} {first['time_of_day']}"
        lines.append(("timing", shown, timing_term(first["time_of_day"], first["day"])))
    return lines
