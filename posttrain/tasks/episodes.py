"""What both align tasks share about ReAct episodes: the system prompt that lists the tools, the
JSON record of an episode, the loop with a registry per prompt, and the stats and on-policy
preference pairs of a batch of scored trajectories (traces, see `tasks.base.AlignTask`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from posttrain.tasks.metrics import figure
from posttrain.toolcall import Episode, Generate, Tool, ToolRegistry, format_system_prompt, run_react

T = TypeVar("T")


def compact_system_prompt(tools: Sequence[Tool | dict[str, Any]]) -> str:
    """The output format and every tool's signature in well under the tokens of
    `toolcall.format_system_prompt`: on a CPU every prompt token is paid for in every training
    row and every generated turn. String arguments show bare, others with their type; an enum
    repeated by the next argument shows once; descriptions are left out (the names carry them)."""
    signatures = []
    for tool in tools:
        fn = tool.schema()["function"] if isinstance(tool, Tool) else tool["function"]
        params = fn["parameters"]
        required = set(params.get("required", []))
        args, last_enum = [], None
        for name, spec in params.get("properties", {}).items():
            arg = name if name in required else f"{name}?"
            if "enum" in spec:
                enum = "|".join(map(str, spec["enum"]))
                arg += ": same" if enum == last_enum else f": {enum}"
                last_enum = enum
            elif spec.get("type", "string") != "string":
                arg += f": {spec['type']}"
            args.append(arg)
        signatures.append(f"{fn['name']}({', '.join(args)})")
    return (
        'Call a tool:\nThought: <reasoning>\nAction: ```json\n{"tool": "<name>", "args": {...}}\n```\n'
        "Or answer:\nThought: <reasoning>\nFinal Answer: <answer>\n"
        f"Tools: {'; '.join(signatures)}"
    )


def system_prompt(schemas: list[dict[str, Any]], compact: bool) -> str:
    """The compact prompt or toolcall's full one (format, rules and every schema)."""
    return compact_system_prompt(schemas) if compact else format_system_prompt(schemas)


def episode_record(episode: Episode) -> list[dict[str, Any]]:
    """The ReAct steps as JSON (for agent_traces.json and the store)."""
    steps = []
    for s in episode.steps:
        call = s.parse.call
        steps.append(
            {
                "output": s.parse.turn or s.raw,
                "kind": s.parse.kind,
                "tool": call.name if call else None,
                "args": call.args if call else None,
                "observation": s.observation,
                "tool_error": s.tool_error,
            }
        )
    return steps


def run_react_each(
    prompts: list[list[dict[str, str]]],
    registries: Sequence[ToolRegistry],
    generate: Generate,
    max_steps: int,
) -> list[Episode]:
    """`run_react` where every prompt has its own tools (meetings binds them to one scenario).

    Still one batched `generate` per step for all unfinished episodes; each reply is then handed
    to `run_react` for one step with its own registry, so parsing, execution and observations
    follow exactly the same rules as the single-registry loop.
    """
    if len(prompts) != len(registries):
        raise ValueError(f"{len(prompts)} prompts for {len(registries)} registries")
    episodes = [Episode(messages=[dict(m) for m in p]) for p in prompts]
    for _ in range(max_steps):
        active = [i for i, ep in enumerate(episodes) if ep.status == "running"]
        if not active:
            break
        outputs = generate([list(episodes[i].messages) for i in active])
        if len(outputs) != len(active):
            raise ValueError(f"generate returned {len(outputs)} texts for {len(active)} conversations")
        for i, raw in zip(active, outputs, strict=True):
            ep = episodes[i]
            step = run_react([ep.messages], registries[i], lambda _c, raw=raw: [raw], 1)[0]
            ep.messages, ep.steps, ep.failures = (
                step.messages,
                ep.steps + step.steps,
                ep.failures + step.failures,
            )
            if step.status != "max_steps":  # one step left it running
                ep.status, ep.final_answer = step.status, step.final_answer
    for ep in episodes:
        if ep.status == "running":
            ep.status = "max_steps"
    return episodes


def trajectory_stats(traces: Sequence[dict[str, Any]], calls_2_to_5: bool) -> dict[str, Any]:
    """Count, reward, accuracy (all and greedy), tool calls and final answers of scored traces;
    `calls_2_to_5` adds the share of traces with 2 to 5 tool calls (None otherwise, so every
    task's stats have the same keys)."""
    rewards = [t["reward"]["total"] for t in traces]
    greedy = [t for t in traces if t["policy"] == "sft-greedy"]
    calls = [t["num_tool_calls"] for t in traces]
    return {
        "count": len(traces),
        "mean_reward": figure(rewards).as_dict(),
        "accuracy": figure([t["correct"] for t in traces]).as_dict(),
        "greedy_accuracy": figure([t["correct"] for t in greedy]).as_dict(),
        "mean_tool_calls": figure(calls).as_dict(),
        "calls_2_to_5": figure([2 <= c <= 5 for c in calls]).as_dict() if calls_2_to_5 else None,
        "final_answers": sum(t["status"] == "final" for t in traces),
    }


def pair_best_worst(
    group: Sequence[tuple[float, T]], min_margin: float, key: Callable[[T], Any] = id
) -> tuple[T, T, float] | None:
    """(best, worst, margin) of one prompt's scored candidates, or None when the rewards differ by
    less than `min_margin` or the two are the same (`key` equal). Ties keep the earlier candidate
    as best and the later one as worst."""
    if len(group) < 2:
        return None
    best = max(group, key=lambda rt: rt[0])
    worst = min(reversed(group), key=lambda rt: rt[0])
    margin = best[0] - worst[0]
    if margin < min_margin or key(best[1]) == key(worst[1]):
        return None
    return best[1], worst[1], margin


def on_policy_pairs(traces: Sequence[dict], min_margin: float, limit: int) -> list[dict[str, Any]]:
    """Best vs worst trajectory of each prompt by reward, largest margins first, at most `limit`."""
    groups: dict[str, list[tuple[float, dict]]] = {}
    for t in traces:
        groups.setdefault(t["prompt_id"], []).append((t["reward"]["total"], t))
    pairs = []
    for prompt_id, group in groups.items():
        found = pair_best_worst(group, min_margin, key=lambda t: json.dumps(t["messages"]))
        if found is None:
            continue
        best, worst, margin = found
        pairs.append(
            {
                "source": "on_policy",
                "id": prompt_id,
                "prompt": best["prompt"],
                "chosen": best["messages"],
                "rejected": worst["messages"],
                "chosen_reward": best["reward"]["total"],
                "rejected_reward": worst["reward"]["total"],
                "margin": round(margin, 4),
            }
        )
    pairs.sort(key=lambda p: -p["margin"])
    return pairs[:limit]
