"""The Thought→Action format as text: the system prompt that teaches it and the turn renderers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from posttrain.toolcall.spec import Tool

THOUGHT, ACTION, FINAL = "Thought:", "Action:", "Final Answer:"


def format_system_prompt(tools: Sequence[Tool | dict[str, Any]]) -> str:
    """The compact system prompt: the output format and one line per tool.

    Small chat templates (SmolLM2's among them) ignore `tools=`, so the tool list lives here.
    """
    lines = [
        "You are an assistant that can call tools. To call a tool, reply exactly:",
        "Thought: <reasoning>",
        'Action: ```json\n{"tool": "<name>", "args": {<arguments>}}\n```',
        "When you know the answer, or no tool is needed, reply:",
        "Thought: <reasoning>\nFinal Answer: <answer>",
        "Tools:",
    ]
    for tool in tools:
        fn = tool.schema()["function"] if isinstance(tool, Tool) else tool["function"]
        lines.append(f"- {fn['name']}({_signature(fn['parameters'])}): {fn['description']}")
    return "\n".join(lines)


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
