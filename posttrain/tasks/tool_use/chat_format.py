"""The model's own chat-template tool format: rows rendered through `apply_chat_template(tools=...)`
and replies parsed back to the project's call shape (`data.tool_format: chat_template`).

Seed 004's Thought→Action format stays the default. This one is for a model whose template renders
a tool list (Qwen2.5 / Qwen3, Hermes and other ChatML tool templates): the adapter then calls tools
the way that model's users' clients (vLLM, Ollama, transformers serve) already parse them.

Everything downstream (SFT tokenization, batched generation, TRL's DPO, Ray rollout shards) carries
conversations as plain `{role, content}` turns and renders them without `tools=`. So
`ChatToolFormat.plain` writes the template's own tool list into the system turn and the template's
own call text into each assistant turn, and checks that the result renders byte for byte as
`apply_chat_template(openai_messages, tools=...)` does: what training sees is what a client's
request becomes. A template that ignores tools, or keeps its tool list outside the system turn, is
a ConfigError naming the model; there is no silent fallback to the default format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

from posttrain.errors import ConfigError
from posttrain.toolcall import ParseResult, Tool, ToolCall, parse_response
from posttrain.toolcall.parse import checked_call

ToolSpecs = Sequence[dict[str, Any]]

_PROBE_NAME = "posttrain_probe_tool"
_PROBE = {
    "type": "function",
    "function": {
        "name": _PROBE_NAME,
        "description": "Probe whether the chat template renders tools.",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
    },
}
# Stands in for a turn's content when finding what a template writes around it.
_SENTINEL = "\u2063posttrain-turn\u2063"
_HERMES_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_OBSERVATION = "Observation: "


def supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a tool list: a probe tool's name appears when
    it is passed, and the text differs from the rendering without it."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    turns = [{"role": "user", "content": "Hello"}]
    try:
        with_tools = _render(tokenizer, turns, [_PROBE], opened=True)
        without = _render(tokenizer, turns, None, opened=True)
    except (TemplateError, TypeError, ValueError):
        return False
    return with_tools != without and _PROBE_NAME in with_tools


def chat_tool_format(tokenizer: Any, model: str) -> ChatToolFormat:
    """The format bound to `tokenizer`; ConfigError naming `model` when its template cannot do it."""
    if not supports_tools(tokenizer):
        raise ConfigError(
            f"data.tool_format=chat_template needs a chat template that renders tools "
            f"(apply_chat_template(tools=...)), and the template of {model!r} ignores them; "
            "use data.tool_format=react (Thought→Action, any model) or a model whose template "
            "supports tools (e.g. Qwen2.5 or Qwen3)"
        )
    fmt = ChatToolFormat(tokenizer, model)
    fmt.plain([{"role": "user", "content": "Hello"}], [_PROBE])  # a layout it cannot carry fails here
    return fmt


def call_message(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI assistant turn that calls `name` (arguments as an object, as templates expect)."""
    function = {"name": name, "arguments": dict(args)}
    return {"role": "assistant", "tool_calls": [{"type": "function", "function": function}]}


def openai_turn(text: str) -> dict[str, Any]:
    """A Thought→Action turn as an OpenAI assistant message: its call as `tool_calls` (a call of any
    name, offered or not), its final answer as `content`; other text is kept as it is."""
    parsed = parse_response(text, {})
    if parsed.call is not None:
        return call_message(parsed.call.name, parsed.call.args)
    return {"role": "assistant", "content": parsed.final_answer or text}


