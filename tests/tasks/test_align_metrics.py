"""Every align metric on hand-written cases with known answers, the trajectory reward, the
per-scenario ReAct loop and the meetings trajectory <-> conversation round trip."""

from __future__ import annotations

import json
import random

import pytest

from posttrain.agents.toolcall import ToolRegistry, format_call, format_final, run_react
from posttrain.tasks import align_metrics as am
from posttrain.tasks import meetings as mt
from posttrain.tasks.tool_use import build_registry

CALC_GOLD = {"name": "calculator", "args": {"expression": "2 + 3"}}


def _row(gold: dict | None, task: str = "calculator", step: int = 0) -> dict:
    return {"gold": gold, "task": task, "step": step}


@pytest.fixture()
def registry(tmp_path) -> ToolRegistry:
    return build_registry("train", tmp_path)


def test_tool_use_figures_on_four_known_outputs(registry):
    outputs = [
        format_call("I will calculate.", "calculator", {"expression": "2+3"}),  # all right
        'Action: ```json\n{"tool": "calculator", "args": {"expression": "3 + 2"}}\n```',  # no Thought
        format_call("Let me look it up.", "web_search", {"query": "2 + 3"}),  # hallucinated tool
        "The answer is 5.",  # prose, no Action
    ]
    figs = am.tool_use_turn_metrics(outputs, [_row(CALC_GOLD)] * 4, registry)
    assert figs["full_compliance"].value == 0.25 and figs["full_compliance"].n == 4
    assert figs["thought_prefix_rate"].value == 0.5
    assert figs["json_validity"].value == 0.75
    # Three outputs call a tool; one of those names a tool that does not exist.
    assert (
        figs["hallucinated_tool_rate"].value == pytest.approx(1 / 3) and figs["hallucinated_tool_rate"].n == 3
    )
    assert figs["tool_choice_accuracy"].value == 0.5
    assert figs["argument_accuracy"].value == 0.5  # "3 + 2" evaluates like the gold "2 + 3"
    assert figs["irrelevance_accuracy"] == am.Figure(None, 0, None)


def test_argument_accuracy_is_stricter_than_tool_choice(registry):
    outputs = [
        format_call("Calculate.", "calculator", {"expression": "2 * 3"}),  # right tool, wrong value
        format_call("Calculate.", "calculator", {"expression": "2 + 3", "note": "x"}),  # extra argument
        format_call("Search.", "search", {"query": "2 + 3"}),  # wrong tool
    ]
    figs = am.tool_use_turn_metrics(outputs, [_row(CALC_GOLD)] * 3, registry)
    assert figs["tool_choice_accuracy"].value == pytest.approx(2 / 3)
    assert figs["argument_accuracy"].value == 0.0
    # The extra argument breaks the schema, so only the first and third turns are compliant.
    assert figs["full_compliance"].value == pytest.approx(2 / 3)


def test_irrelevance_counts_only_first_turns_of_no_tool_prompts(registry):
    rows = [_row(None, "no_tool"), _row(None, "no_tool"), _row(None, "no_tool"), _row(None, "calculator", 1)]
    outputs = [
        format_final("No tool is needed.", "Paris."),
        format_call("Let me search.", "search", {"query": "capital of France"}),
        'Thought: hmm\nAction: ```json\n{"tool": "search"\n```',  # a broken call is still a call attempt
        format_call(
            "Again.", "calculator", {"expression": "1+1"}
        ),  # final turn of a tool episode: not counted
    ]
    figs = am.tool_use_turn_metrics(outputs, rows, registry)
    assert figs["irrelevance_accuracy"].value == pytest.approx(1 / 3) and figs["irrelevance_accuracy"].n == 3
    assert figs["json_validity"].n == 0 and figs["json_validity"].value is None  # no gold calls


