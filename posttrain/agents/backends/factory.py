"""Backends by name, so a config's `agents.backend` string picks one."""

from __future__ import annotations

from typing import Any, Literal

from posttrain.agents.backends.base import Backend
from posttrain.agents.backends.local import LocalBackend
from posttrain.agents.backends.openai import OpenAIBackend
from posttrain.agents.backends.rules import RulesBackend
from posttrain.errors import ConfigError


def make_backend(kind: Literal["rules", "openai", "local"], **kwargs: Any) -> Backend:
    """Build a backend by name. `local` takes `model` + `tokenizer` objects, or `model` as a spec
    string to load. Every kind accepts `log=AgentLog(...)`."""
    if kind == "rules":
        return RulesBackend(log=kwargs.get("log"))
    if kind == "openai":
        return OpenAIBackend(**kwargs)
    if kind == "local":
        model = kwargs.pop("model", None)
        if isinstance(model, str):
            return LocalBackend.from_spec(model, **kwargs)
        if model is None or kwargs.get("tokenizer") is None:
            raise ConfigError(
                "the local agent backend needs model= (a spec or a loaded model) and tokenizer="
            )
        return LocalBackend(model, kwargs.pop("tokenizer"), **kwargs)
    raise ConfigError(f"unknown agent backend {kind!r} (choose rules, openai or local)")
