"""meetings as an align task: figures and references by hand, held-out scenarios from their own
seed, and the training data the recipe gets."""

from __future__ import annotations

import pytest

from posttrain.tasks import meetings as mt


def _person(role: str) -> mt.Person:
    return mt.Person(role, "mid", ("AI",), 3, 3, 2)


def _scenario(i: int, outcome: int) -> mt.Scenario:
    # A huge logit-space noise fixes the realised outcome whatever the features say.
    return mt.Scenario(
        f"t-{i}", _person("founder"), _person("investor"), 1, "morning", 50.0 if outcome else -50.0
    )


def test_meetings_metrics_by_hand():
    scenarios = [_scenario(i, o) for i, o in enumerate([1, 0, 0, 1])]
    figs = mt.meetings_metrics([0.9, 0.2, None, 0.5], scenarios, tool_calls=[2, 5, 0, 6])
    assert figs["accuracy"].value == 0.5  # None is wrong, 0.5 is the "fails" side
    assert figs["brier"].value == pytest.approx((0.01 + 0.04 + 0.25 + 0.25) / 4)
    assert figs["parse_rate"].value == 0.75
    assert figs["mean_tool_calls"].value == 3.25
    assert figs["calls_2_to_5"].value == 0.5
    refs = mt.meetings_references([1, 1, 0], scenarios)
    assert refs["majority_baseline"].value == 0.5
    assert refs["majority_baseline_brier"].value == pytest.approx(((2 / 3 - 1) ** 2 + (2 / 3) ** 2) / 2)
    # founder + investor is the best pairing: the noise-free formula says success for all four.
    assert all(s.clean_prob > 0.5 for s in scenarios)
    assert refs["oracle_accuracy"].value == 0.5
    assert mt.MeetingsAlign().references([1, 1, 0], {"heldout": scenarios}) == refs


def test_eval_sets_are_scenarios_from_the_held_out_seed():
    task = mt.MeetingsAlign()
    assert task.eval_size(episodes=3, scenarios=4) == 4
    scenarios = task.eval_sets(1000, 4, compact=True)["heldout"]
    assert [s.scenario_id for s in scenarios] == [f"s1000-{i:05d}" for i in range(4)]


def test_training_data_mixes_direct_rows_and_agent_demos():
    data = mt.MeetingsAlign().training_data(
        rows=12, demos=3, val_rows=2, seed=42, compact=True, synthetic_pairs=4, min_margin=0.2
    )
    conversations = data.sft_train + data.sft_val
    assert len(conversations) == 15 and len(data.sft_val) == 2
    demos = [c for c in conversations if c[0] == {"role": "system", "content": data.system}]
    assert len(demos) == 3  # the direct rows carry their own instruction, not the tool prompt
    assert len(data.train_outcomes) == 12
    assert 0 < len(data.synthetic_pairs) <= 4
    for p in data.synthetic_pairs:
        assert p["chosen_reward"] - p["rejected_reward"] >= 0.2 - 1e-9
        assert p["prompt"][0]["content"] == data.system
