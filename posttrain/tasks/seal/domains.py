"""The built-in SEAL domains (knowledge incorporation, few-shot ARC) and lookup by name.

In both built-in domains one item is both the context and the task: a `Passage` carries its
questions, an `ArcTask` its test pair. Items come from `load_data(seed)`, which a custom
loader (any object with `load_data() -> list`) can replace.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from posttrain.errors import ConfigError
from posttrain.inference import generate_batch
from posttrain.tasks import arc, knowledge
from posttrain.tasks.seal.base import BaseDomain, DataLoader, InnerUpdate, Score
from posttrain.tasks.seal.rewards import BaseRewardModel, SuccessReward

# ---------------------------------------------------------------- helpers


def import_object(spec: str, what: str) -> Any:
    """`package.module:Name` -> the object, with a ConfigError naming the spec when it fails."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {spec!r}: expected 'package.module:Name'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{what} {spec!r}: cannot import it ({exc})") from None


def _loader(spec: str | None) -> DataLoader | None:
    if spec is None:
        return None
    loader = import_object(spec, "data_config.loader")()
    if not callable(getattr(loader, "load_data", None)):
        raise ConfigError(f"data_config.loader {spec!r}: the object has no load_data() method")
    return loader


def _validate(model: type[BaseModel], values: dict[str, Any], domain: str) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise ConfigError(
                f"data_config.{key}: unknown key for domain {domain} (known: {known})"
            ) from None
        raise ConfigError(f"data_config.{key}: {first['msg']} (got {first.get('input')!r})") from None


def _predict(model: Any, tokenizer: Any, max_new_tokens: int) -> Callable[[list[list[dict]]], list[str]]:
    def predict(prompts: list[list[dict]]) -> list[str]:
        return generate_batch(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=len(prompts)
        )

    return predict


# ---------------------------------------------------------------- knowledge incorporation


class KnowledgeData(BaseModel):
    """data_config of the knowledge domain."""

    model_config = ConfigDict(extra="forbid")

    dataset_name: str = Field(
        "fictional", description="fictional (offline generator), squad (needs path), or a HF dataset id."
    )
    path: str | None = Field(None, description="A SQuAD v1/v2 JSON file; wins over dataset_name.")
    split: str = Field("validation", description="Split of a HF dataset.")
    max_samples: int = Field(40, ge=2, description="Passages used in all (training + held-out).")
    n_eval: int = Field(8, ge=1, description="Held-out passages for the results table.")
    prompt_type: knowledge.SelfEditKind = Field(
        "implications", description="Self-edit kind: implications, questions_answers, rewrite, facts."
    )
    answer_tokens: int = Field(24, ge=1, description="Tokens generated per no-context answer.")
    loader: str | None = Field(None, description="Custom loader 'package.module:Class' with load_data().")


class KnowledgeDomain(BaseDomain):
    """Knowledge incorporation: self-edits are passage implications; the score is no-context QA F1.

    Each line of a self-edit is a training sequence and the passage is one more (the paper's
    setup); questions are then asked without the passage.
    """

    name = "knowledge_incorporation"
    metrics = ("f1", "em")
    baseline_name = "base"
    count_names = ("n_passages", "n_questions")
    pooled_update = True

    def __init__(self, reward_model: BaseRewardModel | None = None, **data_config: Any) -> None:
        cfg = _validate(KnowledgeData, data_config, self.name)
        super().__init__(reward_model, _loader(cfg.loader), cfg.n_eval)
        self.cfg: KnowledgeData = cfg

    def default_data(self, seed: int) -> list[knowledge.Passage]:
        cfg = self.cfg
        if cfg.path:
            passages = knowledge.read_squad(cfg.path)
        elif cfg.dataset_name == "fictional":
            passages = knowledge.generate_fictional_passages(cfg.max_samples, seed)
        elif cfg.dataset_name == "squad":
            raise ConfigError("data_config.dataset_name=squad needs data_config.path (a SQuAD JSON file)")
        else:
            passages = knowledge.load_hf_squad(cfg.dataset_name, cfg.split)
        return passages[: cfg.max_samples]

    def create_self_edit_prompt(self, context: knowledge.Passage) -> list[dict]:
        return knowledge.self_edit_prompt(context, self.cfg.prompt_type)

    def self_edit_update(self, context: knowledge.Passage, self_edit: str) -> InnerUpdate:
        seqs = knowledge.self_edit_to_sequences(context, self_edit, self.cfg.prompt_type)
        return InnerUpdate(knowledge.sequences_to_rows(seqs))

    def evaluate(self, model: Any, tokenizer: Any, task: knowledge.Passage) -> Score:
        graded = knowledge.evaluate(_predict(model, tokenizer, self.cfg.answer_tokens), [task])
        rows = graded["per_question"]
        return Score(graded["f1"], {"f1": [r["f1"] for r in rows], "em": [r["em"] for r in rows]})

    def reference_updates(self, context: knowledge.Passage) -> dict[str, list[InnerUpdate]]:
        return {"passage_only": [InnerUpdate(knowledge.sequences_to_rows([knowledge.passage_text(context)]))]}


# ---------------------------------------------------------------- few-shot ARC


def default_oracle_configs() -> list[dict[str, Any]]:
    """A small grid of self-edit configs the oracle searches (8 configs)."""
    return [
        {"basic": basic, "strategy": strategy, "learning_rate": lr, "num_train_epochs": 3}
        for basic in (False, True)
        for strategy in ("output_tokens", "all_tokens")
        for lr in (1e-4, 1e-3)
    ]


