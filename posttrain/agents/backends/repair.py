"""From an LLM's text to a validated reply: lenient JSON extraction, one repair request, then
the rules policy. Nothing a model writes raises out of `complete_with_repair`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from posttrain.agents.backends.base import AgentLog, Generate, episode_of
from posttrain.agents.roles import build_messages, reply_schema, rules_answer

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The first JSON object in `text`: the whole text, a ```json fence, or the first `{...}`
    that decodes (prose around it is ignored). Raises ValueError when there is none."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the reply is empty")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        try:
            return json.loads(candidate.strip())
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise ValueError("no complete JSON object found in the reply (truncated or not JSON)")


def parse_reply(text: str, schema: type[BaseModel], context: Mapping[str, Any] | None = None) -> BaseModel:
    """Extract and validate; raises ValueError (pydantic's ValidationError is one) on failure."""
    return schema.model_validate(extract_json(text), context=dict(context or {}))


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()[:5]]
        return "; ".join(parts)[:500]
    return f"{exc}"[:500]


REPAIR_PROMPT = (
    "Your reply could not be used: {error}. Reply again with only the corrected JSON object, "
    "matching the schema, with every required key."
)


def complete_with_repair(
    backend: str,
    generate: Generate,
    role: str,
    messages: list[dict[str, str]],
    schema: type[BaseModel],
    context: Mapping[str, Any] | None,
    log: AgentLog | None,
    max_text: int = 400,
) -> BaseModel:
    """Ask, validate, repair once, else answer with the rules policy (logged as a fallback).

    `generate(role, messages, json_schema) -> text` does the model call; empty `messages` are
    built from the context with `build_messages`. A failure inside it
    (connection refused, timeout after the client's own retries, out of memory) is not worth
    a repair request: the rules answer at once.
    """
    log = log or AgentLog()
    json_schema = reply_schema(role, context, max_text)
    episode = episode_of(context)
    attempt_messages = list(messages) or build_messages(role, context or {}, max_text)
    error = "no attempt"
    for attempt in (1, 2):
        request = {"messages": attempt_messages, "attempt": attempt}
        try:
            text = generate(role, attempt_messages, json_schema)
        except Exception as exc:  # any transport/model failure ends in the logged rules fallback
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.record(role, backend, request, None, episode, error=error)
            break
        try:
            reply = parse_reply(text, schema, context)
        except ValueError as exc:
            error = _short_error(exc)
            log.record(role, backend, request, {"raw": text}, episode, error=error)
            attempt_messages = [
                *attempt_messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": REPAIR_PROMPT.format(error=error)},
            ]
            continue
        log.record(role, backend, request, {"raw": text, "parsed": reply}, episode)
        return reply
    reply = rules_answer(role, context or {})
    log.record(role, backend, {"context": context}, {"parsed": reply}, episode, fallback=True, error=error)
    return reply
