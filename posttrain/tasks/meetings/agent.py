"""The meetings agent in the ReAct loop: its tools bound to one scenario, its prompt, and
trajectories turned into conversation turns and back, so scripted and model trajectories are
scored by the same `calculate_reward`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from posttrain.tasks.episodes import run_react_each, system_prompt
from posttrain.tasks.meetings.reward import parse_prediction
from posttrain.tasks.meetings.scenario import Scenario
from posttrain.tasks.meetings.tools import ExecutedCall, make_tools, tool_schemas
from posttrain.tasks.meetings.trajectories import Trajectory, agent_prompt
from posttrain.toolcall import Episode, Generate, Tool, ToolCall, ToolRegistry, format_call


def meetings_registry(scenario: Scenario) -> ToolRegistry:
    """The three meetings tools bound to one scenario."""
    fns = make_tools(scenario)
    specs = [s["function"] for s in tool_schemas()]
    return ToolRegistry([Tool(f["name"], f["description"], f["parameters"], fns[f["name"]]) for f in specs])


def meetings_system_prompt(compact: bool) -> str:
    return system_prompt(tool_schemas(), compact)


def meetings_agent_prompt(scenario: Scenario, system: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": agent_prompt(scenario)}]


def trajectory_messages(traj: Trajectory) -> list[dict[str, str]]:
    """A (scripted) meetings trajectory as the assistant/observation turns the ReAct loop produces."""
    out = []
    for c in traj.tool_calls:
        out.append(
            {"role": "assistant", "content": format_call(c.thought or "I need more facts.", c.name, c.args)}
        )
        obs = f"Error: {c.error}" if c.error else json.dumps(c.observation, ensure_ascii=False)
        out.append({"role": "user", "content": f"Observation: {obs}"})
    out.append({"role": "assistant", "content": traj.final_text})
    return out


def episode_trajectory(episode: Episode, scenario: Scenario, policy: str) -> Trajectory:
    """A model's ReAct episode as a meetings `Trajectory`, so `calculate_reward` can score it."""
    calls = []
    for s in episode.steps:
        if s.parse.kind != "call" or s.parse.call is None:
            continue
        obs_text = s.observation or ""
        error = obs_text[len("Error: ") :] if s.tool_error else None
        try:
            obs = {"error": error} if error else json.loads(obs_text)
        except json.JSONDecodeError:
            obs = obs_text
        call = s.parse.call
        calls.append(ExecutedCall(ToolCall(call.name, dict(call.args)), obs, error, s.parse.thought or ""))
    final = episode.steps[-1].parse.turn if episode.status == "final" else ""
    pred = parse_prediction(final) if final else None
    return Trajectory(
        scenario_id=scenario.scenario_id,
        prompt=agent_prompt(scenario),
        tool_calls=calls,
        probability=pred[0] if pred else None,
        reason=pred[1] if pred else None,
        final_text=final,
        policy=policy,
        meta={"status": episode.status, "failures": list(episode.failures)},
    )


def run_meetings_agent(
    generate: Generate, scenarios: Sequence[Scenario], system: str, max_steps: int, policy: str
) -> tuple[list[Trajectory], list[Episode]]:
    """One tool-using episode per scenario, batched; returns trajectories and the raw episodes."""
    episodes = run_react_each(
        [meetings_agent_prompt(s, system) for s in scenarios],
        [meetings_registry(s) for s in scenarios],
        generate,
        max_steps,
    )
    return [episode_trajectory(ep, s, policy) for ep, s in zip(episodes, scenarios, strict=True)], episodes