def test_figure_and_flat():
    fig = am.figure([1, 1, 0, 0])
    assert fig.value == 0.5 and fig.n == 4 and fig.ci[0] < 0.5 < fig.ci[1]
    assert am.figure([1.0] * 5) == am.Figure(1.0, 5, (1.0, 1.0))
    flat = am.flat({"a": fig, "b": am.figure([])}, n=4)
    assert flat == {"a": 0.5, "a_ci": list(fig.ci), "a_n": 4, "b": None, "b_ci": None, "b_n": 0, "n": 4}
    assert str(am.figure([])) == "- (n=0)"


def _scripted(outputs_by_user: dict[str, list[str]]):
    """A generate that answers each conversation from its own script, by the first user message."""

    def generate(conversations):
        out = []
        for conv in conversations:
            user = next(m["content"] for m in conv if m["role"] == "user")
            turns = sum(m["role"] == "assistant" for m in conv)
            out.append(outputs_by_user[user][turns])
        return out

    return generate


def test_trajectory_reward_by_hand(registry):
    good = [format_call("Add.", "calculator", {"expression": "2 + 3"}), format_final("Done.", "It is 5.")]
    bad_format = ["Action: no fence", "unused"]
    wrong = [format_call("Add.", "calculator", {"expression": "2 + 3"}), format_final("Done.", "It is 7.")]
    gen = _scripted({"good": good, "bad": bad_format, "wrong": wrong})
    prompts = [[{"role": "user", "content": u}] for u in ("good", "bad", "wrong")]
    eps = run_react(prompts, registry, gen, max_steps=3)
    rewards = [am.tool_use_trajectory_reward(ep, "5") for ep in eps]
    assert rewards == [1.0, 0.0, 0.5]
    steps = am.episode_record(eps[0])
    assert [s["kind"] for s in steps] == ["call", "final"] and steps[0]["observation"] == "5"


def _person(role: str) -> mt.Person:
    return mt.Person(role, "mid", ("AI",), 3, 3, 2)


def _scenario(i: int, outcome: int) -> mt.Scenario:
    # A huge logit-space noise fixes the realised outcome whatever the features say.
    return mt.Scenario(
        f"t-{i}", _person("founder"), _person("investor"), 1, "morning", 50.0 if outcome else -50.0
    )


def test_meetings_metrics_by_hand():
    scenarios = [_scenario(i, o) for i, o in enumerate([1, 0, 0, 1])]
    figs = am.meetings_metrics([0.9, 0.2, None, 0.5], scenarios, tool_calls=[2, 5, 0, 6])
    assert figs["accuracy"].value == 0.5  # None is wrong, 0.5 is the "fails" side
    assert figs["brier"].value == pytest.approx((0.01 + 0.04 + 0.25 + 0.25) / 4)
    assert figs["parse_rate"].value == 0.75
    assert figs["mean_tool_calls"].value == 3.25
    assert figs["calls_2_to_5"].value == 0.5
    refs = am.meetings_references([1, 1, 0], scenarios)
    assert refs["majority_baseline"].value == 0.5
    # founder + investor is the best pairing: the noise-free formula says success for all four.
    assert all(s.clean_prob > 0.5 for s in scenarios)
    assert refs["oracle_accuracy"].value == 0.5


def test_react_each_uses_each_scenarios_own_tools():
    a, b = mt.generate_scenarios(2, 5)
    assert mt.get_profile(a, "A") != mt.get_profile(b, "A")
    call = format_call("Who is A?", "get_profile", {"person": "A"})
    final = format_final("Done.", mt.final_answer(0.7, "high energy").removeprefix("Final Answer: "))
    script = {mt.agent_prompt(s): [call, final] for s in (a, b)}
    system = am.meetings_system_prompt(compact=True)
    trajs, eps = am.run_meetings_agent(_scripted(script), [a, b], system, max_steps=3, policy="test")
    for s, traj, ep in zip((a, b), trajs, eps, strict=True):
        assert ep.status == "final"
        assert traj.tool_calls[0].observation == mt.get_profile(s, "A")
        assert traj.probability == 0.7 and traj.reason == "high energy"


