from __future__ import annotations

import csv
import json
import math
import random
import re

import pytest

from posttrain.errors import DataError
from posttrain.tasks import meetings as m
from posttrain.toolcall import ToolCall


def _scenario(noise_for_gt: float | None = None) -> m.Scenario:
    """Founder meets investor: hand-computed logit 10.13667 (see test_formula_by_hand)."""
    s = m.Scenario(
        scenario_id="hand-1",
        a=m.Person("founder", "senior", ("AI", "fintech"), engagement=4, energy=3, meetings_so_far=2),
        b=m.Person("investor", "senior", ("crypto", "fintech"), engagement=4, energy=5, meetings_so_far=2),
        day=1,
        time_of_day="morning",
        noise=0.0,
    )
    if noise_for_gt is None:
        return s
    # Choose the noise so that ground_truth_prob is exactly `noise_for_gt`.
    target_logit = math.log(noise_for_gt / (1 - noise_for_gt))
    return m.Scenario(s.scenario_id, s.a, s.b, s.day, s.time_of_day, noise=target_logit - s.logit)


def _traj(s: m.Scenario, calls: list[tuple[str, dict]], prob: float | None) -> m.Trajectory:
    tool_calls = [m.execute_call(s, name, args) for name, args in calls]
    reason = "complementary roles"
    return m.Trajectory(
        s.scenario_id, m.agent_prompt(s), tool_calls, prob, reason, m.final_answer(prob or 0, reason)
    )


GOOD_CALLS = [
    ("get_profile", {"person": "A"}),
    ("get_profile", {"person": "B"}),
    ("topic_overlap", {"a": "A", "b": "B"}),
    ("get_schedule_context", {"person": "A", "day": 1}),
]


# ------------------------------------------------------------- generator and ground truth


def test_generation_is_deterministic_per_seed():
    assert m.generate_scenarios(50, 3) == m.generate_scenarios(50, 3)
    assert m.generate_scenarios(50, 3) != m.generate_scenarios(50, 4)
    ids = {s.scenario_id for s in m.generate_scenarios(50, 3)} | {
        s.scenario_id for s in m.generate_scenarios(50, 4)
    }
    assert len(ids) == 100  # splits from different seeds never share ids
    t1 = m.scripted_trajectories(m.generate_scenarios(5, 3), 3, seed=1)
    t2 = m.scripted_trajectories(m.generate_scenarios(5, 3), 3, seed=1)
    assert [t.text for t in t1] == [t.text for t in t2]


def test_formula_by_hand():
    s = _scenario()
    c = s.contributions()
    assert c["role"] == pytest.approx(4.0)  # 4.0 * founder+investor 1.0
    assert c["topic"] == pytest.approx(8.0 * (1 / 3 - 0.45))  # jaccard {fintech} / {AI, crypto, fintech}
    assert c["seniority"] == pytest.approx(1.25)  # same level
    assert c["engagement"] == pytest.approx(1.7)  # mean 4
    assert c["energy"] == pytest.approx(1.4 * 0.8)  # min energy 3
    assert c["fatigue"] == pytest.approx(1.0)  # 4 meetings in total, 2 below the centre
    assert c["timing"] == pytest.approx(2.0)  # morning 1.2 + day 1 0.8
    assert s.logit == pytest.approx(10.136667, abs=1e-5)
    assert s.reason == "complementary roles"  # the largest positive term
    assert m.role_complementarity("investor", "founder") == m.role_complementarity("founder", "investor")


def test_outcome_is_the_noisy_probability_thresholded():
    for s in m.generate_scenarios(500, 5):
        assert s.outcome == int(s.ground_truth_prob > 0.5)
        assert 0.0 < s.clean_prob < 1.0 and 0.0 < s.ground_truth_prob < 1.0


def test_task_leaves_room_to_learn_on_held_out_scenarios():
    train, test = m.generate_scenarios(2000, 0), m.generate_scenarios(2000, 1)
    majority = m.majority_baseline([s.outcome for s in train], [s.outcome for s in test])
    oracle = m.oracle_accuracy(test)
    assert majority <= 0.60
    assert oracle >= 0.85
    # sigmoid(z) is the calibrated success probability (logistic noise), so it beats a coin on Brier
    # and its mean matches the success rate.
    outcomes = [s.outcome for s in test]
    assert abs(sum(s.clean_prob for s in test) / len(test) - sum(outcomes) / len(test)) < 0.03
    assert m.brier([s.clean_prob for s in test], outcomes) < 0.12
    # Reasons are varied, so the categorical label carries information.
    assert len({s.reason for s in test}) >= 10


