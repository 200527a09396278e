"""The `local` backend: a Hugging Face model whose decoding llguidance holds to the role's JSON schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from posttrain.agents.backends.base import AgentLog
from posttrain.agents.backends.repair import complete_with_repair
from posttrain.constrained import constrained_generate, grammar_tokenizer


class LocalBackend:
    """A local Hugging Face causal LM whose every token is constrained by llguidance to the
    role's JSON schema, so even a weak (or random) model writes schema-valid JSON; strings and
    arrays are bounded in the schema, so `max_new_tokens` is only a safety net.

    Greedy by default (`temperature=0`), deterministic under `seed` otherwise. Building the
    llguidance tokenizer costs ~0.5 s once per backend.
    """

    name = "local"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
        max_text_chars: int = 200,
        seed: int = 0,
        log: AgentLog | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.lltok = grammar_tokenizer(tokenizer)  # raises PosttrainError without llguidance
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_text_chars = max_text_chars
        self.seed = seed
        self.log = log or AgentLog()

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> LocalBackend:
        """Load `spec` (e.g. "smollm2-135m", a hub id or a directory) and wrap it."""
        from posttrain.models import load_model

        model, tokenizer = load_model(spec)
        return cls(model, tokenizer, **kwargs)

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
        return constrained_generate(
            self.model,
            self.tokenizer,
            messages,
            json_schema,
            self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
            lltok=self.lltok,
        )
