"""The parser of one assistant turn: a call, a final answer, or the first failure kind."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from posttrain.toolcall.format import ACTION, FINAL, THOUGHT
from posttrain.toolcall.schema import validate_args
from posttrain.toolcall.spec import Tool, ToolCall

FailureKind = Literal["no_thought", "invalid_json", "unknown_tool", "schema_violation", "no_action"]
ResultKind = Literal[
    "call", "final", "no_thought", "invalid_json", "unknown_tool", "schema_violation", "no_action"
]
FAILURE_KINDS: tuple[FailureKind, ...] = (
    "no_action",
    "no_thought",
    "invalid_json",
    "unknown_tool",
    "schema_violation",
)
"""Failure kinds in the order the parser reports them when a turn has several defects."""

# Opening fence right after `Action:`; tag optional; body may sit on the fence line.
_FENCE_RE = re.compile(r"\s*```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
# A final answer ends where the model starts a new ReAct turn on its own.
_ANSWER_END_RE = re.compile(r"\n\s*(?:Thought:|Action:|Observation:)")


@dataclass(frozen=True)
class ParseResult:
    """What one assistant turn is.

    `kind` is "call", "final" or the first failure in `FAILURE_KINDS` order. The diagnostic fields
    are filled independently of `kind` so metrics can count them separately: a turn without a
    Thought still reports `json_valid` and its `call`.
    """

    kind: ResultKind
    call: ToolCall | None = None
    final_answer: str | None = None
    thought: str | None = None
    error: str | None = None
    has_thought: bool = False
    json_valid: bool | None = None  # None when the turn has no Action
    turn: str = ""  # the text that forms the turn (trailing text after the fence dropped)

    @property
    def compliant(self) -> bool:
        """Full compliance as the `posttrain.toolcall` docstring defines it: a valid call or a
        well-formed final."""
        return self.kind in ("call", "final")


def parse_response(text: str, registry: Mapping[str, Tool]) -> ParseResult:
    """Classify one assistant turn. Never raises, whatever `text` is."""
    action_at, final_at = text.find(ACTION), text.find(FINAL)
    if action_at < 0 and final_at < 0:
        thought = _thought(text, len(text))
        return ParseResult(
            "no_action",
            thought=thought,
            has_thought=thought is not None,
            turn=text,
            error="no `Action:` or `Final Answer:` found",
        )
    if final_at >= 0 and (action_at < 0 or final_at < action_at):
        return _parse_final(text, final_at)
    return _parse_action(text, action_at, registry)


def _thought(text: str, end: int) -> str | None:
    """The reasoning when `text[:end]` is `Thought: <non-empty>`; None otherwise."""
    head = text[:end].strip()
    if not head.startswith(THOUGHT):
        return None
    reasoning = head[len(THOUGHT) :].strip()
    return reasoning or None


def _parse_final(text: str, at: int) -> ParseResult:
    thought = _thought(text, at)
    rest = text[at + len(FINAL) :]
    cut = _ANSWER_END_RE.search(rest)
    answer = (rest[: cut.start()] if cut else rest).strip()
    turn = text[: at + len(FINAL) + (cut.start() if cut else len(rest))].strip()
    common = {"thought": thought, "has_thought": thought is not None, "turn": turn}
    if thought is None and text[:at].strip():
        error = "text before `Final Answer:` is not a Thought"
        return ParseResult("no_thought", final_answer=answer, error=error, **common)
    if not answer:
        return ParseResult("no_action", error="empty Final Answer", **common)
    return ParseResult("final", final_answer=answer, **common)


def _parse_action(text: str, at: int, registry: Mapping[str, Tool]) -> ParseResult:
    thought = _thought(text, at)
    after = at + len(ACTION)
    fence = _FENCE_RE.match(text, after)
    turn = text[: fence.end()].strip() if fence else text.strip()
    call, json_error = None, None
    if fence is None:
        json_error = "`Action:` is not followed by a ```json fenced block"
    else:
        call, json_error = _envelope(fence.group(1))
    common = {"thought": thought, "has_thought": thought is not None, "turn": turn, "call": call}
    common["json_valid"] = json_error is None
    if thought is None:
        return ParseResult(
            "no_thought", error="the turn does not start with `Thought: <reasoning>`", **common
        )
    return checked_call(call, json_error, registry, common)


def checked_call(
    call: ToolCall | None, json_error: str | None, registry: Mapping[str, Tool], common: dict[str, Any]
) -> ParseResult:
    """The verdict on a written call, whatever format it was read from: broken, an unknown tool,
    arguments against the schema, or a call (`common` holds the result's other fields)."""
    if call is None:
        return ParseResult("invalid_json", error=json_error, **common)
    if call.name not in registry:
        return ParseResult("unknown_tool", error=f"unknown tool {call.name!r}", **common)
    problems = validate_args(registry[call.name].parameters, call.args)
    if problems:
        return ParseResult("schema_violation", error="; ".join(problems), **common)
    return ParseResult("call", **common)


def _envelope(body: str) -> tuple[ToolCall | None, str | None]:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as err:
        return None, f"invalid JSON: {err}"
    if not isinstance(obj, dict) or set(obj) != {"tool", "args"}:
        return None, 'the JSON must be an object with exactly the keys "tool" and "args"'
    if not isinstance(obj["tool"], str) or not isinstance(obj["args"], dict):
        return None, '"tool" must be a string and "args" an object'
    return ToolCall(obj["tool"], obj["args"]), None
