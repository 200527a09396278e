"""The align-task contract: what a task gives `posttrain align` at each step of its recipe.

The recipe (pipelines/align.py) is the same for every task; a task only answers its questions:

1. data       `training_data`: SFT conversations (train and validation) and synthetic
              preference pairs; `rollout_prompts`: held-in prompts; `eval_sets`: held-out sets
2. rollouts   `rollouts`: run the ReAct loop on held-in prompts with a policy's `generate` and
              reward every trajectory; `trajectory_stats`: what the stage reports about them
3. eval       `evaluate`: figures (n and bootstrap 95% CI each) and per-example records of one
              model on the held-out sets; `references`: baselines beside the models
4. report     `headline`, `split_titles` and `plot_metrics`: which number is the run's accuracy
              and how the report layer titles and plots the table

Implementations: posttrain.tasks.tool_use.align and posttrain.tasks.meetings.align, by name in
posttrain.tasks.align. Tasks take a `generate` callable, never a model, so none loads one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from posttrain.tasks.metrics import Figure
from posttrain.toolcall import Generate, Tool
from posttrain.toolcall.relevance import RelevanceExample

Conversation = list[dict[str, str]]


@dataclass
class TrainingData:
    """Everything training needs from a task; built from seeds alone, before any model loads.

    `train_outcomes` are the training labels a majority baseline is drawn from (empty where the
    task has none).
    """

    system: str
    sft_train: list[Conversation]
    sft_val: list[Conversation]
    synthetic_pairs: list[dict[str, Any]]
    train_outcomes: list[int] = field(default_factory=list)


class AlignTask(Protocol):
    """A task `posttrain align` (and `posttrain eval`) can run; see the module docstring.

    A rollout prompt is `{"id", "prompt"}` plus whatever the task's reward needs; a trace is the
    JSON of one scored trajectory with at least `prompt_id`, `policy`, `prompt`, `messages`,
    `steps`, `status`, `final_answer`, `correct`, `num_tool_calls` and `reward: {"total"}`.
    """

    name: str
    headline: tuple[str, str]
    """(split, metric) of the held-out figure a run's summary reports as its `accuracy`."""
    split_titles: dict[str, str]
    """Title of each held-out split's table in the report."""
    plot_metrics: tuple[str, ...]
    """The figures the report's bar chart compares across models."""

    def derived_seeds(self, data_seed: int) -> dict[str, int]:
        """Seeds beyond `data.seed` the training data draws from, by the name an error shows."""
        ...

    def training_data(
        self,
        *,
        rows: int,
        demos: int,
        val_rows: int,
        seed: int,
        compact: bool,
        synthetic_pairs: int,
        min_margin: float,
        pool_rows: int = 0,
        user_tools: Sequence[Tool] = (),
        user_rows: int = 0,
    ) -> TrainingData:
        """SFT conversations (at most `val_rows`, and a fifth, held out for validation) and up to
        `synthetic_pairs` synthetic pairs whose rewards differ by at least `min_margin`;
        `pool_rows` requests of the function pool and `user_rows` requests for `user_tools` where
        the task calls tools (tool_use)."""
        ...

    def rollout_prompts(self, n: int, seed: int, compact: bool) -> list[dict[str, Any]]:
        """`n` held-in prompts from `seed` (never the training or evaluation seed)."""
        ...

    def rollouts(
        self, prompts: Sequence[dict[str, Any]], generate: Generate, max_steps: int, policy: str
    ) -> list[dict[str, Any]]:
        """One scored trajectory (a trace) per prompt, in order, labelled `policy`."""
        ...

    def trajectory_stats(self, traces: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """What the rollout stage reports about its traces (counts, figures as dicts)."""
        ...

    def eval_size(self, episodes: int, scenarios: int, items: int = 0) -> Any:
        """Which of align's `evaluation.episodes` / `.scenarios` / `.items` sizes this task's sets."""
        ...

    def eval_sets(self, seed: int, size: Any, compact: bool) -> dict[str, Any]:
        """Held-out sets by split name, from `seed`; `size` is what `eval_size` gave, or one
        number for every set."""
        ...

    def evaluate(
        self, generate: Generate, sets: dict[str, Any], max_steps: int, compact: bool
    ) -> tuple[dict[str, dict[str, Figure]], dict[str, list[dict[str, Any]]]]:
        """Figures and per-example records of one model, by split."""
        ...

    gate_metrics: tuple[str, ...]
    """The figures whose sum on `gate_sets` decides SFT or DPO (align's `dpo.gate`)."""

    def gate_sets(self, seed: int, size: int) -> dict[str, Any]:
        """Validation sets for the DPO gate, `size` items each, disjoint from the held-out sets
        the final figures come from (empty: the task has no gate)."""
        ...

    def references(self, train_outcomes: Sequence[int], sets: dict[str, Any]) -> dict[str, Figure]:
        """Baselines the report shows beside the models (none for some tasks)."""
        ...


@runtime_checkable
class TrainsGateScorer(Protocol):
    """An align task whose relevance gate a scorer trained by the run can read
    (`evaluation.relevance_gate_scorer: trained`; tool_use)."""

    def relevance_examples(self, rows: int, seed: int) -> list[RelevanceExample]:
        """What the scorer is fitted on (`train.relevance`)."""
        ...
