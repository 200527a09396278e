"""`posttrain rlhf` config (seed 003): the shared sections plus one section per stage.

`sft`, `reward_model` and `rl` each hold their stage's learning_rate, batch_size, epochs and
max_steps under the same names; `train` holds what every stage shares. Seed 003's flat names
(`sft_learning_rate`, `ppo_epochs`, `use_dynamic_kl`, ...) are aliases in RLHF_ALIASES.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from posttrain.config.aliases import DROP, Alias, AliasValue, rename_aliases, switch
from posttrain.config.sections import LoraSettings, MaxSteps, ModelSettings, RunSettings, Strict

Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
]


class RLHFDataSettings(Strict):
    path: str | None = Field(None, description="Scored-conversation JSONL; None = the bundled sample.")
    val_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of PROMPTS held out (never trained on) for evaluation."
    )
    seed: int = Field(0, description="Seed of the train/held-out split.")
    max_length: int = Field(512, ge=32, description="Token limit of SFT rows and reward-model texts.")
    token_format: Literal["standard", "role_markers", "turn_markers"] = Field(
        "standard", description="standard (chat template), role_markers or turn_markers."
    )


class RLHFTrainSettings(Strict):
    """Optimisation every stage shares."""

    scheduler: Scheduler = Field("cosine", description="Learning-rate schedule of every stage.")
    cosine_cycles: int = Field(1, ge=1, description="Restarts of cosine_with_restarts.")
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="Share of steps warming up the LR.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    save_steps: int = Field(25, ge=1, description="Checkpoint every N optimizer steps (every stage).")
    seed: int = Field(42, description="Seed of LoRA init, data order and sampling.")
    report_to: Literal["none", "wandb"] = Field(
        "none", description="none or wandb (Weights & Biases; needs `pip install wandb`)."
    )
    wandb_project: str = Field("posttrain", description="W&B project name.")


class StageSettings(Strict):
    """The parts every training stage has; each stage subclasses it with its own defaults."""

    learning_rate: float = Field(2e-4, gt=0.0, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, description="Examples per device per step.")
    epochs: float = Field(1.0, gt=0.0, description="Passes over the stage's training data.")
    max_steps: MaxSteps = Field(-1, description="Stop after this many optimizer steps (-1 = use epochs).")


class RLHFSFTSettings(StageSettings):
    enabled: bool = Field(False, description="Run the supervised fine-tuning stage (--run-sft).")
    adapter: str | None = Field(
        None, description="Start RL from this SFT adapter (when sft is off); it is also the KL reference."
    )
    min_score: float = Field(
        4.0,
        ge=0.0,
        le=5.0,
        description="SFT imitates answers scored at least this (all with decision_transformer).",
    )
    self_critique: bool = Field(False, description="Mix critique-then-revise rows into SFT.")
    critique_weight: float = Field(
        0.5, ge=0.0, description="Critique rows per answer row in the SFT mix (sampled with the seed)."
    )
    decision_transformer: bool = Field(
        False, description="Condition prompts on the score; RL and eval ask for rl.target_score."
    )


class RewardModelLora(Strict):
    r: int = Field(16, ge=1, description="LoRA rank of the reward model.")
    alpha: int = Field(32, ge=1, description="LoRA alpha of the reward model.")


class RewardModelSettings(StageSettings):
    learning_rate: float = Field(3e-4, gt=0.0, description="Peak learning rate of the reward model's LoRA.")
    batch_size: int = Field(4, ge=1, description="Pairs per device per step.")
    epochs: float = Field(1.0, gt=0.0, description="Passes over the score-difference pairs.")
    path: str | None = Field(
        None, description="Reuse a trained reward model (a run's reward_model/ dir) instead of training one."
    )
    min_gap: float = Field(
        1.0, gt=0.0, le=5.0, description="Pair two answers to one prompt when their scores differ this much."
    )
    lora: RewardModelLora = Field(default_factory=RewardModelLora, description="LoRA of the reward model.")


class RLSettings(StageSettings):
    enabled: bool = Field(
        False, description="Train the reward model and run the online RL stage (--run-rlhf)."
    )
    algo: Literal["grpo", "rloo"] = Field(
        "grpo", description="TRL online RL trainer: grpo or rloo (PPOTrainer left TRL in 1.13)."
    )
    learning_rate: float = Field(2e-5, gt=0.0, description="RL peak learning rate.")
    batch_size: int = Field(
        2, ge=1, description="Prompts per micro-batch, each sampled num_generations times."
    )
    epochs: float = Field(1.0, gt=0.0, description="RL passes over the training prompts.")
    num_generations: int = Field(
        4, ge=2, description="Completions sampled per prompt (the group of GRPO/RLOO)."
    )
    max_completion_length: int = Field(48, ge=1, description="Tokens per sampled completion.")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature of RL rollouts.")
    target_score: float = Field(
        5.0, ge=0.0, le=5.0, description="Score RL and eval prompts ask for (decision_transformer)."
    )
    curriculum: Literal["none", "score", "length"] = Field(
        "none", description="Order RL prompts easy to hard by score or length."
    )
    init_kl_coef: float = Field(
        0.05,
        gt=0.0,
        description="Beta of the KL term (its start value with dynamic_kl); TRL drops the KL at 0.",
    )
    dynamic_kl: bool = Field(False, description="Adapt beta towards kl_target.")
    kl_target: float = Field(0.1, gt=0.0, description="Per-token KL the adaptive controller aims for.")
    kl_horizon: float = Field(10.0, gt=0.0, description="Optimizer steps over which beta may move by ~20%.")
    kl_warmup_steps: int = Field(
        10, ge=0, description="RL steps left out of the reported mean KL while the controller settles."
    )
    contrastive: bool = Field(False, description="Auxiliary contrastive loss on high- vs low-scored answers.")
    contrastive_temp: float = Field(0.07, gt=0.0, description="Temperature of the contrastive loss.")
    contrastive_weight: float = Field(
        0.1, ge=0.0, description="Weight of the contrastive loss in the RL loss."
    )


class ADLFSettings(Strict):
    """The RL reward: (1 - alpha) external (reward model) + alpha internal (these scores)."""

    alpha: float = Field(0.3, ge=0.0, le=1.0, description="reward = (1 - alpha) external + alpha internal.")
    coherence: bool = Field(True, description="Weight coherence (prompt relevance) in the internal reward.")
    coherence_weight: float = Field(1.0, ge=0.0, description="Weight of coherence among the internal scores.")
    length_penalty: bool = Field(
        True, description="Add the length/repetition penalty to the internal reward."
    )
    length_weight: float = Field(1.0, ge=0.0, description="Multiplier of the length penalty (<= 0).")
    length_min_tokens: int = Field(4, ge=0, description="Answers shorter than this are penalised.")
    length_max_tokens: int = Field(64, ge=1, description="Answers longer than this are penalised.")
    multi_objective: bool = Field(
        False, description="Add fluency, faithfulness and quality with their weights."
    )
    fluency_weight: float = Field(
        0.3, ge=0.0, description="Weight of fluency (perplexity under the reference)."
    )
    faithfulness_weight: float = Field(
        0.3, ge=0.0, description="Weight of faithfulness to the prompt's facts."
    )
    quality_weight: float = Field(0.4, ge=0.0, description="Weight of the reward model's normalised score.")


class RLHFEvalSettings(Strict):
    enabled: bool = Field(True, description="Score SFT and RL completions on held-out prompts at the end.")
    samples: int = Field(2, ge=1, description="Completions per held-out prompt per model.")
    temperature: float = Field(0.7, gt=0.0, description="Sampling temperature of the held-out evaluation.")


def _dtype(name: str) -> Any:
    return switch(lambda on: name if on else DROP)


# Seed 003's spellings (its flat keys and flags) -> today's key paths.
RLHF_ALIASES: dict[str, Alias] = {
    "run_sft": "sft.enabled",
    "run_rlhf": "rl.enabled",
    "algo": "rl.algo",
    "model_name": "model.name",
    "device": "model.device",
    "fp16": AliasValue("model.dtype", _dtype("float16")),
    "bf16": AliasValue("model.dtype", _dtype("bfloat16")),
    "data_path": "data.path",
    "val_fraction": "data.val_fraction",
    "data_seed": "data.seed",
    "max_seq_length": "data.max_length",
    "token_format": "data.token_format",
    "output_dir": "run.output_root",
    "run_name": "run.name",
    "store": "run.store",
    "sft_adapter": "sft.adapter",
    "seed": "train.seed",
    "scheduler": "train.scheduler",
    "cosine_cycles": "train.cosine_cycles",
    "warmup_ratio": "train.warmup_ratio",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "save_steps": "train.save_steps",
    "use_wandb": AliasValue("train.report_to", switch(lambda on: "wandb" if on else "none")),
    "wandb_project": "train.wandb_project",
    "sft_epochs": "sft.epochs",
    "sft_batch_size": "sft.batch_size",
    "sft_learning_rate": "sft.learning_rate",
    "sft_max_steps": "sft.max_steps",
    "sft_min_score": "sft.min_score",
    "self_critique": "sft.self_critique",
    "use_self_critique": "sft.self_critique",
    "critique_weight": "sft.critique_weight",
    "decision_transformer": "sft.decision_transformer",
    "use_decision_transformer": "sft.decision_transformer",
    "rl_epochs": "rl.epochs",
    "ppo_epochs": "rl.epochs",
    "rl_batch_size": "rl.batch_size",
    "ppo_batch_size": "rl.batch_size",
    "rl_learning_rate": "rl.learning_rate",
    "rl_max_steps": "rl.max_steps",
    "num_generations": "rl.num_generations",
    "max_completion_length": "rl.max_completion_length",
    "temperature": "rl.temperature",
    "target_score": "rl.target_score",
    "curriculum": "rl.curriculum",
    "use_curriculum": AliasValue("rl.curriculum", switch(lambda on: "score" if on else "none")),
    "init_kl_coef": "rl.init_kl_coef",
    "dynamic_kl": "rl.dynamic_kl",
    "use_dynamic_kl": "rl.dynamic_kl",
    "kl_target": "rl.kl_target",
    "kl_horizon": "rl.kl_horizon",
    "kl_warmup_steps": "rl.kl_warmup_steps",
    "contrastive": "rl.contrastive",
    "use_contrastive": "rl.contrastive",
    "contrastive_temp": "rl.contrastive_temp",
    "contrastive_weight": "rl.contrastive_weight",
    "adlf_alpha": "adlf.alpha",
    "use_coherence_reward": "adlf.coherence",
    "coherence_weight": "adlf.coherence_weight",
    "use_length_penalty": "adlf.length_penalty",
    "length_weight": "adlf.length_weight",
    "length_min_tokens": "adlf.length_min_tokens",
    "length_max_tokens": "adlf.length_max_tokens",
    "multi_objective": "adlf.multi_objective",
    "use_multi_objective": "adlf.multi_objective",
    "fluency_weight": "adlf.fluency_weight",
    "faithfulness_weight": "adlf.faithfulness_weight",
    "quality_weight": "adlf.quality_weight",
    "eval_heldout": "eval.enabled",
    "eval_samples": "eval.samples",
    "eval_temperature": "eval.temperature",
    "reward_model.lora_r": "reward_model.lora.r",
    "reward_model.lora_alpha": "reward_model.lora.alpha",
}


class RLHFConfig(Strict):
    """`posttrain rlhf`: seed 003's SFT -> reward model -> online RL (GRPO or RLOO) with ADLF rewards."""

    model: ModelSettings = Field(default_factory=ModelSettings, description="Base model and placement.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA of the policy (SFT and RL).")
    data: RLHFDataSettings = Field(
        default_factory=RLHFDataSettings, description="Scored conversations and their split."
    )
    train: RLHFTrainSettings = Field(
        default_factory=RLHFTrainSettings, description="Optimisation every stage shares."
    )
    sft: RLHFSFTSettings = Field(default_factory=RLHFSFTSettings, description="The SFT stage.")
    reward_model: RewardModelSettings = Field(
        default_factory=RewardModelSettings, description="External reward model trained on meta_eval_score."
    )
    rl: RLSettings = Field(default_factory=RLSettings, description="The online RL stage.")
    adlf: ADLFSettings = Field(default_factory=ADLFSettings, description="The ADLF reward of the RL stage.")
    eval: RLHFEvalSettings = Field(
        default_factory=RLHFEvalSettings, description="Held-out evaluation after RL."
    )
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")

    @model_validator(mode="before")
    @classmethod
    def _seed_spellings(cls, data: Any) -> Any:
        return rename_aliases(data, RLHF_ALIASES)

    @model_validator(mode="after")
    def _consistent(self) -> RLHFConfig:
        if self.adlf.length_min_tokens > self.adlf.length_max_tokens:
            raise ValueError("adlf.length_min_tokens must not exceed adlf.length_max_tokens")
        return self
