"""SFT demos that answer well inside the step cap, and the calibrated reward align ranks by:
the call-count distribution, calibration per number of calls, and the reward's ordering."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from posttrain.config import AlignConfig
from posttrain.tasks import meetings as mt


def _calls(s: mt.Scenario, keys: list[str]) -> list[mt.ExecutedCall]:
    plan = {
        "pA": ("get_profile", {"person": "A"}),
        "pB": ("get_profile", {"person": "B"}),
        "ov": ("topic_overlap", {"a": "A", "b": "B"}),
        "sA": ("get_schedule_context", {"person": "A", "day": s.day}),
        "sB": ("get_schedule_context", {"person": "B", "day": s.day}),
    }
    return [mt.execute_call(s, *plan[k]) for k in keys]


def _traj(s: mt.Scenario, calls: list[mt.ExecutedCall], prob: float | None) -> mt.Trajectory:
    final = "" if prob is None else f"Thought: x\n{mt.final_answer(prob, 'fatigue')}"
    return mt.Trajectory(s.scenario_id, mt.agent_prompt(s), calls, prob, None, final)


def test_demos_answer_after_one_to_three_calls_a_few_after_none_never_at_the_cap():
    rng = random.Random(0)
    demos = [mt.demo_trajectory(s, rng) for s in mt.generate_scenarios(600, 5)]
    counts = Counter(len(d.tool_calls) for d in demos)
    print("demo tool calls:", dict(sorted(counts.items())))  # {0: ~60, 1: ~90, 2: ~150, 3: ~300}
    assert set(counts) == {0, 1, 2, 3}
    assert 0.05 <= counts[0] / len(demos) <= 0.16
    assert sum(counts[k] for k in (1, 2, 3)) / len(demos) >= 0.84
    cap = min(AlignConfig().rollouts.max_steps, AlignConfig().evaluation.max_steps)
    assert max(counts) + 1 < cap  # the answer turn lands at least one turn before the last
    for d in demos:
        assert mt.parse_prediction(d.final_text) == (d.probability, d.reason)
        # A forced answer continues exactly the text the demos taught.
        assert d.final_text.startswith(mt.FORCED_PREFIX)
        assert all(c.error is None for c in d.tool_calls)


def test_demo_answers_are_calibrated_to_what_their_calls_revealed():
    scenarios = mt.generate_scenarios(1500, 6)
    outcomes = [s.outcome for s in scenarios]
    rng = random.Random(1)
    scores = {}
    for k in range(4):
        preds = [mt.demo_trajectory(s, rng, calls=k).probability for s in scenarios]
        scores[k] = mt.brier(preds, outcomes)
        # Calibrated in the large: the mean answer sits at the success rate, whatever was seen.
        assert sum(preds) / len(preds) == pytest.approx(sum(outcomes) / len(outcomes), abs=0.04)
    assert scores[0] > scores[1] > scores[2] > scores[3]
    assert scores[0] < 0.25 + 0.005  # seeing nothing, a calibrated answer is no worse than 0.5
    assert mt.accuracy([mt.demo_trajectory(s, rng, 3).probability for s in scenarios], outcomes) > 0.78


def test_training_data_demos_are_the_early_answering_ones():
    data = mt.MeetingsAlign().training_data(
        rows=4, demos=40, val_rows=0, seed=3, compact=True, synthetic_pairs=0, min_margin=0.2
    )
    demos = [c for c in data.sft_train if c[0]["content"] == data.system]
    assert len(demos) == 40
    calls = [sum(m["role"] == "assistant" and "Action:" in m["content"] for m in c) for c in demos]
    assert max(calls) <= 3 and 0 in calls and 3 in calls
    for conv in demos:
        assert conv[-1]["role"] == "assistant" and mt.parse_prediction(conv[-1]["content"]) is not None


def test_calibrated_reward_pays_for_the_answer_before_the_calls():
    person = mt.Person("founder", "mid", ("AI",), 3, 3, 2)
    s = mt.Scenario("r-1", person, person, 1, "morning", 50.0)  # the noise makes it succeed
    assert s.outcome == 1
    three = _calls(s, ["pA", "pB", "ov"])
    five = _calls(s, ["pA", "pB", "ov", "sA", "sB"])
    calibrated = mt.calibrated_reward(_traj(s, three, 0.9), s)
    # tool use of the three demo calls: 0.4 (2-5 calls) + 0.2 (no repeat) + 0.3 * 2/3 + 0.1 = 0.9
    assert calibrated.as_dict() == pytest.approx(
        {"answered": 1.0, "brier": 0.99, "tool_use": 0.9, "total": 0.1 + 0.75 * 0.99 + 0.15 * 0.9}
    )
    uncalibrated = mt.calibrated_reward(_traj(s, three, 0.2), s)
    many_calls_no_answer = mt.calibrated_reward(_traj(s, [*five, *five[:2]], None), s)
    assert calibrated.total > uncalibrated.total > many_calls_no_answer.total == 0.0
    # The worst answer made without a call still beats every call without an answer ...
    reward = lambda calls, p: mt.calibrated_reward(_traj(s, calls, p), s).total  # noqa: E731
    assert reward([], 0.0) > reward(five, None)
    # ... and a sharper right answer with no calls beats a hedge after all five calls.
    assert reward([], 0.9) > reward(five, 0.5)
    with pytest.raises(ValueError, match="trajectory is for"):
        mt.calibrated_reward(_traj(mt.generate_scenarios(1, 0)[0], three, 0.5), s)


def test_rollout_traces_and_synthetic_pairs_are_ranked_by_the_calibrated_reward():
    data = mt.MeetingsAlign().training_data(
        rows=4, demos=0, val_rows=0, seed=8, compact=True, synthetic_pairs=30, min_margin=0.1
    )
    scenarios = {s.scenario_id: s for s in mt.generate_scenarios(30, 9)}
    assert data.synthetic_pairs
    for p in data.synthetic_pairs:
        s = scenarios[p["id"]]
        for side in ("chosen", "rejected"):
            prob, _ = mt.parse_prediction(p[side][-1]["content"])
            # What is left after the answer and Brier parts is the tool part, in [0, 0.15].
            rest = p[f"{side}_reward"] - 0.1 - 0.75 * (1 - (prob - s.outcome) ** 2)
            assert -1e-4 <= rest <= 0.15 + 1e-4
