"""Tools in `posttrain serve`: OpenAI function specs in, the format the adapter was trained on to
the model, OpenAI `tool_calls` out.

The served adapter was trained on a system prompt that lists the tools and on turns of the form
`Thought: ...` + `Action: ```json {"tool", "args"}```` (or `Final Answer: ...`), with each tool
result sent back as a user turn `Observation: ...`. So a request's tools become that system
prompt, its assistant `tool_calls` and `tool` messages become Action and Observation turns, and
the model's reply is parsed with `toolcall.parse_response`: a call becomes `message.tool_calls`
(content null, as OpenAI answers; the Thought goes in `reasoning_content`, vLLM's field, and
comes back from there when a client echoes the message), a final answer plain `content`.

An adapter trained with `data.tool_format: chat_template` (`--tool-prompt chat_template`) reads
its tools the way its chat template writes them (`apply_chat_template(tools=...)`: Qwen's and
Hermes' `<tool_call>` turns): the request's messages go to the template as OpenAI sent them (tool
calls and `tool` turns included) and the reply is parsed with `parse_chat_reply`. There is no
Thought in that format, so `reasoning_content` stays empty.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from posttrain.constrained import SchemaError
from posttrain.errors import ConfigError
from posttrain.pipelines.serve_schema import APIError, ChatMessage, ChatRequest, NamedToolChoice
from posttrain.tasks.episodes import compact_system_prompt
from posttrain.tasks.tool_use.chat_format import ChatToolFormat, call_message
from posttrain.toolcall import (
    ACTION,
    FINAL,
    ParseResult,
    Tool,
    ToolRegistry,
    format_call,
    format_final,
    format_system_prompt,
    parse_response,
    tool_turn_grammar,
)

ToolPrompt = Literal["compact", "full", "chat_template"]
TOOL_PROMPTS: tuple[ToolPrompt, ...] = ("compact", "full", "chat_template")
OBSERVATION = "Observation:"


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
    check_tool_history(messages)
    out: list[dict[str, str]] = []
    lead: list[str] = [tool_system_prompt(registry, style)] if registry else []
    pending: dict[str, tuple[str, dict[str, Any], str]] = {}  # call id -> (name, args, thought)
    for msg in messages:
        if msg.role in ("system", "developer") and registry and not out:
            lead.append(str(msg.content))
        elif msg.role == "assistant" and msg.tool_calls:
            thought = msg.reasoning_content or msg.content or ""
            for call in msg.tool_calls:
                name = call.function.name
                pending[call.id] = (name, call.function.args(), str(thought) or f"I will call {name}.")
                thought = ""  # one Thought per message: the first call carries it
        elif msg.role == "tool":
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
    _flush(out, lead)
    return out


def chat_template_messages(
    messages: list[ChatMessage], registry: ToolRegistry | None, fmt: ChatToolFormat
) -> list[dict[str, str]]:
    """The conversation as a chat-template adapter was trained to read it: the OpenAI messages
    rendered by the template with the request's tools, carried as the plain turns that render the
    same without `tools=` (`ChatToolFormat.plain`), so the server's prompt is exactly
    `apply_chat_template(messages, tools=...)`. A template that cannot render this conversation
    (e.g. one that wants strictly alternating turns) is a 400 naming the messages."""
    check_tool_history(messages)
    names: dict[str, str] = {}  # call id -> tool name, for templates that name a tool turn
    turns: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role == "assistant" and msg.tool_calls:
            calls = []
            for call in msg.tool_calls:
                names[call.id] = call.function.name
                entry = call_message(call.function.name, call.function.args())["tool_calls"][0]
                calls.append({"id": call.id, **entry})
            turn: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
            if msg.content:
                turn["content"] = str(msg.content)
            turns.append(turn)
        elif msg.role == "tool":
            call_id = str(msg.tool_call_id)
            turns.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "name": names[call_id],
                    "content": str(msg.content or ""),
                }
            )
        else:
            turns.append(msg.for_template())
    if registry is None and not names:
        return turns
    try:
        return fmt.plain(turns, registry.schemas() if registry else [])
    except (ConfigError, ValueError) as exc:
        raise APIError(
            400, f"the model's chat template cannot render these messages with tools: {exc}", "messages"
        ) from exc


def check_tool_history(messages: list[ChatMessage]) -> None:
    """Every `tool` message answers an earlier assistant tool call by id, once, before the next
    message of another role: what both prompt formats need to pair calls with their results."""
    pending: dict[str, None] = {}  # call ids in the order they were made
    opened_at = 0  # index of the assistant message whose calls are pending
    for i, msg in enumerate(messages):
        if pending and msg.role != "tool":
            raise _unanswered(pending, opened_at)
        if msg.role == "assistant" and msg.tool_calls:
            pending.update(dict.fromkeys(call.id for call in msg.tool_calls))
            opened_at = i
        elif msg.role == "tool":
            if msg.tool_call_id not in pending:
                raise APIError(
                    400,
                    f"messages.{i}: no assistant tool call before it has id '{msg.tool_call_id}' "
                    "(or it was answered already)",
                    f"messages.{i}.tool_call_id",
                )
            del pending[str(msg.tool_call_id)]
    if pending:
        raise _unanswered(pending, opened_at)


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


def _unanswered(pending: dict[str, None], at: int) -> APIError:
    return APIError(
        400,
        f"messages.{at}: an assistant message with tool_calls must be followed by tool messages "
        f"answering each tool_call_id (missing: {', '.join(pending)})",
        f"messages.{at}",
    )


def forced_call_grammar(
    registry: ToolRegistry, only: str | None, lltok: Any, fmt: ChatToolFormat | None = None
) -> str:
    """An llguidance grammar for one whole assistant turn calling `only` (else any offered tool)
    with arguments that follow its schema: how `required` and a named tool_choice are kept
    (`toolcall.tool_turn_grammar` without an answer; in a chat template's format its own call
    text, `chat_call_layout`). A schema llguidance cannot compile is a 400 naming `tools`."""
    layout = None if fmt is None else chat_call_layout(fmt, registry)
    try:
        return tool_turn_grammar(registry.values(), only=only, answer=False, layout=layout, lltok=lltok)
    except SchemaError as exc:
        raise APIError(400, f"cannot force a call of these tools' parameter schemas: {exc}", "tools") from exc


def chat_call_layout(fmt: ChatToolFormat, registry: ToolRegistry) -> tuple[str, tuple[str, str], str]:
    """How the chat template writes one call: the text before the call's JSON object, the object's
    name and arguments keys, and the text after it (Qwen/Hermes: `<tool_call>\\n`, ("name",
    "arguments"), `\\n</tool_call>`). Found by rendering a call of the first offered tool and
    locating its JSON object in the template's assistant text."""
    name = next(iter(registry))
    turn = call_message(name, {})
    text = fmt.assistant_text([{"role": "user", "content": "Hello"}], registry.schemas(), turn)
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("name") == name:
            args_key = next((k for k in ("arguments", "parameters") if k in obj), None)
            if args_key is not None:
                return text[:start], ("name", args_key), text[end:]
    raise APIError(
        400,
        f"tool_choice cannot force a call: the chat template of {fmt.model!r} does not write a call as "
        'a {"name", "arguments"} JSON object',
        "tool_choice",
    )


def reply_message(
    text: str, registry: ToolRegistry, choice: str, fmt: ChatToolFormat | None = None
) -> tuple[dict[str, Any], str | None]:
    """The assistant message for a model turn, and the finish_reason it forces (None: keep the
    sampler's). A parsed call is `tool_calls` (never under tool_choice "none"); a final answer is
    its answer text; anything else (a malformed turn, an unknown tool) is the raw text as content.
    The turn is read in the Thought→Action format, or in the chat template's given `fmt`.
    """
    result: ParseResult = parse_response(text, registry) if fmt is None else fmt.parse(text, registry)
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