def openai_messages(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A pool or user-tools row's gold conversation in OpenAI's shape: its turns, the gold call as
    `tool_calls` (or a plain reply for a no-call row), then the tool's result as a `tool` turn and
    the final answer where the row has a follow-up."""
    turns: list[dict[str, Any]] = [dict(m) for m in row["messages"]]
    gold = openai_turn(row["completion"])
    turns.append(gold)
    follow = row.get("follow_up")
    if follow and "tool_calls" in gold:
        name = gold["tool_calls"][0]["function"]["name"]
        result = follow["observation"].removeprefix(_OBSERVATION)
        turns.append({"role": "tool", "name": name, "content": result})
        turns.append(openai_turn(follow["final"]))
    return turns


@dataclass(frozen=True)
class ChatToolFormat:
    """The chat-template tool format of one tokenizer (`chat_tool_format` checks it first)."""

    tokenizer: Any
    model: str

    def render(
        self, messages: Sequence[dict[str, Any]], tools: ToolSpecs | None, opened: bool = False
    ) -> str:
        """`apply_chat_template` text of `messages` with `tools`; `opened` adds the generation prompt."""
        return _render(self.tokenizer, messages, tools, opened)

    def plain(self, messages: Sequence[dict[str, Any]], tools: ToolSpecs) -> list[dict[str, Any]]:
        """`messages` (OpenAI shape) as plain turns that render without `tools=` exactly as the
        template renders `messages` with them: a system turn holding the template's tool list
        (the template's default system text where `messages` has none) and assistant calls as the
        text the template writes for them. Raises ConfigError when the two renderings differ."""
        messages = list(messages)
        first = 1 if messages and messages[0]["role"] == "system" else 0
        if first >= len(messages):
            raise ValueError("a conversation needs a turn after the system turn")
        out: list[dict[str, Any]] = [self._system_turn(messages[: first + 1], tools)]
        for i in range(first, len(messages)):
            turn = messages[i]
            if turn["role"] == "assistant" and turn.get("tool_calls"):
                turn = {"role": "assistant", "content": self.assistant_text(messages[:i], tools, turn)}
            out.append(turn)
        opened = messages[-1]["role"] != "assistant"
        if _render(self.tokenizer, out, None, opened) != self.render(messages, tools, opened):
            raise self._cannot_carry("its tool turns render differently as plain turns")
        return out

    def assistant_text(
        self, before: Sequence[dict[str, Any]], tools: ToolSpecs | None, turn: dict[str, Any]
    ) -> str:
        """What the model writes for the assistant `turn` after `before`: the template's text
        between the opened assistant turn and its end-of-turn marker (the model's call syntax)."""
        before = list(before)
        head = self.render(before, tools, opened=True)
        full = self.render([*before, turn], tools)
        marked = self.render([*before, {"role": "assistant", "content": _SENTINEL}], tools)
        if not (full.startswith(head) and marked.startswith(head + _SENTINEL)):
            raise self._cannot_carry("it does not render an assistant turn after its opened prompt")
        end = marked[len(head) + len(_SENTINEL) :]
        body = full[len(head) :]
        return body[: len(body) - len(end)] if end and body.endswith(end) else body

    def parse(self, text: str, registry: Mapping[str, Tool]) -> ParseResult:
        """`parse_chat_reply` with this tokenizer's `response_template` where it has one."""
        return parse_chat_reply(text, registry, self.tokenizer)

    def _system_turn(self, opening: list[dict[str, Any]], tools: ToolSpecs) -> dict[str, str]:
        """The system turn that carries the tool list: what the template writes between a system
        turn's opening and its end when `tools` are passed, found by rendering a sentinel there."""
        nxt = opening[-1]
        target = self.render(opening, tools)
        layout = _render(self.tokenizer, [{"role": "system", "content": _SENTINEL}, nxt], None, False)
        start, _, tail = layout.partition(_SENTINEL)
        if not (target.startswith(start) and target.endswith(tail) and len(target) >= len(start) + len(tail)):
            raise self._cannot_carry("it writes its tool list outside the system turn")
        return {"role": "system", "content": target[len(start) : len(target) - len(tail)]}

    def _cannot_carry(self, why: str) -> ConfigError:
        return ConfigError(
            f"data.tool_format=chat_template cannot use the chat template of {self.model!r}: {why}, "
            "and posttrain trains tool turns as plain system/user/assistant turns (ChatML tool "
            "templates such as Qwen2.5's and Hermes' work); use data.tool_format=react"
        )


def parse_chat_reply(text: str, registry: Mapping[str, Tool], tokenizer: Any = None) -> ParseResult:
    """One reply in a chat template's tool format, as the project's `ParseResult`.

    The call comes from `tokenizer.parse_response` when the tokenizer has a `response_template`;
    otherwise from the Hermes / Qwen `<tool_call>{"name", "arguments"}</tool_call>` form or the
    Llama 3.1 JSON form (`{"name", "parameters"}` as the whole reply). Only the first call counts
    (the scorer takes one). A reply without a call is a final answer (`kind="final"`; an empty one
    is "no_action"). There is no Thought in this format, so `has_thought` is always False. Never
    raises, whatever `text` is.
    """
    if tokenizer is not None and getattr(tokenizer, "response_template", None):
        try:
            calls, content = _template_calls(text, tokenizer)
        except Exception as err:  # noqa: BLE001 - whatever the schema trips on is a broken reply
            error = f"the tokenizer's response_template cannot parse the reply: {err}"
            return ParseResult("invalid_json", turn=text, json_valid=False, error=error)
    else:
        calls, content = _text_calls(text)
    if not calls:
        answer = content.strip()
        if not answer:
            return ParseResult("no_action", turn=text, error="empty reply")
        return ParseResult("final", final_answer=answer, turn=text)
    call, error = _call(calls[0])
    return checked_call(call, error, registry, {"turn": text, "call": call, "json_valid": error is None})


def _render(tokenizer: Any, messages: Sequence[dict[str, Any]], tools: ToolSpecs | None, opened: bool) -> str:
    # `tools or None`: some templates (Llama's) write tool boilerplate for an empty list.
    return tokenizer.apply_chat_template(
        list(messages), tools=list(tools) if tools else None, tokenize=False, add_generation_prompt=opened
    )


def _template_calls(text: str, tokenizer: Any) -> tuple[list[Any], str]:
    message = tokenizer.parse_response(text, prefix="")
    if not isinstance(message, dict):
        return [], text
    content = message.get("content")
    return list(message.get("tool_calls") or []), content if isinstance(content, str) else ""


def _text_calls(text: str) -> tuple[list[Any], str]:
    """Raw calls (the JSON text of each, or an error) and the reply's other text."""
    bodies = _HERMES_RE.findall(text)
    if bodies:
        return bodies, _HERMES_RE.sub("", text)
    body = text.strip().removeprefix("<|python_tag|>").strip()
    if body.startswith("{"):
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            obj = None
        if obj is None and re.match(r'\{\s*"name"\s*:', body):
            return [body], ""  # a Llama-style call cut short or mistyped: an attempt, not an answer
        if isinstance(obj, dict) and "name" in obj and ({"parameters", "arguments"} & set(obj)):
            return [obj], ""
    return [], text


def _call(raw: Any) -> tuple[ToolCall | None, str | None]:
    """A raw call (JSON text, a parsed object or an OpenAI `tool_calls` entry) as a `ToolCall`, or
    the reason it is not one."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as err:
            return None, f"invalid JSON: {err}"
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
        raw = raw["function"]
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        return None, 'a call must be an object with a "name" string'
    args = raw.get("arguments", raw.get("parameters", {}))
    if isinstance(args, str):  # OpenAI's wire form sends arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError) as err:
            return None, f"invalid JSON arguments: {err}"
    if not isinstance(args, dict):
        return None, '"arguments" must be an object'
    return ToolCall(raw["name"], args), None
