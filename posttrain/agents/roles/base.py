"""What every role's reply shares: lenient coercion of LLM output and the wire-schema pieces.

Replies keep the seed's JSON contract and *clamp* rather than reject (an out-of-range learning
rate becomes the nearest allowed one): a small model's near-miss is still a usable decision.
Validation context: `Reply.model_validate(obj, context=ctx)` reads `ctx["space"]` (a
`SearchSpace` dump) to clamp hyperparameters, `ctx["n"]` to cap QA items and `ctx["items"]`
to check the number of QA scores. The role contexts built by `AgentTeam` carry exactly these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator

from posttrain.config.search_space import HPARAM_NAMES, Choice, SearchSpace, as_number

MAX_TEXT = 2000  # characters kept from any free-text field; longer LLM prose is cut, not rejected
SEAL_EPOCHS = Choice(values=[1, 2], default=1)


def clip_text(value: Any) -> str:
    """Any JSON value as text (objects and arrays as JSON), cut to MAX_TEXT characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return value[:MAX_TEXT]


def as_bool(value: Any) -> bool:
    """A yes/no answer in any of the spellings LLMs use (true, 1, "yes", "continue", "stop" ...)."""
    if isinstance(value, bool):
        return value
    number = as_number(value)
    if number in (0.0, 1.0):
        return bool(number)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "continue", "y"):
            return True
        if word in ("false", "no", "stop", "n"):
            return False
    raise ValueError(f"expected true or false, got {value!r}")


Text = Annotated[str, BeforeValidator(clip_text)]
Flag = Annotated[bool, BeforeValidator(as_bool)]
SealEpochs = Annotated[int, BeforeValidator(SEAL_EPOCHS.clamp)]


class Reply(BaseModel):
    """Base of every role's reply: extra keys are ignored, a non-object is invalid."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _object(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return data


def context_space(context: Mapping[str, Any] | None) -> SearchSpace:
    """The search space a role context carries (a `SearchSpace` or its dump); the default space if none."""
    raw = (context or {}).get("space")
    return raw if isinstance(raw, SearchSpace) else SearchSpace.model_validate(raw or {})


def validation_space(info: ValidationInfo | None) -> SearchSpace:
    """The search space of a validation context, for clamping hyperparameters in a reply."""
    return context_space(info.context if info is not None else None)


def json_object(props: dict[str, Any]) -> dict[str, Any]:
    """A wire-schema object with every key required and nothing else allowed: what OpenAI's strict
    mode and llguidance need."""
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def hparams_schema(space: SearchSpace, nullable: bool = False) -> dict[str, Any]:
    """The hyperparameters as a wire-schema object bounded by `space` (nullable: each may be null)."""
    props: dict[str, Any] = {}
    for name in HPARAM_NAMES:
        p = space.param(name)
        if isinstance(p, Choice):
            props[name] = {"type": "integer", "enum": list(p.values)}
        else:
            props[name] = {"type": "number", "minimum": p.low, "maximum": p.high}
        if nullable:
            props[name] = {"anyOf": [props[name], {"type": "null"}]}
    return json_object(props)


def hparam_text(name: str, value: Any) -> str:
    """One hyperparameter value as the agents write it: lr and dropout/warmup compactly, ints as ints."""
    number = as_number(value)
    if number is None:
        return str(value)
    if name == "lr":  # 5e-4, 1.8e-4: the spelling of papers and configs
        mantissa, exponent = f"{number:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if number == int(number) and name not in ("warmup_ratio", "lora_dropout"):
        return str(int(number))
    return f"{number:.3g}"


def trend(old: Any, new: Any) -> str:
    """ "up", "down" or "same": how `new` compares with `old` (3 significant digits, like the tuner)."""
    a, b = as_number(old), as_number(new)
    if a is None or b is None or float(f"{a:.3g}") == float(f"{b:.3g}"):
        return "same"
    return "up" if b > a else "down"


def change_list(base: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """`new` against `base` in words, key by key: "lr 0.0002 -> 0.00018 (down), batch_size stays 8".

    Only keys of `new` appear, in the search space's order; a key whose value did not move says
    so, so a message never claims a change (a "larger batch") that the numbers do not show.
    """
    parts = []
    for name in (k for k in HPARAM_NAMES if k in new):
        old, value = base.get(name), new[name]
        way = trend(old, value)
        if old is None:
            parts.append(f"{name} {hparam_text(name, value)}")
        elif way == "same":
            parts.append(f"{name} stays {hparam_text(name, value)}")
        else:
            parts.append(f"{name} {hparam_text(name, old)} -> {hparam_text(name, value)} ({way})")
    return ", ".join(parts)
