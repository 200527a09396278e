"""The meetings agent in the ReAct loop: its tools bound to one scenario, its prompt, the forced
answer at the step cap, and trajectories turned into conversation turns and back, so scripted and
model trajectories are scored by the same rewards."""

from __future__ import annotations

import json
from collections.abc import Sequence

from posttrain.tasks.episodes import run_react_each, system_prompt
from posttrain.tasks.meetings.reward import parse_prediction
from posttrain.tasks.meetings.scenario import Scenario
from posttrain.tasks.meetings.tools import ExecutedCall, make_tools, tool_schemas
from posttrain.tasks.meetings.trajectories import ANSWER_THOUGHT, Trajectory, agent_prompt
from posttrain.toolcall import (
    Episode,
    Generate,
    Step,
    Tool,
    ToolCall,
    ToolRegistry,
    format_call,
    parse_response,
)

# At the step cap the last observation carries this, and the assistant turn is opened with
# `FORCED_PREFIX` (the demos' own answer opening, up to the checklist), so the model writes the
# checklist and answer, as the demos do, instead of another call it has no turn left for.
FORCE_INSTRUCTION = "No tool calls are left. Reply now with your Final Answer."
FORCED_PREFIX = f"Thought: {ANSWER_THOUGHT}"


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
    if traj.final_text:  # a trajectory cut off at the cap has no answer turn
        out.append({"role": "assistant", "content": traj.final_text})
    return out


def episode_trajectory(
    episode: Episode, scenario: Scenario, policy: str, forced: bool | None = None
) -> Trajectory:
    """A model's ReAct episode as a meetings `Trajectory`, so the rewards can score it; `forced`
    (None: the loop could not force) goes to `meta`."""
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
        meta={"status": episode.status, "failures": list(episode.failures)}
        | ({} if forced is None else {"forced": forced}),
    )


def run_meetings_agent(
    generate: Generate,
    scenarios: Sequence[Scenario],
    system: str,
    max_steps: int,
    policy: str,
    force_answer: bool = False,
) -> tuple[list[Trajectory], list[Episode]]:
    """One tool-using episode per scenario, batched; returns trajectories and the raw episodes.

    With `force_answer`, an episode still calling tools at its last step (`max_steps`) is asked
    for the answer instead (`force_final_answers`) and its trajectory's `meta["forced"]` says so;
    without, the loop runs `max_steps` free steps as it always did.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    registries = [meetings_registry(s) for s in scenarios]
    prompts = [meetings_agent_prompt(s, system) for s in scenarios]
    free_steps = max_steps - 1 if force_answer else max_steps
    episodes = run_react_each(prompts, registries, generate, free_steps)
    forced = force_final_answers(episodes, registries, generate) if force_answer else None
    trajs = [
        episode_trajectory(ep, s, policy, None if forced is None else i in forced)
        for i, (ep, s) in enumerate(zip(episodes, scenarios, strict=True))
    ]
    return trajs, episodes


def force_final_answers(
    episodes: Sequence[Episode], registries: Sequence[ToolRegistry], generate: Generate
) -> set[int]:
    """The last step of every episode that ran out of steps, as an answer: `FORCE_INSTRUCTION`
    joins its last observation (or the prompt, with no step yet) and the reply is generated after
    `FORCED_PREFIX`, then parsed like any other turn. Episodes that answered or failed are left
    alone. One batched `generate`; returns the indices of the forced episodes."""
    todo = [i for i, ep in enumerate(episodes) if ep.status == "max_steps"]
    if not todo:
        return set()
    for i in todo:
        last = episodes[i].messages[-1]
        episodes[i].messages[-1] = {**last, "content": f"{last['content']}\n{FORCE_INSTRUCTION}"}
    asks = [[*episodes[i].messages, {"role": "assistant", "content": FORCED_PREFIX}] for i in todo]
    outputs = generate(asks)
    if len(outputs) != len(todo):
        raise ValueError(f"generate returned {len(outputs)} texts for {len(todo)} conversations")
    for i, text in zip(todo, outputs, strict=True):
        text = text.strip()
        sep = " " if text.startswith("Checklist") else "\n"  # the checklist stays on the Thought's line
        ep, raw = episodes[i], FORCED_PREFIX + sep + text
        result = parse_response(raw, registries[i])
        ep.messages.append({"role": "assistant", "content": result.turn or raw})
        ep.steps.append(Step(raw, result))
        if result.kind == "final":
            ep.status, ep.final_answer = "final", result.final_answer
        else:  # kept for safety: a Thought and an answer's start are already in the prefix
            ep.failures.append(result.kind)
            ep.status = "failed"
    return set(todo)
