"""The SEAL domain contract: what a context is, how a self-edit becomes an update, how it is scored.

A domain answers four questions for the SEAL pipeline (`posttrain seal`):

- `create_self_edit_prompt(context)`: the chat prompt the generator answers with a self-edit;
- `self_edit_update(context, self_edit)`: the training rows (and hyperparameter overrides)
  of the inner LoRA update that applies it, or None when the self-edit is unusable;
- `evaluate(model, tokenizer, task)`: a `Score` of the (adapted) model on the task;
- `compute_reward(performance, task)`: the reward of the change, through the domain's
  `BaseRewardModel` (posttrain.tasks.seal.rewards).

Built-in domains (posttrain.tasks.seal.domains) and user domains named 'package.module:Class'
subclass `BaseDomain`; docs/seal.md has a worked custom domain.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from posttrain.errors import ConfigError
from posttrain.tasks.seal.rewards import BaseRewardModel, BinaryReward


class DataLoader(Protocol):
    """A custom data source: `load_data()` returns the domain's items (contexts with their tasks)."""

    def load_data(self) -> list[Any]: ...


@dataclass
class InnerUpdate:
    """One inner update: SFT rows plus `SFTArgs` fields the self-edit sets (e.g. learning_rate)."""

    rows: list[dict]
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Score:
    """A model's score on one task: `value` feeds rewards; `items` are per-item metrics for tables."""

    value: float
    items: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Performance:
    """Scores of the model before and after a self-edit's update (what rewards compare)."""

    before: float
    after: float


class BaseDomain(ABC):
    """Subclass this to run SEAL on a new kind of context; the docstring of each method is its contract.

    Class attributes shape the results table: `metrics` (per-item metric names, the first
    is the headline and carries the CI), `baseline_name` (the row of the model without any
    update), `count_names` (names of the context and item counts) and `pooled_update`
    (whether the continued-pretraining variant, every context's rows in one update, makes
    sense) and `upper_bounds` (reference rows that peek at the answer, listed last and labelled).
    """

    name: ClassVar[str] = "custom"
    metrics: ClassVar[tuple[str, ...]] = ("score",)
    baseline_name: ClassVar[str] = "base"
    count_names: ClassVar[tuple[str, str]] = ("n_contexts", "n_items")
    pooled_update: ClassVar[bool] = False
    upper_bounds: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, reward_model: BaseRewardModel | None = None, loader: DataLoader | None = None, n_eval: int = 2
    ) -> None:
        self.reward_model = reward_model or BinaryReward()
        self.loader = loader
        self.n_eval = n_eval

    def load_data(self, seed: int) -> list[Any]:
        """All items (training and held-out); the custom loader's when one is set."""
        if self.loader is not None:
            return list(self.loader.load_data())
        return self.default_data(seed)

    def default_data(self, seed: int) -> list[Any]:
        """The domain's own data when no loader is given."""
        raise ConfigError(f"domain {self.name!r} has no default data: pass a loader with load_data()")

    def context_id(self, context: Any) -> str:
        """A stable id of a context, for the store and the logs (default: its `id` attribute)."""
        return str(getattr(context, "id", context))

    @abstractmethod
    def create_self_edit_prompt(self, context: Any) -> list[dict]:
        """Chat messages asking the generator for a self-edit of `context`."""

    @abstractmethod
    def self_edit_update(self, context: Any, self_edit: str) -> InnerUpdate | None:
        """The inner update that applies `self_edit`; None when it cannot be used (reward 0)."""

    def canonical_self_edit(self, self_edit: str) -> str:
        """The text the M-step trains the generator on (default: the self-edit as sampled)."""
        return self_edit.strip()

    @abstractmethod
    def evaluate(self, model: Any, tokenizer: Any, task: Any) -> Score:
        """Score `model` (base or adapted, used as is) on `task`; higher is better."""

    def compute_reward(self, performance: Performance, task: Any) -> float:
        """The reward of a self-edit from its performance before and after (default: the reward model)."""
        return self.reward_model.compute_reward(performance.before, performance.after, task)

    def reference_updates(self, context: Any) -> dict[str, list[InnerUpdate]]:
        """Extra rows of the results table: name -> candidate updates (the best candidate counts)."""
        return {}
