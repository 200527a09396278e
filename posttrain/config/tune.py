"""`posttrain tune` config (seed 000)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posttrain.config.search_space import SearchSpace
from posttrain.config.sections import (
    DataSplitSettings,
    ExecutorSettings,
    MaxSteps,
    ModelSettings,
    RunSettings,
    Strict,
)


class AgentSettings(Strict):
    tuner: Literal["agents", "random", "tpe", "cma", "hybrid", "centaur"] = Field(
        "agents",
        description="Who proposes each episode's hparams: the agent team, random, Optuna TPE or CMA-ES, "
        "hybrid (agents and TPE alternate) or centaur (CMA-ES proposes, the agents override a share).",
    )
    backend: Literal["rules", "openai", "local"] = Field(
        "rules",
        description="Agent backend: deterministic rules, an OpenAI-compatible endpoint, or a local model.",
    )
    agent_model: str | None = Field(
        None, description="openai: model name ($POSTTRAIN_AGENT_MODEL); local: a model spec for the agents."
    )
    base_url: str | None = Field(
        None, description="openai: endpoint ($OPENAI_BASE_URL), e.g. vLLM or Ollama."
    )
    timeout_s: float = Field(60.0, gt=0, description="openai: request timeout.")
    max_episodes: int = Field(4, ge=1, description="Episodes at most (seed 000: 4).")
    force_min_episodes: int = Field(
        3, ge=0, description="The judge may not stop before this unless loss degrades."
    )
    patience: int = Field(2, ge=1, description="Judge: episodes without improvement before it may stop.")
    qa: bool = Field(False, description="Run the QA generator/evaluator after each episode.")
    qa_items: int = Field(4, ge=1, description="QA items per episode.")
    qa_weight: float = Field(0.0, ge=0, description="Weight of the QA-score change in the reward (0 = seed).")
    tpe_startup_trials: int = Field(3, ge=1, description="Random trials before TPE models the space.")
    override_share: float = Field(
        0.3, ge=0, le=1, description="centaur: share of trials the agents may take over from the sampler."
    )
    centaur_base: Literal["tpe", "cma"] = Field(
        "tpe",
        description="centaur: the classical sampler that proposes the other trials (cma needs `cmaes`).",
    )
    proposals_per_episode: int = Field(
        1,
        ge=1,
        le=64,
        description="Configs trained per episode (in parallel with executor ray); the best is the episode's. "
        "agents: the tuner's, then its lr x2, x1/2, x4, ... (distinct, in range); random/tpe/hybrid: "
        "more draws.",
    )
    seed: int = Field(0, description="Seed of the agents, the proposers and the trials.")


class SealStageSettings(Strict):
    mode: Literal["refine", "self_edit", "none"] = Field(
        "refine",
        description="refine: continue the best TRAIN adapter on the same data (seed 000); self_edit: the "
        "model writes new training rows from training examples and trains on them (SEAL); none: skip.",
    )
    examples: int = Field(8, ge=1, description="self_edit: training examples the model rewrites.")
    max_new_tokens: int = Field(96, ge=8, description="self_edit: tokens per generated example.")


class TrialSettings(Strict):
    max_steps: MaxSteps = Field(
        -1, description="Optimizer steps per training (-1 = the epochs from the tuner)."
    )
    max_length: int = Field(384, ge=16, description="Tokens per packed training row.")
    reload_base: bool = Field(
        False, description="Reload the base from disk every trial, as seed 000 does (for comparison only)."
    )


class TuneConfig(Strict):
    """`posttrain tune`: LoRA fine-tuning driven by an agent team in episodes (seed 000)."""

    model: ModelSettings = Field(default_factory=ModelSettings, description="Base model, held resident.")
    data: DataSplitSettings = Field(
        default_factory=DataSplitSettings,
        description="Training data and split (each trial's row length is trial.max_length).",
    )
    search_space: SearchSpace = Field(
        default_factory=SearchSpace, description="Hyperparameter ranges (seed 000's)."
    )
    agents: AgentSettings = Field(
        default_factory=AgentSettings, description="Tuner, backend and loop limits."
    )
    seal: SealStageSettings = Field(default_factory=SealStageSettings, description="The SEAL stage.")
    trial: TrialSettings = Field(default_factory=TrialSettings, description="Budget of each training.")
    executor: ExecutorSettings = Field(
        default_factory=ExecutorSettings, description="Where the proposals of an episode train."
    )
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")
