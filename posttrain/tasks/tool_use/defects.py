"""Rejected turns for preference pairs: the chosen turn with exactly one defect.

Each defect stays detectable by the metrics (`parse_response`, `answer_matches`), so a DPO pair
always teaches the difference it names.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from posttrain.tasks.tool_use.plans import Plan, number_text
from posttrain.tasks.tool_use.scoring import NUM_RE, answer_matches
from posttrain.tasks.tool_use.tools.search import load_kb
from posttrain.toolcall import ToolRegistry, format_call, format_final, validate_args

DEFECTS = (
    "malformed_json",
    "missing_thought",
    "hallucinated_tool",
    "wrong_tool",
    "schema_violation",
    "refusal",
    "no_tool_when_needed",
    "tool_when_not_needed",
)
CALL_DEFECTS = DEFECTS[:7]
FINAL_DEFECTS = ("refusal", "tool_when_not_needed")

_FAKE_TOOLS = (
    "calc",
    "math",
    "lookup",
    "web_search",
    "google",
    "wikipedia",
    "python",
    "browser",
    "schedule",
    "get_answer",
    "knowledge_base",
    "compute",
    "events",
)
_REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I cannot help with that request as I am an AI.",
    "As an AI language model, I am unable to do that.",
    "Thought: I am not able to do this.\nFinal Answer: Sorry, I can't help with that.",
    "Thought: This is not something I can do.\nFinal Answer: I am unable to answer that.",
)


def _plausible_args(name: str, user: str, rng: random.Random) -> dict[str, Any]:
    """Schema-valid arguments for `name` built from the prompt, for wrong-tool rejections."""
    date = (re.findall(r"\d{4}-\d{2}-\d{2}", user) or ["2025-03-05"])[0]
    numbers = re.findall(r"\d+", user)
    if name == "calculator":
        return {"expression": " + ".join(numbers[:2]) if len(numbers) >= 2 else "2 + 2"}
    if name == "search":
        return {"query": " ".join(user.split()[:8])[:200] or "help"}
    if name == "calendar_list":
        return {"date": date}
    if name == "calendar_add":
        return {"title": "Meeting", "date": date, "start": "10:00", "end": "11:00"}
    if name == "calendar_free_slot":
        return {"date": date, "duration_minutes": 30}
    if name == "unit_converter":
        return {"value": 1, "from_unit": "km", "to_unit": "mi"}
    if name == "weather":
        return {"city": "Port Amsel", "date": date}
    raise ValueError(f"no plausible arguments for {name!r}")


def _malformed(thought: str, name: str, args: dict[str, Any], rng: random.Random) -> str:
    good = format_call(thought, name, args)
    body = json.dumps({"tool": name, "args": args}, ensure_ascii=False)
    variants = (
        good.replace(body, body[:-1]),  # missing closing brace
        good.replace(body, body.replace('"', "'")),  # Python-style quotes
        good.replace(body, body[:-1] + ", }"),  # trailing comma
        good.replace(body, body.replace('"tool"', "tool", 1)),  # unquoted key
        good[: -len("```")].rstrip(),  # unclosed fence
        good.replace(
            body, json.dumps({"tool": name, "args": " ".join(str(v) for v in args.values())})
        ),  # seed-004 style
    )
    return rng.choice(variants)


def _violate(schema: dict[str, Any], args: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    options: list[dict[str, Any]] = []
    for key in schema.get("required", []):
        options.append({k: v for k, v in args.items() if k != key})  # missing required
    options.append({**args, rng.choice(("note", "verbose", "format")): "yes"})  # extra argument
    for key, value in args.items():  # wrong type
        options.append({**args, key: 42 if isinstance(value, str) else str(value)})
    rng.shuffle(options)
    return next(o for o in options if validate_args(schema, o))


def _wrong_answer(plan: Plan, rng: random.Random) -> str:
    """A confident answer that `answer_matches` rejects (so the defect stays detectable)."""
    pool = [qa["answer"] for d in load_kb() for qa in d["qa"]]
    while True:
        if NUM_RE.fullmatch(plan.gold_answer):
            guess = number_text(
                round(float(plan.gold_answer) * rng.choice((1.5, 0.5, 2)) + rng.randint(3, 30))
            )
        else:
            guess = rng.choice(pool)
        answer = f"The answer is {guess}."
        if not answer_matches(answer, plan.gold_answer):
            return answer


def rejected_turn(defect: str, plan: Plan, step: int, registry: ToolRegistry, rng: random.Random) -> str:
    """Turn `step` of `plan` with one `defect`, everything else as in the chosen turn.

    Call turns take `CALL_DEFECTS`, the final turn `FINAL_DEFECTS`; any other pairing raises
    `ValueError`.
    """
    if step < len(plan.calls):
        call = plan.calls[step]
        if defect == "malformed_json":
            return _malformed(call.thought, call.name, call.args, rng)
        if defect == "missing_thought":
            text = format_call(call.thought, call.name, call.args).split("\n", 1)[1]
            return rng.choice((text, f"{call.thought}\n{text}"))
        if defect == "hallucinated_tool":
            return format_call(call.thought, rng.choice(_FAKE_TOOLS), call.args)
        if defect == "wrong_tool":
            other = rng.choice([n for n in registry if n != call.name])
            return format_call(f"I will use the {other} tool.", other, _plausible_args(other, plan.user, rng))
        if defect == "schema_violation":
            return format_call(
                call.thought, call.name, _violate(registry[call.name].parameters, call.args, rng)
            )
        if defect == "no_tool_when_needed":
            return format_final("I know this without a tool.", _wrong_answer(plan, rng))
    elif defect == "tool_when_not_needed":
        if plan.calls:
            last = plan.calls[-1]
            return format_call("Let me check that again.", last.name, last.args)
        name = rng.choice([n for n in ("search", "calculator") if n in registry])
        return format_call(f"I will use the {name} tool.", name, _plausible_args(name, plan.user, rng))
    if defect == "refusal":
        return rng.choice(_REFUSALS)
    raise ValueError(f"defect {defect!r} does not apply to step {step} of a {plan.task} episode")