_TEXT = re.compile(
    r"A: (?P<sa>\w+) (?P<ra>[\w ]+?); likes (?P<ia>[^;]+); engagement (?P<ea>\d)/5, energy (?P<na>\d)/5, "
    r"(?P<ma>\d+) meetings? today\. B: (?P<sb>\w+) (?P<rb>[\w ]+?); likes (?P<ib>[^;]+); "
    r"engagement (?P<eb>\d)/5, energy (?P<nb>\d)/5, (?P<mb>\d+) meetings? today\. "
    r"Shared interests: [^.]+\. Day (?P<day>\d) of 3, (?P<tod>\w+)\.$"
)


def test_every_feature_is_readable_from_input_text():
    """Rebuild each scenario from its text alone: the label is a function of what the model reads."""
    for s in m.generate_scenarios(300, 8):
        g = _TEXT.match(m.input_text(s))
        assert g, m.input_text(s)

        def person(x: str, g=g) -> m.Person:
            interests = tuple(g[f"i{x}"].split(", "))
            return m.Person(
                g[f"r{x}"], g[f"s{x}"], interests, int(g[f"e{x}"]), int(g[f"n{x}"]), int(g[f"m{x}"])
            )

        rebuilt = m.Scenario("x", person("a"), person("b"), int(g["day"]), g["tod"], 0.0)
        assert rebuilt.clean_prob == pytest.approx(s.clean_prob, abs=1e-12)


# ------------------------------------------------------------- CSV


def test_csv_has_the_seed_columns_and_reads_back(tmp_path):
    scenarios = m.generate_scenarios(40, 2)
    path = tmp_path / "data" / "sft_training_data.csv"
    m.write_csv(path, scenarios)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "input_text",
        "target_probability",
        "target_reason",
        "ground_truth_prob",
        "scenario_id",
        "outcome",
    ]
    assert len(rows) == 40
    for row, s in zip(rows, scenarios, strict=True):
        assert row["input_text"] == m.input_text(s)
        assert float(row["target_probability"]) == pytest.approx(s.clean_prob, abs=1e-4)
        assert float(row["ground_truth_prob"]) == pytest.approx(s.ground_truth_prob, abs=1e-4)
        assert row["target_reason"] in m.REASONS
        assert int(row["outcome"]) == s.outcome
    parsed = m.read_csv(path)
    assert parsed[3]["target_probability"] == pytest.approx(scenarios[3].clean_prob, abs=1e-4)
    assert parsed[3]["outcome"] == scenarios[3].outcome


def test_read_csv_names_line_and_field(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "input_text,target_probability,target_reason,ground_truth_prob\nx,0.5,fatigue,0.4\nx,1.7,fatigue,0.4\n"
    )
    with pytest.raises(DataError, match=r'bad.csv:3: field "target_probability" must be in \[0, 1\]'):
        m.read_csv(path)
    path.write_text("input_text,target_probability,target_reason\nx,0.5,fatigue\n")
    with pytest.raises(DataError, match=r'bad.csv:2: field "ground_truth_prob" is missing'):
        m.read_csv(path)


# ------------------------------------------------------------- tools