def test_scripted_trajectory_round_trips_through_the_react_loop():
    scenario = mt.generate_scenarios(1, 9)[0]
    scripted = mt.scripted_trajectory(scenario, random.Random(0), 0.3)
    turns = [m["content"] for m in am.trajectory_messages(scripted) if m["role"] == "assistant"]
    system = am.meetings_system_prompt(compact=False)
    trajs, eps = am.run_meetings_agent(
        _scripted({mt.agent_prompt(scenario): turns}), [scenario], system, max_steps=8, policy="replay"
    )
    replay = trajs[0]
    assert [(c.name, c.args, c.error) for c in replay.tool_calls] == [
        (c.name, c.args, c.error) for c in scripted.tool_calls
    ]
    assert replay.probability == scripted.probability
    assert mt.calculate_reward(replay, scenario) == mt.calculate_reward(scripted, scenario)
    # The observations the loop produced are exactly the ones the SFT conversation shows.
    observations = [m["content"] for m in eps[0].messages if m["content"].startswith("Observation:")]
    shown = [m["content"] for m in am.trajectory_messages(scripted) if m["role"] == "user"]
    assert observations == shown


def test_compact_prompt_is_shorter_and_lists_every_tool(tiny_tokenizer):
    full = am.tool_use_system_prompt("heldout", compact=False)
    compact = am.tool_use_system_prompt("heldout", compact=True)
    assert len(tiny_tokenizer(compact)["input_ids"]) < 0.55 * len(tiny_tokenizer(full)["input_ids"])
    for sig in ("calculator(expression)", "search(query, k?: integer)", "weather(city, date)"):
        assert sig in compact
    assert "from_unit: m|km|" in compact and "to_unit: same" in compact
    assert "Final Answer:" in compact and '"tool"' in compact


def test_eval_data_is_first_turns_from_the_held_out_seed():
    data = am.eval_data("tool_use", 1000, 3, compact=True)
    for split, rows in data.items():
        assert len(rows) == len({r["episode"] for r in rows}) == 3
        assert all(
            r["step"] == 0 and r["id"].startswith(f"tool_use-{am.TOOL_SPLITS[split]}-1000-") for r in rows
        )
        assert ("unit_converter" in rows[0]["prompt"][0]["content"]) == (split == "heldout")
    scenarios = am.eval_data("meetings", 1000, 4, compact=True)["heldout"]
    assert [s.scenario_id for s in scenarios] == [f"s1000-{i:05d}" for i in range(4)]


def test_evaluate_tool_use_scores_first_turns_and_runs_episodes_to_the_end():
    rows = am.tool_use_first_turns("train", 1000, 4, compact=True)
    by_prompt = {r["prompt"][1]["content"]: r for r in rows}

    def oracle(conversations):  # the gold first turn, then a final answer carrying the gold
        out = []
        for conv in conversations:
            row = by_prompt[conv[1]["content"]]
            if len(conv) == 2:
                out.append(row["completion"])
            else:
                out.append(format_final("Done.", f"The answer is {row['gold_answer']}."))
        return out

    figs, records = am.evaluate_tool_use(oracle, rows, "train", max_steps=4)
    assert figs["full_compliance"] == am.Figure(1.0, 4, (1.0, 1.0))
    assert figs["argument_accuracy"].value == 1.0 and figs["tool_choice_accuracy"].value == 1.0
    assert figs["task_accuracy"] == am.Figure(1.0, 4, (1.0, 1.0))
    assert [r["first_turn"] for r in records] == [r["completion"] for r in rows]


def test_eval_tables_show_n_and_ci_for_every_model():
    fig = am.figure([1, 0, 1]).as_dict()
    results = {"splits": {"heldout": {"base": {"agent_accuracy": fig}, "sft": {"agent_accuracy": fig}}}}
    results["references"] = {"oracle_accuracy": am.figure([1, 1]).as_dict()}
    table = am.eval_tables(results, "meetings")
    assert "| base | 0.667 [" in table and "n=3" in table
    assert "| oracle_accuracy | 1.000 [1.00, 1.00] n=2 |" in table
    json.dumps(results)  # figures are JSON as they are
