"""Tools from a user's file: OpenAI-style function specs in JSON, JSONL or YAML, checked on load.

A spec is `{"type": "function", "function": {"name", "description", "parameters"}}` or the bare
`{"name", "description", "parameters"}`. An optional `"entry_point": "module:function"` (beside
`type` or inside `function`) binds the implementation through importlib, never `eval`; a spec
without one is scored only (`Tool.fn is None`). The file is either a list of specs, an object
`{"tools": [...]}`, or (JSONL) one spec per line.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import DataError
from posttrain.toolcall.schema import check_parameters
from posttrain.toolcall.spec import Tool

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_WRAPPER_KEYS = {"type", "function", "entry_point"}
_FUNCTION_KEYS = {"name", "description", "parameters", "entry_point", "strict"}


class _SpecError(Exception):
    """One problem with one spec; `load_tools` adds the file and the spec's place."""


def load_tools(path: str | Path) -> list[Tool]:
    """Read, check and bind every tool in `path` (`.json`, `.jsonl` or `.yaml`/`.yml`).

    Raises `DataError` naming the file, the line (JSONL) or item (1-based), the tool and the field,
    e.g. `tools.jsonl:3: tool 'get_weather': parameters.properties.city.type: 'strin' is not a
    JSON Schema type (...)`. Duplicate names are errors. An `entry_point` module is imported with
    the tools file's folder first on `sys.path`, so a module next to the file is found.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), None, None, "tools file not found")
    # (place, spec): place is a JSONL line number or "item N" for a list in JSON / YAML
    items = _read_jsonl(path) if path.suffix == ".jsonl" else _read_document(path)
    tools: list[Tool] = []
    seen: dict[str, str] = {}
    for place, spec in items:
        line = place if isinstance(place, int) else None
        where = "" if line is not None else f"{place}: "
        name = _name_of(spec)
        label = f"tool {name!r}: " if name else ""
        try:
            tool = _tool(spec, path.parent)
        except _SpecError as err:
            raise DataError(str(path), line, None, f"{where}{label}{err}") from None
        if tool.name in seen:
            first = seen[tool.name]
            raise DataError(str(path), line, None, f"{where}{label}duplicate name (first defined at {first})")
        seen[tool.name] = f"line {place}" if line is not None else str(place)
        tools.append(tool)
    if not tools:
        raise DataError(str(path), None, None, "no tools in the file")
    return tools


def _read_jsonl(path: Path) -> list[tuple[int | str, Any]]:
    items: list[tuple[int | str, Any]] = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            items.append((number, json.loads(text)))
        except ValueError as err:
            raise DataError(str(path), number, None, f"invalid JSON: {err}") from None
    return items


def _read_document(path: Path) -> list[tuple[int | str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(str(path), err.lineno, None, f"invalid JSON: {err.msg}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DataError(str(path), line, None, f"invalid YAML: {getattr(err, 'problem', err)}") from None
    if isinstance(doc, dict) and set(doc) == {"tools"}:
        doc = doc["tools"]
    if not isinstance(doc, list):
        expected = 'expected a list of tool specs or {"tools": [...]}'
        raise DataError(str(path), None, None, f"{expected}, got {type(doc).__name__}")
    return [(f"item {i}", spec) for i, spec in enumerate(doc, start=1)]


def _name_of(spec: Any) -> str | None:
    """The spec's name if it has a readable one, for error messages only."""
    if not isinstance(spec, dict):
        return None
    fn = spec.get("function", spec)
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) and name else None


def _tool(spec: Any, folder: Path) -> Tool:
    if not isinstance(spec, dict):
        raise _SpecError(f"expected a tool spec object, got {type(spec).__name__}")
    if "function" in spec:
        _no_unknown_keys(spec, _WRAPPER_KEYS, "")
        if spec.get("type", "function") != "function":
            raise _SpecError(f"type: expected 'function', got {spec['type']!r}")
        fn = spec["function"]
        if not isinstance(fn, dict):
            raise _SpecError(f"function: expected an object, got {type(fn).__name__}")
        prefix = "function."
        entry = spec.get("entry_point", fn.get("entry_point"))
    else:
        fn, prefix, entry = spec, "", spec.get("entry_point")
    _no_unknown_keys(fn, _FUNCTION_KEYS, prefix)
    name = fn.get("name")
    if name is None:
        raise _SpecError(f"{prefix}name: missing (every tool needs a name)")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _SpecError(
            f"{prefix}name: {name!r} is not a function name (letters, digits, _ . -; at most 64)"
        )
    description = fn.get("description", "")
    if not isinstance(description, str):
        raise _SpecError(f"{prefix}description: expected a string, got {type(description).__name__}")
    parameters = fn.get("parameters", {"type": "object", "properties": {}})
    problems = check_parameters(parameters)
    if problems:
        raise _SpecError(problems[0])
    return Tool(name, description, parameters, _bind(entry, folder) if entry is not None else None)


def _no_unknown_keys(obj: dict[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise _SpecError(f"{prefix}{unknown[0]}: unknown key (expected {', '.join(sorted(known))})")


def _bind(entry: Any, folder: Path) -> Callable[..., Any]:
    """The callable `module:attr.path` names, imported (never evaluated)."""
    if not isinstance(entry, str) or entry.count(":") != 1 or not all(entry.split(":")):
        raise _SpecError(f"entry_point: expected 'module:function', got {entry!r}")
    module_name, attr_path = entry.split(":")
    sys.path.insert(0, str(folder.resolve()))
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module may fail in any way while importing
        raise _SpecError(f"entry_point: cannot import {module_name!r}: {err}") from None
    finally:
        sys.path.remove(str(folder.resolve()))
    target: Any = module
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise _SpecError(f"entry_point: {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, attr)
    if not callable(target):
        raise _SpecError(f"entry_point: {entry!r} is not callable")
    return target
