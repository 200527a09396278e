"""Every tool_use figure on hand-written turns with known answers, and the trajectory reward."""

from __future__ import annotations

import pytest

from posttrain.tasks.episodes import episode_record
from posttrain.tasks.metrics import Figure
from posttrain.tasks.tool_use import build_registry, tool_use_trajectory_reward, tool_use_turn_metrics
from posttrain.toolcall import ToolRegistry, format_call, format_final, run_react

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
    figs = tool_use_turn_metrics(outputs, [_row(CALC_GOLD)] * 4, registry)
    assert figs["full_compliance"].value == 0.25 and figs["full_compliance"].n == 4
    assert figs["thought_prefix_rate"].value == 0.5
    assert figs["json_validity"].value == 0.75
    # Three outputs call a tool; one of those names a tool that does not exist.
    assert (
        figs["hallucinated_tool_rate"].value == pytest.approx(1 / 3) and figs["hallucinated_tool_rate"].n == 3
    )
    assert figs["tool_choice_accuracy"].value == 0.5
    assert figs["argument_accuracy"].value == 0.5  # "3 + 2" evaluates like the gold "2 + 3"
    assert figs["irrelevance_accuracy"] == Figure(None, 0, None)


def test_argument_accuracy_is_stricter_than_tool_choice(registry):
    outputs = [
        format_call("Calculate.", "calculator", {"expression": "2 * 3"}),  # right tool, wrong value
        format_call("Calculate.", "calculator", {"expression": "2 + 3", "note": "x"}),  # extra argument
        format_call("Search.", "search", {"query": "2 + 3"}),  # wrong tool
    ]
    figs = tool_use_turn_metrics(outputs, [_row(CALC_GOLD)] * 3, registry)
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
    figs = tool_use_turn_metrics(outputs, rows, registry)
    assert figs["irrelevance_accuracy"].value == pytest.approx(1 / 3) and figs["irrelevance_accuracy"].n == 3
    assert figs["json_validity"].n == 0 and figs["json_validity"].value is None  # no gold calls


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
    rewards = [tool_use_trajectory_reward(ep, "5") for ep in eps]
    assert rewards == [1.0, 0.0, 0.5]
    steps = episode_record(eps[0])
    assert [s["kind"] for s in steps] == ["call", "final"] and steps[0]["observation"] == "5"
