"""Tool-argument validation against a JSON-schema subset (no jsonschema dependency: the subset
BFCL-style scoring needs, with extra arguments counted as errors)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # JSON has one number type: 3.0 is an integer, True is not a number.
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and math.isfinite(v) and v.is_integer())
    ),
    "number": lambda v: (
        (isinstance(v, int | float) and not isinstance(v, bool))
        and (not isinstance(v, float) or math.isfinite(v))
    ),
}


def validate_args(schema: dict[str, Any], value: Any) -> list[str]:
    """Check `value` against a JSON-schema subset; return the problems (empty when valid).

    Supported: `type` (a name or a list), `properties`, `required`, `additionalProperties`,
    `enum`, `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum`, `minLength` /
    `maxLength`, `pattern` (searched, as in JSON Schema), `items`. Unlike plain JSON Schema, an
    object rejects properties it does not declare unless it sets `additionalProperties: true`
    (BFCL counts extra arguments as errors).
    """
    try:
        return _validate(schema, value, "args")
    except RecursionError:
        return ["args: nested too deeply"]


def _validate(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES.get(t, lambda _: True)(value) for t in names):
            return [f"{path}: expected {'|'.join(names)}, got {_json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        problems += [f"{path}: missing required {k!r}" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", False)
        for key, item in value.items():
            if key in props:
                problems += _validate(props[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                problems += _validate(extra, item, f"{path}.{key}")
            elif extra is not True:
                problems.append(f"{path}: unexpected argument {key!r}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += _validate(schema["items"], item, f"{path}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        bounds = (
            ("minimum", lambda b: value >= b),
            ("maximum", lambda b: value <= b),
            ("exclusiveMinimum", lambda b: value > b),
            ("exclusiveMaximum", lambda b: value < b),
        )
        problems += [
            f"{path}: {value} violates {k} {schema[k]}"
            for k, ok in bounds
            if k in schema and not ok(schema[k])
        ]
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    return problems


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__
