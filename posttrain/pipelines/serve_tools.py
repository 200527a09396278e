"""Tools in `posttrain serve`: OpenAI function specs in, the trained Thought→Action format to the
model, OpenAI `tool_calls` out.

The served adapter was trained on a system prompt that lists the tools and on turns of the form
`Thought: ...` + `Action: ```json {"tool", "args"}```` (or `Final Answer: ...`), with each tool
result sent back as a user turn `Observation: ...`. So a request's tools become that system
prompt, its assistant `tool_calls` and `tool` messages become Action and Observation turns, and
the model's reply is parsed with `toolcall.parse_response`: a call becomes `message.tool_calls`
(content null, as OpenAI answers; the Thought goes in `reasoning_content`, vLLM's field, and
comes back from there when a client echoes the message), a final answer plain `content`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from posttrain.constrained import SchemaError, bounded_numbers, llguidance_module
from posttrain.pipelines.serve_schema import APIError, ChatMessage, ChatRequest, NamedToolChoice
from posttrain.tasks.episodes import compact_system_prompt
from posttrain.toolcall import (
    ACTION,
    FINAL,
    Tool,
    ToolRegistry,
    format_call,
    format_final,
    format_system_prompt,
    parse_response,
)

ToolPrompt = Literal["compact", "full"]
TOOL_PROMPTS: tuple[ToolPrompt, ...] = ("compact", "full")
OBSERVATION = "Observation:"
MAX_THOUGHT_CHARS = 200  # of a forced call's Thought: a random model must still reach the Action


def request_registry(req: ChatRequest) -> ToolRegistry | None:
    """The request's tools as spec-only `Tool`s (never run here: the client runs them)."""
    if not req.tools:
        return None
    return ToolRegistry(
        [Tool(t.function.name, t.function.description or "", t.function.parameters) for t in req.tools]
    )


def tool_system_prompt(registry: ToolRegistry, style: ToolPrompt) -> str:
    """`compact` is what `posttrain align` and the quickstart train on (`compact_prompt: true`);
    `full` is `toolcall.format_system_prompt`, what `posttrain data tool-use` rows carry."""
    schemas = registry.schemas()
    return compact_system_prompt(schemas) if style == "compact" else format_system_prompt(schemas)


def choice_name(req: ChatRequest) -> str:
    """ "auto" (also when tools come without a tool_choice), "none", "required" or "named"."""
    if isinstance(req.tool_choice, NamedToolChoice):
        return "named"
    return req.tool_choice or "auto"


def render_messages(
    messages: list[ChatMessage], registry: ToolRegistry | None, style: ToolPrompt
) -> list[dict[str, str]]:
    """The conversation as the model was trained to read it.

    Without tools and without tool history this is the messages as sent. With tools, the tool
    prompt opens the system message (a client's own leading system text follows it) and an
    assistant answer becomes `Final Answer:`; each `tool_calls` entry becomes an Action turn
    followed by its `tool` message as an Observation, in the order the tool messages answer them.
    """
    out: list[dict[str, str]] = []
    lead: list[str] = [tool_system_prompt(registry, style)] if registry else []
    pending: dict[str, tuple[str, dict[str, Any], str]] = {}  # call id -> (name, args, thought)
    opened_at = 0  # index of the assistant message whose calls are pending
    for i, msg in enumerate(messages):
        if pending and msg.role != "tool":
            raise _unanswered(pending, opened_at)
        if msg.role in ("system", "developer") and registry and not out:
            lead.append(str(msg.content))
        elif msg.role == "assistant" and msg.tool_calls:
            thought = msg.reasoning_content or msg.content or ""
            for call in msg.tool_calls:
                name = call.function.name
                pending[call.id] = (name, call.function.args(), str(thought) or f"I will call {name}.")
                thought = ""  # one Thought per message: the first call carries it
            opened_at = i
        elif msg.role == "tool":
            if msg.tool_call_id not in pending:
                raise APIError(
                    400,
                    f"messages.{i}: no assistant tool call before it has id '{msg.tool_call_id}' "
                    "(or it was answered already)",
                    f"messages.{i}.tool_call_id",
                )
            name, args, thought = pending.pop(str(msg.tool_call_id))
            _flush(out, lead)
            out.append({"role": "assistant", "content": format_call(thought, name, args)})
            out.append({"role": "user", "content": f"{OBSERVATION} {msg.content or ''}"})
        elif msg.role == "assistant" and registry:
            _flush(out, lead)
            out.append({"role": "assistant", "content": _as_final(msg)})
        else:
            _flush(out, lead)
            out.append(msg.for_template())
    if pending:
        raise _unanswered(pending, opened_at)
    _flush(out, lead)
    return out


