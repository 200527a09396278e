"""Rows for a user's own tools: requests written from each spec, and no-call rows beside them.

A user's file holds specs, not requests, and no model writes them here (no network, no teacher),
so a request is built from what the spec says: its description, then each argument named by its
own description with a value drawn from its schema (enum, bounds, `examples`, or a value that
fits the parameter's name). Plain, but every word comes from the author's schema, and the gold
call follows from the drawn values. Requests of function-pool tools, with only the user's tools
offered, are the no-call rows, so a model trained on them also learns when none of them fits.
Rows have the pool rows' shape (`pool_rows`), so they train, pair and score the same way.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from posttrain.tasks.tool_use.pool import WORDS, draw_value, pool_functions, render_prompt, value_text
from posttrain.tasks.tool_use.scoring import NO_CALL, OMITTED
from posttrain.toolcall import Tool, format_call, format_final

_OPENINGS = ("{desc}", "Please help: {desc_lower}", "I need this: {desc_lower}", "Can you {desc_lower}")
_NONE = (
    "None of the offered tools fits this request.",
    "Sorry, none of the tools I have can help with that.",
)


def user_tool_rows(
    tools: Sequence[Tool], n: int, seed: int, irrelevance: float = 0.12
) -> list[dict[str, Any]]:
    """`n` rows for `tools`: a call of one tool with every required argument (and each optional
    one with probability 1/2), or (`irrelevance` of the rows) a pool request no offered tool fits.
    Every row offers all of `tools`, in a shuffled order."""
    if not tools:
        raise ValueError("user_tool_rows needs at least one tool")
    rng = random.Random(f"tool_use/user/{seed}")
    specs = [t.schema() for t in tools]
    foreign = pool_functions("train")
    rows = []
    for i in range(n):
        offered = list(specs)
        rng.shuffle(offered)
        row: dict[str, Any] = {
            "id": f"user-{seed}-{i:05d}",
            "split": "user",
            "tools": offered,
            "follow_up": None,
        }
        if rng.random() < irrelevance:
            fn = rng.choice(foreign)
            args = {p.name: draw_value(p.values, p.schema, rng) for p in fn.params if not p.optional}
            request = render_prompt(rng.choice(fn.prompts), args)
            row |= {"family": fn.family, "function": fn.name, "gold": NO_CALL}
            row["completion"] = format_final(_NONE[0], _NONE[1])
        else:
            spec = rng.choice(specs)["function"]
            request, call, gold = _request(spec, rng)
            row |= {"family": "user", "function": spec["name"], "gold": [{spec["name"]: gold}]}
            row["completion"] = format_call(f"{spec['name']} fits this request.", spec["name"], call)
        row["messages"] = [{"role": "user", "content": request}]
        rows.append(row)
    return rows


def _request(spec: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, Any], dict[str, list[Any]]]:
    params = spec.get("parameters") or {}
    required = set(params.get("required", []))
    call: dict[str, Any] = {}
    gold: dict[str, list[Any]] = {}
    parts = []
    for name, schema in (params.get("properties") or {}).items():
        if name not in required and rng.random() < 0.5:
            gold[name] = [OMITTED] + ([schema["default"]] if "default" in schema else [])
            continue
        value = _value(name, schema, rng)
        call[name] = value
        gold[name] = [value]
        label = (schema.get("description") or name.replace("_", " ")).rstrip(".")
        parts.append(f"{label}: {value_text(value) if not isinstance(value, bool) else str(value).lower()}")
    desc = (spec.get("description") or spec["name"].replace("_", " ")).rstrip(".")
    opening = rng.choice(_OPENINGS).format(desc=desc, desc_lower=desc[:1].lower() + desc[1:])
    request = opening + (". " + "; ".join(parts) + "." if parts else ".")
    return request, call, gold


def _value(name: str, schema: dict[str, Any], rng: random.Random) -> Any:
    """A value that fits the schema: enum, examples, bounds, or a word that fits the name."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if schema.get("examples"):
        return rng.choice(schema["examples"])
    kind = schema.get("type", "string")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "boolean":
        return rng.random() < 0.5
    if kind in ("integer", "number"):
        lo = int(schema.get("minimum", 1))
        hi = int(schema.get("maximum", max(lo + 1, 100)))
        value = rng.randint(lo, hi)
        return value if kind == "integer" else value + rng.choice((0, 0.5, 0.25))
    if kind == "array":
        item = schema.get("items") or {"type": "string"}
        return [_value(name, item, rng) for _ in range(rng.randint(1, 3))]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _value(k, v, rng) for k, v in props.items() if k in schema.get("required", list(props))}
    for word, generator in (("date", "date"), ("time", "time"), ("email", "email"), ("currency", "currency")):
        if word in name.lower():
            return draw_value(generator, {"type": "string"}, rng)
    for key in WORDS:
        if key in name.lower():
            return rng.choice(WORDS[key])
    if "name" in name.lower():
        return rng.choice(WORDS["person"])
    return rng.choice(WORDS["word"])
