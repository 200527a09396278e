"""The `openai` backend: any OpenAI-compatible chat endpoint (hosted, vLLM, Ollama, `posttrain serve`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from posttrain.agents.backends.base import AgentLog
from posttrain.agents.backends.repair import complete_with_repair
from posttrain.errors import ConfigError


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint through the official `openai` client.

    `base_url`, `model` and `api_key` default to $OPENAI_BASE_URL, $POSTTRAIN_AGENT_MODEL
    (else gpt-4o-mini) and $OPENAI_API_KEY; a base URL alone is enough for keyless local servers
    (vLLM, Ollama, llama.cpp, `posttrain serve`). The client retries connection errors, 408,
    409, 429 and 5xx `max_retries` times with exponential backoff (0.5 s doubling, at most 8 s,
    honouring Retry-After). The reply format starts as `json_schema`; an endpoint that answers
    400/422 to it is asked again with `json_object`, then with no response_format (the prompt
    still carries the schema), and the backend remembers the level that worked.
    """

    name = "openai"
    FORMATS = ("json_schema", "json_object", "none")

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        temperature: float | None = 0.2,
        max_tokens: int | None = 1024,
        strict: bool = True,
        max_text_chars: int = 400,
        log: AgentLog | None = None,
    ) -> None:
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or ("no-key" if base_url else None)
        if api_key is None:
            raise ConfigError(
                "the openai agent backend needs an API key or an endpoint: set OPENAI_API_KEY, or "
                "OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1 for `posttrain serve`, vLLM or Ollama)"
            )
        self.model = model or os.environ.get("POSTTRAIN_AGENT_MODEL") or "gpt-4o-mini"
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.strict = strict
        self.max_text_chars = max_text_chars
        self.format = "json_schema"
        self.log = log or AgentLog()

    def complete_json(
        self,
        role: str,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        context: Mapping[str, Any] | None = None,
    ) -> BaseModel:
        return complete_with_repair(
            self.name, self._generate, role, messages, schema, context, self.log, self.max_text_chars
        )

    def _generate(self, role: str, messages: list[dict[str, str]], json_schema: dict[str, Any]) -> str:
        import openai

        while True:
            kwargs: dict[str, Any] = {}
            if self.temperature is not None:
                kwargs["temperature"] = self.temperature
            if self.max_tokens is not None:
                kwargs["max_tokens"] = self.max_tokens
            if self.format == "json_schema":
                spec = {"name": role, "schema": json_schema, "strict": self.strict}
                kwargs["response_format"] = {"type": "json_schema", "json_schema": spec}
            elif self.format == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
            try:
                response = self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                if self.format == "none":
                    raise
                self.format = self.FORMATS[self.FORMATS.index(self.format) + 1]
                continue
            if not response.choices:
                raise ValueError("the endpoint returned no choices")
            return response.choices[0].message.content or ""