def test_tool_schemas_match_the_tools():
    schemas = m.tool_schemas()
    assert [s["function"]["name"] for s in schemas] == list(m.TOOL_NAMES)
    for schema in schemas:
        assert schema["type"] == "function"
        params = schema["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert set(params["required"]) == set(params["properties"])
    tools = m.make_tools(_scenario())
    assert set(tools) == set(m.TOOL_NAMES)
    assert tools["get_profile"](person="B") == {
        "person": "B",
        "role": "investor",
        "seniority": "senior",
        "interests": ["crypto", "fintech"],
        "engagement": 4,
        "energy": 5,
    }
    assert tools["get_schedule_context"](person="A", day=1) == {
        "person": "A",
        "day": 1,
        "meetings_so_far": 2,
        "time_of_day": "morning",
    }
    assert tools["topic_overlap"](a="A", b="B") == {"shared": ["fintech"], "jaccard": 0.333}


def test_bad_tool_calls_become_error_observations():
    s = _scenario()
    with pytest.raises(ValueError, match='person must be "A" or "B"'):
        m.make_tools(s)["get_profile"](person="C")
    for name, args in [
        ("get_profile", {"person": "C"}),
        ("get_profile", {"who": "A"}),
        ("get_schedule_context", {"person": "A", "day": 2}),
        ("topic_overlap", {"a": "A", "b": "A"}),
        ("weather", {}),
    ]:
        call = m.execute_call(s, name, args)
        assert call.error and call.observation == {"error": call.error}
    assert "unknown tool 'weather'" in m.execute_call(s, "weather", {}).error


def test_an_executed_call_wraps_the_shared_tool_call():
    s = _scenario()
    args = {"person": "B"}
    done = m.execute_call(s, "get_profile", args, thought="Who is B?")
    assert done.call == ToolCall("get_profile", {"person": "B"})
    assert (done.name, done.args, done.thought, done.error) == ("get_profile", args, "Who is B?", None)
    assert done.observation == m.get_profile(s, "B")
    args["person"] = "A"  # the record keeps its own copy of the arguments
    assert done.args == {"person": "B"}


# ------------------------------------------------------------- rewards


def test_reward_by_hand():
    s = _scenario(noise_for_gt=0.8)
    assert s.ground_truth_prob == pytest.approx(0.8) and s.outcome == 1
    perfect = m.calculate_reward(_traj(s, GOOD_CALLS, 0.8), s)
    assert (perfect.accuracy, perfect.side, perfect.tool_use) == pytest.approx((1.0, 1.0, 1.0))
    assert perfect.total == pytest.approx(1.0)
    # Wrong side, one repeated call, two of three tools:
    # accuracy 1 - |0.3 - 0.8| = 0.5; side 0; tools 0.4 + 0 + 0.3 * 2/3 + 0.1 = 0.7
    # total 0.5 * 0.5 + 0.3 * 0 + 0.2 * 0.7 = 0.39
    calls = [GOOD_CALLS[0], GOOD_CALLS[0], GOOD_CALLS[2]]
    wrong = m.calculate_reward(_traj(s, calls, 0.3), s)
    assert wrong.accuracy == pytest.approx(0.5)
    assert wrong.side == 0.0
    assert wrong.tool_use == pytest.approx(0.7)
    assert wrong.total == pytest.approx(0.39)
    assert perfect.total > wrong.total
    unparsed = m.calculate_reward(_traj(s, GOOD_CALLS, None), s)
    assert unparsed.total == pytest.approx(0.2)  # only the tool-use part
    with pytest.raises(ValueError, match="trajectory is for"):
        m.calculate_reward(_traj(m.generate_scenarios(1, 0)[0], GOOD_CALLS[:2], 0.5), s)


def test_tool_use_penalises_zero_and_six_calls_and_errors():
    s = _scenario()
    score = lambda calls: m.tool_use_score([m.execute_call(s, n, a) for n, a in calls])  # noqa: E731
    assert score(GOOD_CALLS) == pytest.approx(1.0)
    assert score([]) == 0.0
    six = [
        *GOOD_CALLS,
        ("get_schedule_context", {"person": "B", "day": 1}),
        ("topic_overlap", {"a": "B", "b": "A"}),
    ]
    assert score(six) == pytest.approx(0.6)  # distinct, valid, all tools: only the count part is lost
    one = score(GOOD_CALLS[:1])
    assert one == pytest.approx(0.2 + 0.1 + 0.1)  # no repeats, 1/3 of the tools, valid
    with_error = [*GOOD_CALLS[:3], ("get_schedule_context", {"person": "A", "day": 3})]
    # 4 calls, no repeats, 2/3 tools used successfully, 3/4 valid
    assert score(with_error) == pytest.approx(0.4 + 0.2 + 0.2 + 0.075)


# ------------------------------------------------------------- trajectories and pairs


def test_scripted_trajectories_mix_successes_and_failures():
    scenarios = m.generate_scenarios(30, 11)
    by_id = {s.scenario_id: s for s in scenarios}
    trajs = m.scripted_trajectories(scenarios, per_scenario=2, seed=0)
    assert len(trajs) >= 50
    assert all(2 <= len(t.tool_calls) <= 5 for t in trajs)
    outcomes = [by_id[t.scenario_id].outcome for t in trajs]
    correct = [int(t.probability > 0.5) == o for t, o in zip(trajs, outcomes, strict=True)]
    assert 0 < sum(outcomes) < len(trajs)  # meetings that succeed and that fail
    assert 0 < sum(correct) < len(trajs)  # agents that are right and that are wrong
    assert m.accuracy([t.probability for t in trajs], outcomes) > 0.60  # seed 002's phase-2 target
    for t in trajs:
        assert m.parse_prediction(t.text) == (t.probability, t.reason)
    # Quality matters: perfect agents earn more than careless ones on the same scenarios.
    rng = random.Random(0)
    good = [m.calculate_reward(m.scripted_trajectory(s, rng, 1.0), s).total for s in scenarios]
    bad = [m.calculate_reward(m.scripted_trajectory(s, rng, 0.0), s).total for s in scenarios]
    assert sum(good) / len(good) > sum(bad) / len(bad) + 0.15


def test_preference_pairs_share_scenario_and_respect_margin(tmp_path):
    scenarios = m.generate_scenarios(30, 12)
    by_id = {s.scenario_id: s for s in scenarios}
    trajs = m.scripted_trajectories(scenarios, per_scenario=4, seed=3)
    pairs = m.build_preference_pairs(trajs, scenarios, min_margin=0.2)
    assert len(pairs) >= 10
    texts = {t.text: t for t in trajs}
    for p in pairs:
        chosen, rejected = texts[p["chosen"]], texts[p["rejected"]]
        assert chosen.scenario_id == rejected.scenario_id == p["scenario_id"]
        assert p["prompt"] == chosen.prompt == rejected.prompt == m.agent_prompt(by_id[p["scenario_id"]])
        r_c = m.calculate_reward(chosen, by_id[p["scenario_id"]]).total
        r_r = m.calculate_reward(rejected, by_id[p["scenario_id"]]).total
        assert r_c - r_r >= 0.2
        assert p["margin"] == pytest.approx(r_c - r_r, abs=1e-4)
    assert m.build_preference_pairs(trajs, scenarios, min_margin=1.01) == []  # rewards lie in [0, 1]

    m.save_traces(tmp_path / "trajectories" / "agent_traces.json", trajs, scenarios)
    m.save_pairs(tmp_path / "trajectories" / "preference_pairs.json", pairs)
    traces = json.loads((tmp_path / "trajectories" / "agent_traces.json").read_text())
    assert len(traces) == len(trajs)
    first = traces[0]
    assert first["num_tool_calls"] == len(first["tool_calls"]) == len(trajs[0].tool_calls)
    assert first["reward"]["total"] == pytest.approx(m.calculate_reward(trajs[0], scenarios[0]).total)
    assert first["true_outcome"] == ("YES" if scenarios[0].outcome else "NO")
    assert json.loads((tmp_path / "trajectories" / "preference_pairs.json").read_text()) == pairs


# ------------------------------------------------------------- parsing and SFT rows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Final Answer: {"probability": 0.72, "reason": "strong topic overlap"}',
            (0.72, "strong topic overlap"),
        ),
        ('Thought: tired.\nFinal Answer: {"probability": 0, "reason": "fatigue"} done', (0.0, "fatigue")),
        ('Final Answer: {"probability": "0.4", "reason": " low energy "}', (0.4, "low energy")),
        ('Final Answer: {"probability": 0.1}\nFinal Answer: {"probability": 0.9, "reason": "x"}', (0.9, "x")),
        ('Final Answer: {"probability": 1}', (1.0, "")),
        ('Final Answer: ```json\n{"probability": 0.3, "reason": "fatigue"}\n```', (0.3, "fatigue")),
        ("The probability is 0.7", None),
        ('Final Answer: I think {"probability": 0.7}', None),
        ('Final Answer: {"probability": 0.7, "reason": }', None),
        ('Final Answer: {"probability": 1.5, "reason": "fatigue"}', None),
        ('Final Answer: {"probability": true, "reason": "fatigue"}', None),
        ('Final Answer: {"probability": "high", "reason": "fatigue"}', None),
        ('Final Answer: {"reason": "fatigue"}', None),
        ("Final Answer: 0.7", None),
        ('Final Answer: [{"probability": 0.7}]', None),
    ],
)
def test_parse_prediction(text, expected):
    assert m.parse_prediction(text) == expected


