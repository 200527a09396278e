"""The meetings agent in the ReAct loop: each scenario's own tools, and scripted trajectories
that round-trip through the loop unchanged."""

from __future__ import annotations

import random

from posttrain.tasks import meetings as mt
from posttrain.toolcall import format_call, format_final


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


def test_react_each_uses_each_scenarios_own_tools():
    a, b = mt.generate_scenarios(2, 5)
    assert mt.get_profile(a, "A") != mt.get_profile(b, "A")
    call = format_call("Who is A?", "get_profile", {"person": "A"})
    final = format_final("Done.", mt.final_answer(0.7, "high energy").removeprefix("Final Answer: "))
    script = {mt.agent_prompt(s): [call, final] for s in (a, b)}
    system = mt.meetings_system_prompt(compact=True)
    trajs, eps = mt.run_meetings_agent(_scripted(script), [a, b], system, max_steps=3, policy="test")
    for s, traj, ep in zip((a, b), trajs, eps, strict=True):
        assert ep.status == "final"
        assert traj.tool_calls[0].observation == mt.get_profile(s, "A")
        assert traj.probability == 0.7 and traj.reason == "high energy"


def test_scripted_trajectory_round_trips_through_the_react_loop():
    scenario = mt.generate_scenarios(1, 9)[0]
    scripted = mt.scripted_trajectory(scenario, random.Random(0), 0.3)
    turns = [m["content"] for m in mt.trajectory_messages(scripted) if m["role"] == "assistant"]
    system = mt.meetings_system_prompt(compact=False)
    trajs, eps = mt.run_meetings_agent(
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
    shown = [m["content"] for m in mt.trajectory_messages(scripted) if m["role"] == "user"]
    assert observations == shown
