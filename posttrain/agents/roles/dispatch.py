"""Role name → the role's reply model, rules policy, wire schema and prompt.

Backends only know role names; this registry is the one place a name meets its module, so a new
role is one module plus one `RoleSpec` line here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from posttrain.agents.history import jsonable
from posttrain.agents.roles import judge, qa, reward_penalty, seal_expert, tuner
from posttrain.agents.roles.base import Reply

Role = Literal["tuner", "judge", "reward_penalty", "seal_expert", "qa_generator", "qa_evaluator"]


@dataclass(frozen=True)
class RoleSpec:
    """One role: its reply model, its rules policy (fed a role context), its wire schema (fed the
    context and the bounded string schema) and its system prompt."""

    reply: type[Reply]
    rules: Callable[[Mapping[str, Any]], BaseModel]
    schema: Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]]
    prompt: str


# Prompts adapted from seed 000 §3 (compact: small models read these too).
ROLE_SPECS: dict[str, RoleSpec] = {
    "tuner": RoleSpec(tuner.TunerReply, tuner.answer, tuner.schema, tuner.SYSTEM_PROMPT),
    "judge": RoleSpec(judge.JudgeReply, judge.answer, judge.schema, judge.SYSTEM_PROMPT),
    "reward_penalty": RoleSpec(
        reward_penalty.RewardPenaltyReply,
        reward_penalty.answer,
        reward_penalty.schema,
        reward_penalty.SYSTEM_PROMPT,
    ),
    "seal_expert": RoleSpec(
        seal_expert.SealExpertReply, seal_expert.answer, seal_expert.schema, seal_expert.SYSTEM_PROMPT
    ),
    "qa_generator": RoleSpec(qa.QAGenReply, qa.generator_answer, qa.generator_schema, qa.GENERATOR_PROMPT),
    "qa_evaluator": RoleSpec(qa.QAEvalReply, qa.evaluator_answer, qa.evaluator_schema, qa.EVALUATOR_PROMPT),
}
ROLES: tuple[str, ...] = tuple(ROLE_SPECS)
REPLY_MODELS: dict[str, type[Reply]] = {role: spec.reply for role, spec in ROLE_SPECS.items()}
SYSTEM_PROMPTS: dict[str, str] = {role: spec.prompt for role, spec in ROLE_SPECS.items()}


def role_spec(role: str) -> RoleSpec:
    """The registry entry of `role`; an unknown name is a ValueError that lists the known ones."""
    if role not in ROLE_SPECS:
        raise ValueError(f"unknown agent role {role!r} (known: {', '.join(ROLES)})")
    return ROLE_SPECS[role]


def rules_answer(role: str, context: Mapping[str, Any]) -> BaseModel:
    """The rules policy of `role`, fed from the JSON context `AgentTeam` builds for it."""
    return role_spec(role).rules(context)


def reply_schema(role: str, context: Mapping[str, Any] | None = None, max_text: int = 400) -> dict[str, Any]:
    """The wire JSON schema of `role`'s reply: the seed's keys, bounded strings and arrays (so
    constrained decoding always terminates), the space's ranges. Used in prompts, as OpenAI's
    `response_format` and as the llguidance grammar."""
    return role_spec(role).schema(context or {}, {"type": "string", "maxLength": max_text})


def build_messages(role: str, context: Mapping[str, Any], max_text: int = 400) -> list[dict[str, str]]:
    """System + user chat messages for an LLM backend: the role's prompt, the reply schema, and
    the role's context as JSON (internal keys such as the RNG seed left out)."""
    spec = role_spec(role)
    schema = json.dumps(reply_schema(role, context, max_text), separators=(",", ":"))
    system = f"{spec.prompt}\nReply with one JSON object only, matching this JSON schema:\n{schema}"
    shown = {
        k: v for k, v in context.items() if k not in ("seed", "space") or role == "tuner" and k == "space"
    }
    user = json.dumps(jsonable(shown, digits=4), separators=(",", ":"), default=str)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