def _flush(out: list[dict[str, str]], lead: list[str]) -> None:
    """Write the system message (tool prompt + the client's system text) once, first."""
    if lead and not out:
        out.append({"role": "system", "content": "\n\n".join(lead)})
        lead.clear()


def _as_final(msg: ChatMessage) -> str:
    text = str(msg.content)
    if FINAL in text or ACTION in text:  # already in the trained format (a client sent raw turns)
        return text
    return format_final(msg.reasoning_content, text)


def _unanswered(pending: dict[str, Any], at: int) -> APIError:
    return APIError(
        400,
        f"messages.{at}: an assistant message with tool_calls must be followed by tool messages "
        f"answering each tool_call_id (missing: {', '.join(pending)})",
        f"messages.{at}",
    )


def forced_call_grammar(registry: ToolRegistry, only: str | None, lltok: Any) -> str:
    """An llguidance grammar for one whole Thought→Action turn calling `only` (else any offered
    tool) with arguments that follow its schema: how `required` and a named tool_choice are kept.

    The Thought is one line of at most MAX_THOUGHT_CHARS; arguments are compact JSON, numbers
    bounded as in `constrained.json_schema_grammar`, and undeclared arguments are left out.
    """
    options = []
    for name, tool in registry.items():
        if only is not None and name != only:
            continue
        args = dict(tool.parameters)
        if "properties" in args:
            args.setdefault("additionalProperties", False)
        envelope = {"tool": {"const": name}, "args": bounded_numbers(args)}
        options.append(
            {
                "type": "object",
                "properties": envelope,
                "required": ["tool", "args"],
                "additionalProperties": False,
            }
        )
    schema = {"anyOf": options, "x-guidance": {"whitespace_flexible": False}}
    thought = f"/[^\\n\\t `][^\\n`]{{0,{MAX_THOUGHT_CHARS - 1}}}/"
    lark = (
        f'start: "Thought: " THOUGHT "\\n{ACTION} ```json\\n" body "\\n```"\n'
        f"THOUGHT: {thought}\nbody: %json {json.dumps(schema)}"
    )
    matcher = llguidance_module().LLMatcher
    try:
        grammar = matcher.grammar_from_lark(lark)
        is_error, problems = matcher.validate_grammar_with_warnings(grammar, lltok)
    except (ValueError, SchemaError) as exc:
        is_error, problems = True, [str(exc)]
    if is_error:
        reason = problems[0].strip() if problems else "llguidance rejected it"
        raise APIError(400, f"cannot force a call of these tools' parameter schemas: {reason}", "tools")
    return grammar


def reply_message(text: str, registry: ToolRegistry, choice: str) -> tuple[dict[str, Any], str | None]:
    """The assistant message for a model turn, and the finish_reason it forces (None: keep the
    sampler's). A parsed call is `tool_calls` (never under tool_choice "none"); a final answer is
    its answer text; anything else (a malformed turn, an unknown tool) is the raw text as content.
    """
    result = parse_response(text, registry)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if result.kind == "call" and choice != "none" and result.call is not None:
        arguments = json.dumps(result.call.args, ensure_ascii=False)
        call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function"}
        call["function"] = {"name": result.call.name, "arguments": arguments}
        message.update(content=None, tool_calls=[call], reasoning_content=result.thought)
        return message, "tool_calls"
    if result.kind == "final":
        message.update(content=result.final_answer, reasoning_content=result.thought)
    return message, None
