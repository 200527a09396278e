"""Tools with OpenAI / Hugging Face function schemas, and the registry that runs them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.toolcall.schema import validate_args

MAX_OBSERVATION_CHARS = 1000


@dataclass
class Tool:
    """A tool with an OpenAI / Hugging Face function schema, and optionally its implementation.

    `parameters` is a JSON-schema object (`{"type": "object", "properties": ..., "required": ...}`).
    `fn` receives the validated arguments as keyword arguments and returns anything `json.dumps`
    accepts; exceptions it raises become `Error: ...` observations in `ToolRegistry.execute`.
    `fn=None` is a spec-only tool: scoring a call needs only the schema, so evaluating on someone
    else's functions does not require their code; executing it gives an `Error:` observation.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any] | None = None

    def schema(self) -> dict[str, Any]:
        """The function schema, accepted unchanged by `apply_chat_template(tools=...)` and OpenAI."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolCall:
    """One call as the model wrote it; `args` are checked only when the registry runs it."""

    name: str
    args: dict[str, Any]


class ToolRegistry(Mapping[str, Tool]):
    """Tools by name. `execute` never raises: every failure is an observation string."""

    def __init__(self, tools: Sequence[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add `tool`; a second tool of the same name is a `ValueError` (calls name tools)."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool's function schema, in registration order (for `tools=` of a chat template)."""
        return [tool.schema() for tool in self._tools.values()]

    def execute(self, call: ToolCall) -> str:
        """Run `call` and return the observation text (a JSON value, or `Error: ...`)."""
        return self.execute_checked(call)[0]

    def execute_checked(self, call: ToolCall) -> tuple[str, bool]:
        """Like `execute`, plus whether the tool ran without error."""
        tool = self._tools.get(call.name)
        if tool is None:
            return f"Error: unknown tool {call.name!r}; available: {', '.join(self._tools)}", False
        problems = validate_args(tool.parameters, call.args)
        if problems:
            return f"Error: invalid arguments for {call.name}: {'; '.join(problems)}", False
        if tool.fn is None:
            return f"Error: tool {call.name!r} has no implementation (it is scored, never run)", False
        try:
            result = tool.fn(**call.args)
            text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        except Exception as err:  # a tool bug or bad input must reach the model, not crash the loop
            return f"Error: {err}" if str(err) else f"Error: {type(err).__name__}", False
        if len(text) > MAX_OBSERVATION_CHARS:
            text = text[:MAX_OBSERVATION_CHARS] + " ...(truncated)"
        return text, True
