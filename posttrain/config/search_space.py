"""The hyperparameter search space every tuner shares: seed 000's ranges, configurable.

Agents, random search and Optuna all propose through this one object, so a value that reaches
`train_and_eval` has always passed `SearchSpace.clamp`: numbers are clamped into range,
categorical values snap to the nearest allowed one, and anything unusable (NaN, inf, a string
that is not a number, a bool) becomes the default.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HPARAM_NAMES: tuple[str, ...] = (
    "lr",
    "batch_size",
    "epochs",
    "warmup_ratio",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
)


def as_number(value: Any) -> float | None:
    """A finite float from an int, float or numeric string; None for anything else (bools included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class FloatRange(BaseModel):
    """A continuous hyperparameter in [low, high]; `log` samples and steps on a log scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(description="Smallest allowed value.")
    high: float = Field(description="Largest allowed value.")
    default: float = Field(description="Value used when a proposal omits this key or gives garbage.")
    log: bool = Field(default=False, description="Sample log-uniformly (needs low > 0).")

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if not all(math.isfinite(v) for v in (self.low, self.high, self.default)):
            raise ValueError("low, high and default must be finite")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")
        return self

    def clamp(self, value: Any) -> float:
        number = as_number(value)
        return self.default if number is None else min(max(number, self.low), self.high)

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


class Choice(BaseModel):
    """A categorical integer hyperparameter; out-of-set values snap to the nearest (ties go lower)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: list[int] = Field(description="Allowed values, kept sorted.")
    default: int = Field(description="Value used when a proposal omits this key or gives garbage.")

    @field_validator("values")
    @classmethod
    def _sorted(cls, values: list[int]) -> list[int]:
        if not values:
            raise ValueError("values must not be empty")
        return sorted(set(values))

    @model_validator(mode="after")
    def _check(self) -> Choice:
        if self.default not in self.values:
            raise ValueError(f"default {self.default} is not one of {self.values}")
        return self

    def clamp(self, value: Any) -> int:
        number = as_number(value)
        if number is None:
            return self.default
        return min(self.values, key=lambda v: (abs(v - number), v))

    def step(self, value: Any, steps: int) -> int:
        """The value `steps` places up (or down, if negative) from `value`, stopping at the ends."""
        index = self.values.index(self.clamp(value)) + steps
        return self.values[min(max(index, 0), len(self.values) - 1)]

    def sample(self, rng: random.Random) -> int:
        return rng.choice(self.values)


class SearchSpace(BaseModel):
    """Seed 000's search space. Every field can be overridden from YAML, e.g.
    `search_space: {lr: {low: 1e-5, high: 1e-3, log: true, default: 2e-4}}`."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _keep_unset_parts(cls, data: Any) -> Any:
        """A partial entry (`--set search_space.lr.high=1e-3`) keeps the other parts of the default
        range; without this pydantic would demand low, high and default all over again."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is not None and isinstance(value, Mapping) and isinstance(field.default, BaseModel):
                out[name] = {**field.default.model_dump(), **value}
        return out

    lr: FloatRange = Field(
        default=FloatRange(low=1e-5, high=5e-4, log=True, default=2e-4), description="Learning rate."
    )
    batch_size: Choice = Field(
        default=Choice(values=[1, 2, 4, 8], default=4), description="Per-device train batch size."
    )
    epochs: Choice = Field(default=Choice(values=[1, 2], default=1), description="Training epochs.")
    warmup_ratio: FloatRange = Field(
        default=FloatRange(low=0.0, high=0.2, default=0.05), description="Share of steps spent warming up."
    )
    lora_r: Choice = Field(default=Choice(values=[8, 16, 32], default=16), description="LoRA rank.")
    lora_alpha: Choice = Field(default=Choice(values=[16, 32, 64], default=32), description="LoRA alpha.")
    lora_dropout: FloatRange = Field(
        default=FloatRange(low=0.0, high=0.2, default=0.05), description="LoRA dropout."
    )

    def param(self, name: str) -> FloatRange | Choice:
        if name not in HPARAM_NAMES:
            raise KeyError(f"unknown hyperparameter {name!r} (known: {', '.join(HPARAM_NAMES)})")
        return getattr(self, name)

    def defaults(self) -> dict[str, float | int]:
        return {name: self.param(name).default for name in HPARAM_NAMES}

    def clamp(self, hparams: Mapping[str, Any] | None) -> dict[str, float | int]:
        """All seven hyperparameters, in range. Missing or unusable values take the default;
        keys outside the space (e.g. `trial_id`) are dropped, so add them after clamping."""
        hparams = hparams if isinstance(hparams, Mapping) else {}
        return {name: self.param(name).clamp(hparams.get(name)) for name in HPARAM_NAMES}

    def contains(self, hparams: Mapping[str, Any]) -> bool:
        """True when every hyperparameter is present and already inside the space."""
        return all(name in hparams for name in HPARAM_NAMES) and self.clamp(hparams) == {
            name: hparams[name] for name in HPARAM_NAMES
        }

    def sample_random(self, rng: random.Random | int) -> dict[str, float | int]:
        """One uniform draw (log-uniform for log ranges); an int seeds a fresh `random.Random`."""
        rng = random.Random(rng) if isinstance(rng, int) else rng
        return {name: self.param(name).sample(rng) for name in HPARAM_NAMES}

    def suggest(self, trial: Any) -> dict[str, float | int]:
        """Ask an Optuna trial for every hyperparameter (`suggest_float(log=...)` / `suggest_categorical`)."""
        out: dict[str, float | int] = {}
        for name in HPARAM_NAMES:
            p = self.param(name)
            if isinstance(p, FloatRange):
                out[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
            else:
                out[name] = trial.suggest_categorical(name, list(p.values))
        return out

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions for `study.ask(fixed_distributions=...)` and `enqueue_trial`."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        out: dict[str, Any] = {}
        for name in HPARAM_NAMES:
            p = self.param(name)
            if isinstance(p, FloatRange):
                out[name] = FloatDistribution(p.low, p.high, log=p.log)
            else:
                out[name] = CategoricalDistribution(list(p.values))
        return out
