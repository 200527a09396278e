"""The rules backend: deterministic, offline, and the answer every LLM backend falls back to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from posttrain.agents.backends.base import AgentLog, episode_of
from posttrain.agents.roles import rules_answer


class RulesBackend:
    """Deterministic policies from `roles`; the offline default and every LLM's fallback."""

    name = "rules"
    max_text_chars = 400

    def __init__(self, log: AgentLog | None = None) -> None:
        self.log = log or AgentLog()

    def complete_json(
        self,
        role: str,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        context: Mapping[str, Any] | None = None,
    ) -> BaseModel:
        reply = rules_answer(role, context or {})
        self.log.record(role, self.name, {"context": context}, {"parsed": reply}, episode_of(context))
        return reply
