"""`posttrain rlhf` config (seed 003)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from posttrain.config.constants import DEFAULT_MODEL
from posttrain.config.sections import LoraSettings, Strict

# Seed 003's spellings, accepted as CLI flags and YAML keys and renamed before validation.
RLHF_ALIASES = {
    "ppo_epochs": "rl_epochs",
    "ppo_batch_size": "rl_batch_size",
    "use_curriculum": "curriculum",
    "use_multi_objective": "multi_objective",
    "use_dynamic_kl": "dynamic_kl",
    "use_contrastive": "contrastive",
    "use_self_critique": "self_critique",
    "use_decision_transformer": "decision_transformer",
}
Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
]


class RewardModelSettings(Strict):
    path: str | None = Field(
        None, description="Reuse a trained reward model (a run's reward_model/ dir) instead of training one."
    )
    epochs: float = Field(1.0, gt=0.0, description="Passes over the score-difference pairs.")
    batch_size: int = Field(4, ge=1, description="Pairs per device per step.")
    learning_rate: float = Field(3e-4, gt=0.0, description="Peak learning rate of the reward model's LoRA.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1 = use epochs).")
    min_gap: float = Field(
        1.0, gt=0.0, le=5.0, description="Pair two answers to one prompt when their scores differ this much."
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank of the reward model.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha of the reward model.")


class RLHFConfig(Strict):
    """`posttrain rlhf`: seed 003's SFT -> reward model -> online RL (GRPO or RLOO) with ADLF rewards.

    Top-level keys are seed 003's flag names (also accepted: ppo_epochs, ppo_batch_size and the
    seed's use_* spellings of the technique switches); LoRA and reward-model details are nested.
    """

    # stages, model, data, output
    run_sft: bool = Field(False, description="Run the supervised fine-tuning stage.")
    run_rlhf: bool = Field(False, description="Train the reward model and run the online RL stage.")
    algo: Literal["grpo", "rloo"] = Field(
        "grpo", description="TRL online RL trainer: grpo or rloo (PPOTrainer left TRL in 1.13)."
    )
    model_name: str = Field(DEFAULT_MODEL, description="smollm2-135m, tiny-random, a hub id or a local dir.")
    data_path: str | None = Field(None, description="Scored-conversation JSONL; None = the bundled sample.")
    output_dir: str = Field("runs", description="Parent directory of run directories.")
    run_name: str | None = Field(None, description="Run name (its directory under output_dir).")
    store: str | None = Field(None, description="Store URL; default sqlite in output_dir.")
    sft_adapter: str | None = Field(
        None, description="Start RL from this SFT adapter (when run_sft is off); it is also the KL reference."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N.")
    fp16: bool = Field(False, description="Load the base model in float16 (CUDA only).")
    bf16: bool = Field(False, description="Load the base model in bfloat16.")
    token_format: Literal["standard", "role_markers", "turn_markers"] = Field(
        "standard", description="standard (chat template), role_markers or turn_markers."
    )
    val_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of PROMPTS held out (never trained on) for evaluation."
    )
    data_seed: int = Field(0, description="Seed of the train/held-out split.")
    seed: int = Field(42, description="Seed of LoRA init, data order and sampling.")
    # shared optimisation
    max_seq_length: int = Field(512, ge=32, description="Token limit of SFT rows and reward-model texts.")
    scheduler: Scheduler = Field("cosine", description="Learning-rate schedule of every stage.")
    cosine_cycles: int = Field(1, ge=1, description="Restarts of cosine_with_restarts.")
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="Share of steps warming up the LR.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    save_steps: int = Field(25, ge=1, description="Checkpoint every N optimizer steps (every stage).")
    use_wandb: bool = Field(False, description="Report to Weights & Biases (needs `pip install wandb`).")
    wandb_project: str = Field("posttrain", description="W&B project name.")
    # SFT
    sft_epochs: float = Field(1.0, gt=0.0, description="SFT passes over the training rows.")
    sft_batch_size: int = Field(4, ge=1, description="SFT rows per device per step.")
    sft_learning_rate: float = Field(2e-4, gt=0.0, description="SFT peak learning rate.")
    sft_max_steps: int = Field(-1, description="Stop SFT after N steps (-1 = use sft_epochs).")
    sft_min_score: float = Field(
        4.0,
        ge=0.0,
        le=5.0,
        description="SFT imitates answers scored at least this (all with decision_transformer).",
    )
    # RL
    rl_epochs: float = Field(
        1.0, gt=0.0, description="RL passes over the training prompts (alias ppo_epochs)."
    )
    rl_batch_size: int = Field(
        2,
        ge=1,
        description="Prompts per micro-batch, each sampled num_generations times (alias ppo_batch_size).",
    )
    rl_learning_rate: float = Field(2e-5, gt=0.0, description="RL peak learning rate.")
    rl_max_steps: int = Field(-1, description="Stop RL after N steps (-1 = use rl_epochs).")
    num_generations: int = Field(
        4, ge=2, description="Completions sampled per prompt (the group of GRPO/RLOO)."
    )
    max_completion_length: int = Field(48, ge=1, description="Tokens per sampled completion.")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature of RL rollouts.")
    init_kl_coef: float = Field(
        0.05,
        gt=0.0,
        description="Beta of the KL term (its start value with dynamic_kl); TRL drops the KL at 0.",
    )
    # ADLF reward
    adlf_alpha: float = Field(
        0.3, ge=0.0, le=1.0, description="reward = (1 - alpha) external + alpha internal."
    )
    use_coherence_reward: bool = Field(
        True, description="Weight coherence (prompt relevance) in the internal reward."
    )
    use_length_penalty: bool = Field(
        True, description="Add the length/repetition penalty to the internal reward."
    )
    coherence_weight: float = Field(1.0, ge=0.0, description="Weight of coherence among the internal scores.")
    length_weight: float = Field(1.0, ge=0.0, description="Multiplier of the length penalty (<= 0).")
    length_min_tokens: int = Field(4, ge=0, description="Answers shorter than this are penalised.")
    length_max_tokens: int = Field(64, ge=1, description="Answers longer than this are penalised.")
    multi_objective: bool = Field(
        False,
        description="Add fluency, faithfulness and quality with their weights (alias use_multi_objective).",
    )
    fluency_weight: float = Field(
        0.3, ge=0.0, description="Weight of fluency (perplexity under the reference)."
    )
    faithfulness_weight: float = Field(
        0.3, ge=0.0, description="Weight of faithfulness to the prompt's facts."
    )
    quality_weight: float = Field(0.4, ge=0.0, description="Weight of the reward model's normalised score.")
    # techniques
    curriculum: Literal["none", "score", "length"] = Field(
        "none", description="Order RL prompts easy to hard by score or length (use_curriculum = score)."
    )
    dynamic_kl: bool = Field(False, description="Adapt beta towards kl_target (alias use_dynamic_kl).")
    kl_target: float = Field(0.1, gt=0.0, description="Per-token KL the adaptive controller aims for.")
    kl_horizon: float = Field(10.0, gt=0.0, description="Optimizer steps over which beta may move by ~20%.")
    kl_warmup_steps: int = Field(
        10, ge=0, description="RL steps left out of the reported mean KL while the controller settles."
    )
    contrastive: bool = Field(
        False,
        description="Auxiliary contrastive loss on high- vs low-scored answers (alias use_contrastive).",
    )
    contrastive_temp: float = Field(0.07, gt=0.0, description="Temperature of the contrastive loss.")
    contrastive_weight: float = Field(
        0.1, ge=0.0, description="Weight of the contrastive loss in the RL loss."
    )
    self_critique: bool = Field(
        False, description="Mix critique-then-revise rows into SFT (alias use_self_critique)."
    )
    critique_weight: float = Field(
        0.5, ge=0.0, description="Critique rows per answer row in the SFT mix (sampled with the seed)."
    )
    decision_transformer: bool = Field(
        False, description="Condition prompts on the score (alias use_decision_transformer)."
    )
    target_score: float = Field(5.0, ge=0.0, le=5.0, description="Score RL and eval prompts ask for.")
    # evaluation on held-out prompts
    eval_heldout: bool = Field(
        True, description="Score SFT and RL completions on held-out prompts at the end."
    )
    eval_samples: int = Field(2, ge=1, description="Completions per held-out prompt per model.")
    eval_temperature: float = Field(
        0.7, gt=0.0, description="Sampling temperature of the held-out evaluation."
    )
    # nested
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA of the policy (SFT and RL).")
    reward_model: RewardModelSettings = Field(
        default_factory=RewardModelSettings, description="External reward model trained on meta_eval_score."
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_spellings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, name in RLHF_ALIASES.items():
            if alias not in data:
                continue
            if name in data:
                raise ValueError(
                    f"set either {alias} or {name}, not both (one setting; to override a preset's "
                    f"{name}, use that spelling or the --{alias} flag)"
                )
            value = data.pop(alias)
            if alias == "use_curriculum" and isinstance(value, bool):
                value = "score" if value else "none"
            data[name] = value
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RLHFConfig:
        if self.fp16 and self.bf16:
            raise ValueError("fp16 and bf16 are both set; choose one")
        if self.length_min_tokens > self.length_max_tokens:
            raise ValueError("length_min_tokens must not exceed length_max_tokens")
        return self


def parse_rlhf_flags(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`posttrain rlhf` arguments -> (config keys the user set, {config, preset, set, resume}).

    Every top-level RLHFConfig key is a flag of the same name, underscores kept as in seed
    003 (`--sft_epochs 3`, `--run_sft`, `--no_run_sft`), plus the aliases in RLHF_ALIASES
    (`--ppo_epochs`, `--use_dynamic_kl`, `--use_curriculum` = `--curriculum score`) and
    `--name` for run_name. Nested keys (lora.*, reward_model.*) go through `--set`.
    `--help` prints every flag with its description and exits.
    """
    import argparse
    import typing

    parser = argparse.ArgumentParser(
        prog="posttrain rlhf",
        description=RLHFConfig.__doc__.splitlines()[0] if RLHFConfig.__doc__ else None,
        epilog="Every on/off flag --X also has --no_X. Nested keys: --set lora.r=8 (see --set). "
        "Several processes: --launcher accelerate --num-processes N [--deepspeed zero2|zero3 | --fsdp].",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("-c", "--config", dest="_config", metavar="FILE", help="YAML or JSON config file.")
    parser.add_argument(
        "--preset",
        dest="_preset",
        metavar="NAME",
        help="A preset shipped in posttrain/presets (rlhf, rlhf_test).",
    )
    parser.add_argument(
        "--set",
        dest="_set",
        action="append",
        metavar="KEY=VALUE",
        help="Override: key.sub=value (repeatable).",
    )
    parser.add_argument(
        "--resume", dest="_resume", action="store_true", help="Continue the killed run --name."
    )
    parser.add_argument(
        "--name", dest="run_name", metavar="NAME", help="Run name (its directory under output_dir)."
    )
    aliases: dict[str, list[str]] = {}
    for alias, name in RLHF_ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    for name, field in RLHFConfig.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            continue
        text = f"{field.description} (default: {field.default!r})".replace("%", "%%")
        names = [f"--{name}"] + [f"--{a}" for a in aliases.get(name, []) if a != "use_curriculum"]
        if ann is bool:
            parser.add_argument(*names, dest=name, action="store_const", const=True, help=text)
            parser.add_argument(
                f"--no_{name}", dest=name, action="store_const", const=False, help=argparse.SUPPRESS
            )
            continue
        args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
        if typing.get_origin(ann) is Literal:
            parser.add_argument(*names, dest=name, choices=list(typing.get_args(ann)), help=text)
        else:
            parser.add_argument(*names, dest=name, type=args[0], help=text)
    parser.add_argument(
        "--use_curriculum",
        dest="curriculum",
        action="store_const",
        const="score",
        help="Same as --curriculum score.",
    )
    given = vars(parser.parse_args(argv))
    meta = {key[1:]: given.pop(key) for key in list(given) if key.startswith("_")}
    return given, meta
