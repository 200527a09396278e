"""The checklist that opens a meetings answer: right words, the same lines from the text and
from the tools, and nothing guessed for a term the calls did not reveal in full."""

import random

import posttrain.tasks.meetings as mt
from posttrain.tasks.meetings.checklist import WORDS, checklist, observed_lines, scenario_lines
from posttrain.tasks.meetings.data import direct_completion

ALL_CALLS = (
    *mt.DEMO_CALLS,
    ("get_schedule_context", {"person": "A"}),
    ("get_schedule_context", {"person": "B"}),
)


def _calls(s: mt.Scenario, plan) -> list[mt.ExecutedCall]:
    return [mt.execute_call(s, n, {**a, "day": s.day} if "schedule" in n else a) for n, a in plan]


def test_every_word_has_its_terms_sign_and_the_count_adds_up():
    for s in mt.generate_scenarios(200, 3):
        text = checklist(scenario_lines(s))
        terms = s.contributions()
        words = [
            part.rsplit(": ", 1)[1]
            for part in text.removeprefix("Checklist: ").split(". Pros")[0].split("; ")
        ]
        for (term, value), word in zip(terms.items(), words, strict=True):
            good, bad = WORDS[term]
            assert word == (good if value > 0 else bad if value < 0 else "neutral")
        pros, cons = sum(v > 0 for v in terms.values()), sum(v < 0 for v in terms.values())
        assert text.endswith(f"Pros {pros}, cons {cons}.")


def test_the_tools_give_the_same_lines_as_the_text_once_everything_is_seen():
    for s in mt.generate_scenarios(50, 4):
        # The same text (the observation rounds the Jaccard to 3 places, so values differ by ~1e-3).
        assert checklist(observed_lines(_calls(s, ALL_CALLS))) == checklist(scenario_lines(s))


def test_a_term_half_seen_is_left_out():
    s = mt.generate_scenarios(1, 5)[0]
    assert observed_lines([]) == [] and checklist([]) == ""
    one_profile = {t for t, _, _ in observed_lines(_calls(s, mt.DEMO_CALLS[:1]))}
    assert one_profile == set()  # every profile term needs both attendees
    one_schedule = {t for t, _, _ in observed_lines(_calls(s, ALL_CALLS[3:4]))}
    assert one_schedule == {"timing"}  # the time of day is shared; meetings need both
    failed = mt.execute_call(s, "get_profile", {"person": "C"})
    assert failed.error and observed_lines([failed]) == []


def test_answers_open_with_the_checklist_and_still_parse():
    s = mt.generate_scenarios(1, 6)[0]
    text = direct_completion(s)
    assert text.startswith("Checklist: roles ") and mt.parse_prediction(text) == (
        round(s.clean_prob, 2),
        s.reason,
    )
    demo = mt.demo_trajectory(s, random.Random(0), calls=3)
    first_line = demo.final_text.splitlines()[0]
    assert first_line.startswith(f"{mt.FORCED_PREFIX} Checklist: roles ")
    assert "meetings" not in first_line  # no schedule call, so no fatigue line
