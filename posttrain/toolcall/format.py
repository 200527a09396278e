"""The Thought→Action format as text: the system prompt that teaches it and the turn renderers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from posttrain.toolcall.spec import Tool

THOUGHT, ACTION, FINAL = "Thought:", "Action:", "Final Answer:"


def format_system_prompt(
    tools: Sequence[Tool | dict[str, Any]], *, detail: Literal["compact", "full"] = "compact"
) -> str:
    """The system prompt: the output format and the tool list.

    Small chat templates (SmolLM2's among them) ignore `tools=`, so the tool list lives here.
    `detail="compact"` (the default, the text the training data uses) gives one signature line per
    tool; `detail="full"` appends every parameter's description, default and choices (`render_tools`),
    so whatever a tool's author wrote in its schema reaches the model.
    """
    if detail == "full":
        return "\n".join([*_HEADER, render_tools(tools)])
    if detail != "compact":
        raise ValueError(f"detail must be 'compact' or 'full', got {detail!r}")
    lines = list(_HEADER)
    for tool in tools:
        fn = _function(tool)
        lines.append(f"- {fn['name']}({_signature(fn['parameters'])}): {fn['description']}")
    return "\n".join(lines)


_HEADER = (
    "You are an assistant that can call tools. To call a tool, reply exactly:",
    "Thought: <reasoning>",
    'Action: ```json\n{"tool": "<name>", "args": {<arguments>}}\n```',
    "When you know the answer, or no tool is needed, reply:",
    "Thought: <reasoning>\nFinal Answer: <answer>",
    "Tools:",
)


def render_tools(tools: Sequence[Tool | dict[str, Any]]) -> str:
    """Every tool in full: its signature line, then one line per parameter (nested ones indented).

    Each parameter line carries its type, whether it is required, its description, its default and
    its allowed values, e.g. `    unit (string, optional, default "celsius"; one of: celsius,
    fahrenheit): Temperature unit.` Nothing the schema says to a reader is dropped.
    """
    lines = []
    for tool in tools:
        fn = _function(tool)
        params = fn.get("parameters") or {}
        lines.append(f"- {fn['name']}({_signature(params)}): {fn.get('description', '')}")
        lines += _parameter_lines(params, indent="    ")
    return "\n".join(lines)


def _function(tool: Tool | dict[str, Any]) -> dict[str, Any]:
    if isinstance(tool, Tool):
        return tool.schema()["function"]
    return tool.get("function", tool)


def _parameter_lines(schema: dict[str, Any], indent: str) -> list[str]:
    required = set(schema.get("required", []))
    lines = []
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type", "any")
        kind = "|".join(kind) if isinstance(kind, list) else kind
        if kind == "array" and isinstance(spec.get("items"), dict) and "type" in spec["items"]:
            kind = f"array of {spec['items']['type']}"
        facts = [kind, "required" if name in required else "optional"]
        if "default" in spec:
            facts.append(f"default {json.dumps(spec['default'], ensure_ascii=False)}")
        head = ", ".join(facts)
        if "enum" in spec:
            head += "; one of: " + ", ".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
        description = spec.get("description", "")
        lines.append(f"{indent}{name} ({head})" + (f": {description}" if description else ""))
        if isinstance(spec.get("properties"), dict):
            lines += _parameter_lines(spec, indent + "    ")
        elif isinstance(spec.get("items"), dict) and isinstance(spec["items"].get("properties"), dict):
            lines += _parameter_lines(spec["items"], indent + "    ")
    return lines


def _signature(params: dict[str, Any]) -> str:
    required = set(params.get("required", []))
    parts = []
    for name, spec in params.get("properties", {}).items():
        kind = spec["enum"] if "enum" in spec else spec.get("type", "any")
        kind = "|".join(str(v) for v in kind) if isinstance(kind, list) else kind
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return ", ".join(parts)


def format_call(thought: str, name: str, args: dict[str, Any]) -> str:
    """A fully compliant tool-call turn; `parse_response` gives back exactly `name` and `args`."""
    # A backtick can only sit inside a JSON string, where its \u escape means the same; escaping it
    # keeps a "```" in an argument from closing the fence early.
    body = json.dumps({"tool": name, "args": args}, ensure_ascii=False).replace("`", "\\u0060")
    return f"{THOUGHT} {thought.strip()}\n{ACTION} ```json\n{body}\n```"


def format_final(thought: str | None, answer: str) -> str:
    """A compliant final turn; `thought=None` leaves the optional Thought line out."""
    head = f"{THOUGHT} {thought.strip()}\n" if thought else ""
    return f"{head}{FINAL} {answer.strip()}"