class ArcData(BaseModel):
    """data_config of the ARC domain."""

    model_config = ConfigDict(extra="forbid")

    dataset_name: str = Field("mini_arc", description="mini_arc (offline generator) or arc (needs path).")
    path: str | None = Field(None, description="An ARC JSON file or directory of task files.")
    solutions: str | None = Field(None, description="Test outputs kept in a separate JSON file.")
    max_samples: int = Field(24, ge=2, description="Tasks used in all (training + held-out).")
    n_eval: int = Field(8, ge=1, description="Held-out tasks for the results table.")
    size_range: tuple[int, int] = Field((2, 4), description="Grid side range of generated tasks.")
    max_rows: int | None = Field(32, ge=1, description="Cap on test-time-training rows per update.")
    oracle_configs: list[dict[str, Any]] | None = Field(
        None, description="Configs the oracle row searches; None = an 8-config grid."
    )
    loader: str | None = Field(None, description="Custom loader 'package.module:Class' with load_data().")


class ArcDomain(BaseDomain):
    """Few-shot ARC: a self-edit is an `ArcSelfEdit` JSON config driving test-time training.

    The score is 1.0 when the adapted model writes the exact test output grid; the default
    reward is that success (binary), whatever the in-context baseline did.
    """

    name = "few_shot_learning"
    metrics = ("accuracy",)
    baseline_name = "icl"
    count_names = ("n_tasks", "n_tests")
    upper_bounds = ("oracle",)

    def __init__(self, reward_model: BaseRewardModel | None = None, **data_config: Any) -> None:
        cfg = _validate(ArcData, data_config, self.name)
        super().__init__(reward_model or SuccessReward(1.0), _loader(cfg.loader), cfg.n_eval)
        self.cfg: ArcData = cfg

    def default_data(self, seed: int) -> list[arc.ArcTask]:
        cfg = self.cfg
        if cfg.path:
            return arc.read_arc(cfg.path, cfg.solutions)[: cfg.max_samples]
        if cfg.dataset_name != "mini_arc":
            raise ConfigError(f"data_config.dataset_name={cfg.dataset_name} needs data_config.path")
        return arc.generate_mini_arc(cfg.max_samples, seed, tuple(cfg.size_range))

    def create_self_edit_prompt(self, context: arc.ArcTask) -> list[dict]:
        return arc.self_edit_prompt(context)

    def _update(self, task: arc.ArcTask, edit: arc.ArcSelfEdit) -> InnerUpdate:
        rows = arc.training_rows(arc.augment_task(task, edit), edit.strategy, max_rows=self.cfg.max_rows)
        overrides = {"learning_rate": edit.learning_rate, "epochs": float(edit.num_train_epochs)}
        return InnerUpdate(rows, overrides)

    def self_edit_update(self, context: arc.ArcTask, self_edit: str) -> InnerUpdate | None:
        edit = arc.parse_self_edit(self_edit)
        return None if edit is None else self._update(context, edit)

    def canonical_self_edit(self, self_edit: str) -> str:
        edit = arc.parse_self_edit(self_edit)
        return edit.to_text() if edit is not None else self_edit.strip()

    def evaluate(self, model: Any, tokenizer: Any, task: arc.ArcTask) -> Score:
        # Room for the longest expected grid plus a little; the budget uses only the answer's size.
        longest = max(len(tokenizer(arc.grid_to_text(out))["input_ids"]) for _, out in task.test)
        graded = arc.evaluate(_predict(model, tokenizer, longest + 8), [task])
        return Score(graded["accuracy"], {"accuracy": [float(r["solved"]) for r in graded["per_task"]]})

    def reference_updates(self, context: arc.ArcTask) -> dict[str, list[InnerUpdate]]:
        configs = self.cfg.oracle_configs or default_oracle_configs()
        return {"oracle": [self._update(context, arc.ArcSelfEdit.model_validate(c)) for c in configs]}


# ---------------------------------------------------------------- registry

DOMAINS: dict[str, type[BaseDomain]] = {
    "knowledge_incorporation": KnowledgeDomain,
    "knowledge": KnowledgeDomain,
    "few_shot_learning": ArcDomain,
    "few_shot_arc": ArcDomain,
    "arc": ArcDomain,
}


def build_domain(name: str, data_config: dict[str, Any], reward_model: BaseRewardModel | None) -> BaseDomain:
    """A built-in domain by name, or a custom `package.module:Class` subclass of BaseDomain.

    A custom class is called as `Class(reward_model=..., **data_config)`.
    """
    cls = DOMAINS.get(name)
    if cls is None:
        if ":" not in name:
            raise ConfigError(
                f"unknown domain {name!r} (built in: {', '.join(DOMAINS)}; or 'package.module:Class')"
            )
        cls = import_object(name, "domain")
        if not (isinstance(cls, type) and issubclass(cls, BaseDomain)):
            raise ConfigError(f"domain {name!r} is not a subclass of posttrain.tasks.seal.BaseDomain")
    try:
        return cls(reward_model=reward_model, **data_config)
    except TypeError as exc:
        raise ConfigError(f"domain {name!r}: data_config does not fit its constructor ({exc})") from None


def split_items(items: Sequence[Any], n_eval: int, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, held_out): a seeded choice of `n_eval` held-out items; both keep input order."""
    if not 1 <= n_eval < len(items):
        raise ConfigError(f"data_config.n_eval must be in [1, {len(items) - 1}] for {len(items)} items")
    held = set(random.Random(seed).sample(range(len(items)), n_eval))
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]
