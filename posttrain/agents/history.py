"""What the agent roles know about finished episodes, and how it reaches them as JSON.

History: a list of `EpisodeSummary` (or dicts with its fields), one per finished episode. Every
role reads it through `as_history`, so a store row, a seed-style dict and a summary all work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DIVERGED_IMPROVEMENT = -1.0  # a NaN/inf eval loss counts as losing one nat (JSON and the formula stay finite)


class EpisodeSummary(BaseModel):
    """What the agents know about one finished episode (TRAIN, then the SEAL stage on top).

    `seal_delta` is `seal_eval_loss - eval_loss of the SEAL base episode` (the best TRAIN so far,
    seed 000 §SEAL Stage), so a negative delta means SEAL helped. `qa_score` is the mean QA
    score in [0, 1]. Non-finite losses are kept (they mean the trial diverged). A nested
    `metrics` dict (the seed's / the store's shape) is read for `eval_loss` and `perplexity`.
    """

    model_config = ConfigDict(extra="ignore")

    episode: int
    hparams: dict[str, Any] = Field(default_factory=dict)
    eval_loss: float | None = None
    perplexity: float | None = None
    seal_eval_loss: float | None = None
    seal_base_episode: int | None = None
    seal_delta: float | None = None
    seal_epochs: int | None = None
    seal_mode: str | None = None
    qa_score: float | None = None
    decisions: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _lift_metrics(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("metrics"), Mapping):
            data = {**data}
            for key in ("eval_loss", "perplexity"):
                data.setdefault(key, data["metrics"].get(key))
        return data

    @property
    def loss(self) -> float | None:
        """The TRAIN eval loss when finite, else None."""
        return finite(self.eval_loss)


def as_history(history: Sequence[EpisodeSummary | Mapping[str, Any]] | None) -> list[EpisodeSummary]:
    """Coerce dicts to `EpisodeSummary`, ordered by episode."""
    items = [h if isinstance(h, EpisodeSummary) else EpisodeSummary.model_validate(h) for h in history or []]
    return sorted(items, key=lambda h: h.episode)


def history_context(history: Sequence[EpisodeSummary | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The history as JSON-able dicts for a role context: full precision, non-finite → null
    (a null eval_loss reads back as a diverged trial)."""
    return [jsonable(h.model_dump(exclude_none=True)) for h in as_history(history)]


def finite(value: Any) -> float | None:
    """`value` when it is a finite number, else None (NaN/inf mean a diverged trial)."""
    return value if isinstance(value, float | int) and math.isfinite(value) else None


def jsonable(value: Any, digits: int | None = None) -> Any:
    """`value` with non-finite floats as None (strict JSON), floats optionally rounded to
    `digits` significant digits, pydantic models dumped by alias, tuples as lists."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{digits}g}") if digits else value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, digits) for v in value]
    return value


def best_episode(history: list[EpisodeSummary]) -> EpisodeSummary | None:
    """The episode with the lowest finite eval loss (the earlier one on a tie); None if all diverged."""
    finite_ = [h for h in history if h.loss is not None]
    return min(finite_, key=lambda h: (h.loss, h.episode)) if finite_ else None


def seal_improvement(episode: EpisodeSummary, history: list[EpisodeSummary]) -> float:
    """How much `episode`'s SEAL stage lowered the eval loss of its base TRAIN (0 when SEAL did not
    run or its base is unknown; DIVERGED_IMPROVEMENT when SEAL diverged)."""
    if episode.seal_delta is not None:
        return -episode.seal_delta if math.isfinite(episode.seal_delta) else DIVERGED_IMPROVEMENT
    if episode.seal_eval_loss is None:
        return 0.0
    if not math.isfinite(episode.seal_eval_loss):
        return DIVERGED_IMPROVEMENT
    base_index = episode.seal_base_episode if episode.seal_base_episode is not None else episode.episode
    base = next((e.loss for e in history if e.episode == base_index), None)
    return base - episode.seal_eval_loss if base is not None else 0.0
