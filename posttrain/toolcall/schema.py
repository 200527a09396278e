"""JSON Schema (draft 2020-12, the `jsonschema` library) for tools: is a tool's `parameters` a valid
schema, and do a call's arguments satisfy it. Problems come back as readable `path: reason` lines.

One departure from plain JSON Schema, kept from BFCL-style scoring: an object that does not set
`additionalProperties` rejects arguments it does not declare (a model inventing an argument is an
error, not a no-op).
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def _is_number(checker: Any, value: Any) -> bool:
    # Python's json reads NaN and Infinity, which no JSON Schema number can be.
    return Draft202012Validator.TYPE_CHECKER.is_type(value, "number") and (
        not isinstance(value, float) or math.isfinite(value)
    )


def _is_integer(checker: Any, value: Any) -> bool:
    return _is_number(checker, value) and Draft202012Validator.TYPE_CHECKER.is_type(value, "integer")


_ArgsValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_number, "integer": _is_integer}
    ),
)
_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)

# Keywords whose value is a schema, a list of schemas, or a name → schema map: where
# `_closed` must reach to close every nested object.
_SUB_SCHEMA = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_SUB_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUB_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def check_parameters(parameters: Any) -> list[str]:
    """Problems with a tool's `parameters` schema (empty when valid), each `parameters.<path>: <reason>`.

    The schema must be a JSON object of `type: object` (what OpenAI and chat templates expect) and
    valid against the draft 2020-12 meta-schema, so a misspelt type name (`"strin"`) is an error
    here rather than a schema that silently accepts anything.
    """
    if not isinstance(parameters, dict):
        return [f"parameters: expected a JSON Schema object, got {_json_type(parameters)}"]
    problems = []
    if parameters.get("type", "object") != "object":
        problems.append(f"parameters.type: must be 'object', got {parameters['type']!r}")
    for err in _META.iter_errors(parameters):
        where = _path("parameters", err.absolute_path)
        if err.absolute_path and err.absolute_path[-1] == "type" and err.validator == "anyOf":
            names = err.instance if isinstance(err.instance, list) else [err.instance]
            bad = [n for n in names if n not in JSON_TYPES] or names
            problems.append(
                f"{where}: {', '.join(repr(n) for n in bad)} is not a JSON Schema type "
                f"(one of {', '.join(JSON_TYPES)})"
            )
        else:
            problems.append(f"{where}: {err.message}")
    return problems


def validate_args(schema: dict[str, Any], value: Any) -> list[str]:
    """Check call arguments against a tool's `parameters`; return the problems (empty when valid).

    Each problem is `args.<path>: <reason>` (e.g. `args.a: expected integer, got string`). Where a
    value has the wrong type, that is the only problem reported for it. `schema` is assumed valid
    (`check_parameters`); an invalid one is reported as a single problem rather than raised.
    """
    try:
        validator = _validator(json.dumps(schema))
        problems: list[str] = []
        errors = list(validator.iter_errors(value))
    except RecursionError:
        return ["args: nested too deeply"]
    except (TypeError, ValueError) as err:  # a schema json cannot serialise, or a broken $ref
        return [f"args: cannot validate against this schema ({err})"]
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    for err in errors:
        if err.validator != "type" and tuple(err.absolute_path) in mistyped:
            continue
        where = _path("args", err.absolute_path)
        problems += [f"{where}: {reason}" for reason in _reasons(err)]
    return list(dict.fromkeys(problems))


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    # Keyed by the schema's JSON text: the same tool's schema is checked on every rollout turn.
    return _ArgsValidator(_closed(json.loads(schema_json)))


def _closed(schema: Any) -> Any:
    """A copy of `schema` where every object without `additionalProperties` gets `false`."""
    if not isinstance(schema, dict):
        return schema
    out = copy.copy(schema)
    is_object = "properties" in out or out.get("type") == "object" or "object" in (out.get("type") or [])
    if is_object and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    for key in _SUB_SCHEMA:
        if key in out:
            out[key] = _closed(out[key])
    for key in _SUB_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_closed(s) for s in out[key]]
    for key in _SUB_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: _closed(s) for k, s in out[key].items()}
    return out


def _reasons(err: ValidationError) -> list[str]:
    """The reason(s) for one jsonschema error, worded as a person reads an argument list."""
    kind, bound, value = err.validator, err.validator_value, err.instance
    if kind == "type":
        names = [bound] if isinstance(bound, str) else list(bound)
        return [f"expected {'|'.join(names)}, got {_json_type(value)}"]
    if kind == "required":
        return [f"missing required {k!r}" for k in bound if k not in value]
    if kind == "additionalProperties":
        declared = err.schema.get("properties", {})
        return [f"unexpected argument {k!r}" for k in value if k not in declared]
    if kind == "enum":
        return [f"{value!r} is not one of {bound}"]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return [f"{value} violates {kind} {bound}"]
    if kind == "minLength":
        return [f"shorter than {bound} characters"]
    if kind == "maxLength":
        return [f"longer than {bound} characters"]
    if kind == "pattern":
        return [f"{value!r} does not match {bound}"]
    return [err.message]


def _path(root: str, parts: Iterable[Any]) -> str:
    return root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _ArgsValidator.TYPE_CHECKER.is_type(value, name):
            return name
    return type(value).__name__