def test_sft_rows_target_the_noise_free_probability():
    scenarios = m.generate_scenarios(20, 4)
    rows = m.sft_rows(scenarios)
    for row, s in zip(rows, scenarios, strict=True):
        assert [msg["role"] for msg in row["prompt"]] == ["user"]
        assert row["prompt"][0]["content"].startswith(m.input_text(s))
        assert [msg["role"] for msg in row["completion"]] == ["assistant"]
        assert m.parse_prediction(row["completion"][0]["content"]) == (round(s.clean_prob, 2), s.reason)


# ------------------------------------------------------------- metrics


def test_metrics_on_hand_written_cases():
    preds, outcomes = [0.9, 0.2, 0.6, 0.5], [1, 0, 0, 1]
    assert m.accuracy(preds, outcomes) == 0.5  # 0.5 counts as "fails"
    assert m.brier(preds, outcomes) == pytest.approx((0.01 + 0.04 + 0.36 + 0.25) / 4)
    assert m.majority_baseline([1, 1, 0], [1, 0, 0, 0]) == 0.25
    assert m.majority_baseline([0, 1], [1, 1, 0]) == pytest.approx(2 / 3)  # tie goes to success
    with pytest.raises(ValueError):
        m.accuracy([0.5], [1, 0])
    with pytest.raises(ValueError):
        m.brier([], [])
