"""Preference signal on function-pool rows: the scorer's reward for a reply, and targeted defects.

The reward ranks a model's own samples for on-policy pairs (issue 13: pairs from the SFT model's
samples, ranked by the scorer); the defects are the synthetic half, each one mistake the
held-out figures count: an invented or wrong function, a missing or wrong argument, a call where
none fits, no call where one does, and a broken format.
"""

from __future__ import annotations

import json
import random
from typing import Any

from posttrain.tasks.tool_use.chat_format import ChatToolFormat
from posttrain.tasks.tool_use.scoring import NO_CALL, OMITTED
from posttrain.tasks.tool_use.user_eval import EvalItem, score_reply
from posttrain.toolcall import Tool, format_call, format_final

CALL_DEFECTS = ("wrong_function", "invented_name", "missing_argument", "wrong_value", "no_call", "no_thought")
NO_CALL_DEFECTS = ("called_anyway",)


def pool_item(row: dict[str, Any], line: int = 0) -> EvalItem:
    """A pool row as the user-data scorer sees it (nothing is executed: specs only)."""
    tools = [
        Tool(s["function"]["name"], s["function"]["description"], s["function"]["parameters"])
        for s in row["tools"]
    ]
    return EvalItem(list(row["messages"]), tools, row["gold"], line, row["id"])


def pool_reward(text: str, row: dict[str, Any], fmt: ChatToolFormat | None = None) -> float:
    """1 for the gold decision made exactly (the right call with the right arguments, or no call
    where none fits), partial credit for the right function with wrong arguments (0.6) or a valid
    call of the wrong one (0.3), 0.2 for answering without a call that was needed, 0 for a call
    where none fits, an invented name or a broken format; -0.1 without the Thought prefix (a
    model's own chat-template format, `fmt`, has no Thought to miss)."""
    s = score_reply(text, pool_item(row), fmt)
    if row["gold"] == NO_CALL:
        reward = 1.0 if s["irrelevance_accuracy"] and s["format_validity"] else 0.0
    elif s["ast_accuracy"]:
        reward = 1.0
    elif s["hallucinated_function_rate"]:
        reward = 0.0
    elif s["function_name_accuracy"]:
        reward = 0.6
    elif s["must_call_rate"]:
        reward = 0.3 if s["format_validity"] else 0.0
    else:
        reward = 0.2 if s["format_validity"] else 0.0
    return round(reward - (0.0 if s["thought_prefix_rate"] in (True, None) else 0.1), 4)


def pool_defect(row: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """(defect name, rejected turn) for a row: one mistake, drawn from the defects that apply."""
    if row["gold"] == NO_CALL:
        spec = rng.choice(row["tools"])["function"]
        args = {name: _made_up(schema, rng) for name, schema in _required(spec)}
        return "called_anyway", format_call(f"{spec['name']} fits this request.", spec["name"], args)
    ((name, gold_args),) = row["gold"][0].items()
    args = json.loads(row["completion"].split("```json\n", 1)[1].split("\n```", 1)[0])["args"]
    thought = row["completion"].split("\n", 1)[0]
    others = [s["function"]["name"] for s in row["tools"] if s["function"]["name"] != name]
    required = [a for a, values in gold_args.items() if OMITTED not in values and a in args]
    options = [
        d for d in CALL_DEFECTS if (d != "wrong_function" or others) and (d != "missing_argument" or required)
    ]
    defect = rng.choice(options)
    if defect == "wrong_function":
        other = rng.choice(others)
        return defect, format_call(f"{other} fits this request.", other, args)
    if defect == "invented_name":
        fake = (
            row["function"] if row["function"] not in {s["function"]["name"] for s in row["tools"]} else None
        )
        fake = fake or f"{name}_{rng.choice(('tool', 'v2', 'api', 'helper'))}"
        return defect, format_call(f"{fake} fits this request.", fake, args)
    if defect == "missing_argument":
        drop = rng.choice(required)
        return defect, format_call(
            thought.removeprefix("Thought: "), name, {k: v for k, v in args.items() if k != drop}
        )
    if defect == "wrong_value":
        key = rng.choice(sorted(args))
        return defect, format_call(
            thought.removeprefix("Thought: "), name, {**args, key: _perturbed(args[key], rng)}
        )
    if defect == "no_call":
        return defect, format_final("I can answer this without a tool.", "It depends on the details.")
    return defect, row["completion"].split("\n", 1)[1]  # no_thought: the Action alone


def _required(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    params = spec.get("parameters", {})
    props = params.get("properties", {})
    return [(n, props[n]) for n in params.get("required", []) if n in props]


def _made_up(schema: dict[str, Any], rng: random.Random) -> Any:
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(1, 100), 1)
    if kind == "array":
        return ["item"]
    return rng.choice(("something", "default", "test"))


def _perturbed(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + rng.choice((1, 2, 10, -1)) if value > 2 else value * 10 + 1
    if isinstance(value, list):
        return value[:-1] if len(value) > 1 else [*value, "other"]
    return f"{value} {rng.choice(('north', 'old', 'new', 'x'))}"
