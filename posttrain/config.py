"""Config models, YAML presets and `--set a.b=c` overrides.

One pydantic model per pipeline, every field with a default and a description; unknown keys
are errors that name the key and suggest the closest valid one. The CLI validates here and
hands plain values down; nothing below the pipelines sees a config object.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from posttrain.agents.search_space import SearchSpace
from posttrain.errors import ConfigError
from posttrain.models import DEFAULT_MODEL, LORA_TARGETS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Strict):
    name: str = Field(
        DEFAULT_MODEL, description="Model spec: smollm2-135m, tiny-random, a hub id or a local dir."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bf16 on CUDA that supports it, fp32 elsewhere."
    )
    attn_implementation: str = Field(
        "auto", description="auto = flash_attention_2 if installed on CUDA, else sdpa."
    )
    use_kernels: bool = Field(
        False,
        description="Fused hub kernels (transformers/TRL use_kernels; needs `kernels`, CUDA).",
    )


class LoraSettings(_Strict):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(LORA_TARGETS), description="Modules to adapt."
    )


class DataSettings(_Strict):
    path: str | None = Field(
        None, description="JSONL/JSON/CSV file or saved HF dataset; None = bundled sample."
    )
    val_path: str | None = Field(
        None,
        description="Validation file (same format); when set, all of `path` trains, val_fraction unused.",
    )
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Share of rows held out for validation.")
    seed: int = Field(0, description="Seed of the train/validation split.")
    max_train: int = Field(10_000, ge=1, description="Cap on training rows (after shuffling).")
    max_val: int = Field(2_000, ge=1, description="Cap on validation rows (after shuffling).")
    max_length: int = Field(512, ge=16, description="Tokens per example; longer ones are truncated.")

    def split_args(self) -> dict[str, Any]:
        """The data loaders' split keywords, so SFT, DPO and tune split a file the same way."""
        return {
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "max_train": self.max_train,
            "max_val": self.max_val,
            "val_path": self.val_path,
        }


class TrainSettings(_Strict):
    learning_rate: float = Field(2e-4, gt=0.0, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, description="Examples per device per step (before packing).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    epochs: float = Field(1.0, gt=0.0, description="Passes over the training data.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1 = use epochs).")
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="Share of steps spent warming up the LR.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    scheduler: str = Field("cosine", description="HF scheduler name: linear, cosine, constant, ...")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    seed: int = Field(42, description="Seed of model init, LoRA init and data order.")
    packing: bool = Field(
        True,
        description="Pack examples into rows without cross-attention (padding-free); fastest on CPU and GPU.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (slower).")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    logging_steps: int = Field(1, ge=1, description="Log the training loss every N steps.")
    report_to: str = Field("none", description="none, tensorboard, wandb, mlflow or trackio (passed to HF).")


class RunSettings(_Strict):
    name: str | None = Field(None, description="Run name; default <pipeline>-<timestamp>.")
    output_root: str = Field("runs", description="Parent of run directories.")
    store: str | None = Field(
        None, description="Store URL; default $POSTTRAIN_STORE or sqlite:///runs/posttrain.db."
    )


class ExecutorSettings(_Strict):
    """Where independent work (tune proposals, SEAL inner updates, rollout shards) runs."""

    kind: Literal["local", "ray"] = Field(
        "local",
        description="local: one after another in this process, on the resident base; ray: one Ray task "
        "each (needs `pip install posttrain[ray]`).",
    )
    ray_address: str | None = Field(
        None,
        description="ray: None starts a local Ray on this machine; 'auto' joins the running cluster; "
        "'ray://host:10001' connects a client.",
    )
    num_cpus: float | None = Field(None, gt=0, description="ray: CPUs per task (None = 1).")
    num_gpus: float | None = Field(
        None,
        ge=0,
        description="ray: GPUs per task (None = 1 when the cluster has GPUs, else 0); 0.5 packs two per GPU.",
    )
    max_retries: int = Field(
        2, ge=0, description="ray: retries of a task that raised or whose worker died (each in the store)."
    )


class SFTConfig(_Strict):
    """`posttrain sft`: LoRA supervised fine-tuning with loss on the completion only."""

    model: ModelSettings = Field(
        default_factory=ModelSettings, description="Which model and how to place it."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter shape.")
    data: DataSettings = Field(default_factory=DataSettings, description="Training data and split.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Optimisation.")
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")


class DPOSettings(_Strict):
    beta: float = Field(0.1, gt=0.0, description="DPO temperature: higher stays closer to the reference.")
    loss_type: str = Field("sigmoid", description="TRL DPO loss type (sigmoid, ipo, hinge, ...).")
    adapter: str | None = Field(
        None, description="SFT adapter to start from; it is also the frozen reference. None = base model."
    )


class DPOConfig(_Strict):
    """`posttrain dpo`: LoRA DPO on preference rows (prompt, chosen, rejected)."""

    model: ModelSettings = Field(
        default_factory=ModelSettings, description="Which model and how to place it."
    )
    lora: LoraSettings = Field(
        default_factory=LoraSettings, description="LoRA adapter shape (ignored with adapter)."
    )
    data: DataSettings = Field(default_factory=DataSettings, description="Preference data and split.")
    train: TrainSettings = Field(
        default_factory=lambda: TrainSettings(learning_rate=5e-5, packing=False),
        description="Optimisation.",
    )
    dpo: DPOSettings = Field(default_factory=DPOSettings, description="DPO objective.")
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")


C = TypeVar("C", bound=BaseModel)


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("posttrain.presets").iterdir()
        if p.name.endswith(".yaml")
    )


def _read_preset(name: str) -> dict[str, Any]:
    path = resources.files("posttrain.presets") / f"{name}.yaml"
    if not path.is_file():
        near = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else f" (available: {', '.join(preset_names())})"
        raise ConfigError(f"unknown preset '{name}'{hint}")
    return yaml.safe_load(path.read_text()) or {}


def _read_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`train.learning_rate=1e-4` -> {"train": {"learning_rate": 1e-4}}; values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML 1.1 reads 1e-4 as a string; a number is what anyone typing it means.
        with contextlib.suppress(ValueError):
            value = float(value)
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_all_keys(ann, prefix + name + "."))
    return keys


def _explain(err: ValidationError, cls: type[BaseModel], source: str) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        near = difflib.get_close_matches(key, _all_keys(cls), n=1, cutoff=0.5)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        return ConfigError(f"{source}: unknown key '{key}'{hint}")
    return ConfigError(f"{source}: {key}: {first['msg']} (got {first.get('input')!r})")


def load_config(
    cls: type[C],
    *,
    preset: str | None = None,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> C:
    """Build a config: class defaults < preset < file < `extra` (CLI flags) < `--set` overrides."""
    data: dict[str, Any] = {}
    sources = []
    if preset:
        data = _merge(data, _read_preset(preset))
        sources.append(f"preset {preset}")
    if path:
        data = _merge(data, _read_file(path))
        sources.append(str(path))
    if extra:
        data = _merge(data, extra)
    for item in overrides or []:
        data = _merge(data, parse_override(item))
        sources.append("--set")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise _explain(err, cls, " + ".join(sources) or "config") from None


def dump_config(cfg: BaseModel, path: Path) -> None:
    """Write the fully resolved config, so any run can be repeated from its own directory."""
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def config_reference(cls: type[BaseModel]) -> str:
    """A markdown table of every key, its default and its help (README's config reference)."""
    defaults = cls().model_dump(mode="json")
    lines = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], values: dict[str, Any], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, values[name], f"{prefix}{name}.")
            else:
                shown = json.dumps(values[name])
                lines.append(f"| `{prefix}{name}` | `{shown}` | {field.description} |")

    walk(cls, defaults, "")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- rlhf (seed 003)


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


class RewardModelSettings(_Strict):
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


class RLHFConfig(_Strict):
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


# ---------------------------------------------------------------- posttrain tune (seed 000)


class AgentSettings(_Strict):
    tuner: Literal["agents", "random", "tpe", "hybrid"] = Field(
        "agents",
        description="Who proposes each episode's hparams: the agent team, random, Optuna TPE or both.",
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
    proposals_per_episode: int = Field(
        1,
        ge=1,
        le=64,
        description="Configs trained per episode (in parallel with executor ray); the best is the episode's. "
        "agents: the tuner's, then its lr x2, x1/2, x4, ... (distinct, in range); random/tpe/hybrid: "
        "more draws.",
    )
    seed: int = Field(0, description="Seed of the agents, the proposers and the trials.")


class SealStageSettings(_Strict):
    mode: Literal["refine", "self_edit", "none"] = Field(
        "refine",
        description="refine: continue the best TRAIN adapter on the same data (seed 000); self_edit: the "
        "model writes new training rows from training examples and trains on them (SEAL); none: skip.",
    )
    examples: int = Field(8, ge=1, description="self_edit: training examples the model rewrites.")
    max_new_tokens: int = Field(96, ge=8, description="self_edit: tokens per generated example.")


class TrialSettings(_Strict):
    max_steps: int = Field(-1, description="Optimizer steps per training (-1 = the epochs from the tuner).")
    max_length: int = Field(384, ge=16, description="Tokens per packed training row.")
    reload_base: bool = Field(
        False, description="Reload the base from disk every trial, as seed 000 does (for comparison only)."
    )


class TuneConfig(_Strict):
    """`posttrain tune`: LoRA fine-tuning driven by an agent team in episodes (seed 000)."""

    model: ModelSettings = Field(default_factory=ModelSettings, description="Base model, held resident.")
    data: DataSettings = Field(default_factory=DataSettings, description="Training data and split.")
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


# ---------------------------------------------------------------- SEAL (seed 001)


class SEALInnerSettings(_Strict):
    epochs: float = Field(
        10.0, gt=0.0, description="Passes over a self-edit's rows per inner update (paper: 10)."
    )
    batch_size: int = Field(1, ge=1, description="Rows per inner step (paper: 1).")
    runs: int = Field(
        3,
        ge=1,
        description="Inner updates per self-edit, each with its own seed; score = their mean (paper: 3).",
    )
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Share of inner steps warming up the LR.")
    scheduler: str = Field("linear", description="HF scheduler name of the inner update.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping of the inner update.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay of the inner update.")
    max_length: int = Field(
        512, ge=16, description="Tokens per inner training row (longer ones are truncated)."
    )


class SEALGenerationSettings(_Strict):
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature of self-edits.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling of self-edits.")
    max_new_tokens: int = Field(256, ge=1, description="Tokens per self-edit.")
    batch_size: int = Field(8, ge=1, description="Contexts per batched generate call (each gives k samples).")


class SEALReSTEMSettings(_Strict):
    keep: Literal["all_positive", "top1"] = Field(
        "top1", description="Keep every rewarded self-edit, or the best one per context (paper, knowledge)."
    )
    min_gain: float = Field(0.0, description="A kept self-edit must improve the score by at least this much.")
    max_per_context: int | None = Field(None, ge=1, description="Cap on kept self-edits per context.")
    restart_from_base: bool = Field(
        True, description="Each M-step fine-tunes the base generator (ReST-EM); false continues the last one."
    )
    contexts_per_iteration: int | None = Field(
        None, ge=1, description="Training contexts sampled per outer iteration (None = all of them)."
    )
    learning_rate: float = Field(3e-4, gt=0.0, description="M-step learning rate (generator LoRA).")
    epochs: float = Field(2.0, gt=0.0, description="M-step passes over the kept self-edits.")
    batch_size: int = Field(4, ge=1, description="M-step examples per step.")
    lora_r: int = Field(16, ge=1, description="Generator LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="Generator LoRA alpha.")
    max_length: int = Field(1024, ge=16, description="Tokens per M-step row (prompt + self-edit).")


class SEALRewardSettings(_Strict):
    kind: Literal["auto", "binary", "continuous", "success"] = Field(
        "auto",
        description="binary: 1 if the update beats the base by > margin; continuous: the delta; success: 1 "
        "if the score after reaches success_at; auto: the domain's (knowledge binary, ARC success).",
    )
    margin: float = Field(0.0, ge=0.0, description="binary: the improvement must exceed this.")
    success_at: float = Field(1.0, description="success: the score that counts as solved.")


class SEALEvalSettings(_Strict):
    enabled: bool = Field(True, description="Build the held-out results table after training.")
    samples: int = Field(1, ge=1, description="Self-edits sampled per held-out context and generator.")
    continued_pretraining: bool = Field(
        True, description="Also pool every held-out context's rows into one update (domains that support it)."
    )
    reference_rows: bool = Field(True, description="Domain reference rows (passage_only, ARC oracle).")


class SEALConfig(_Strict):
    """`posttrain seal`: SEAL self-edits (seed 001) with a ReST-EM outer loop.

    Top-level learning_rate and lora_* describe the inner update that applies one self-edit
    (the paper's LoRA r=32, alpha=64, lr 1e-3); the generator's M-step has its own in `restem`.
    """

    model_name: str = Field(
        DEFAULT_MODEL, description="Model spec: smollm2-135m, tiny-random, a hub id or dir."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bf16 on CUDA that supports it, fp32 elsewhere."
    )
    max_outer_iterations: int = Field(2, ge=0, description="ReST-EM rounds (E-step + M-step each).")
    samples_per_iteration: int = Field(
        5, ge=1, description="Self-edits sampled per context per round (paper: 5)."
    )
    learning_rate: float = Field(
        1e-3, gt=0.0, description="Inner update learning rate (ARC self-edits set their own)."
    )
    lora_r: int = Field(32, ge=1, description="Inner LoRA rank.")
    lora_alpha: int = Field(64, ge=1, description="Inner LoRA alpha.")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Inner LoRA dropout.")
    domain: str = Field(
        "knowledge_incorporation",
        description="knowledge_incorporation, few_shot_learning (ARC), or 'pkg.module:Class' (a BaseDomain).",
    )
    data_config: dict[str, Any] = Field(
        default_factory=dict,
        description="The domain's data options (see docs/seal.md); unknown keys are errors.",
    )
    seed: int = Field(
        0, description="Master seed: data, split, sampling, inner and M-step seeds derive from it."
    )
    inner: SEALInnerSettings = Field(default_factory=SEALInnerSettings, description="The inner update.")
    generation: SEALGenerationSettings = Field(
        default_factory=SEALGenerationSettings, description="Sampling of self-edits."
    )
    restem: SEALReSTEMSettings = Field(default_factory=SEALReSTEMSettings, description="ReST-EM outer loop.")
    reward: SEALRewardSettings = Field(
        default_factory=SEALRewardSettings, description="Reward of a self-edit."
    )
    evaluation: SEALEvalSettings = Field(
        default_factory=SEALEvalSettings, description="Held-out results table."
    )
    executor: ExecutorSettings = Field(
        default_factory=ExecutorSettings, description="Where the E-step's inner updates run."
    )
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")


# ---------------------------------------------------------------- align (seeds 002 and 004)


class AlignDataSettings(_Strict):
    train_rows: int = Field(
        400,
        ge=4,
        description="tool_use: generated training turns (grouped into whole episodes for SFT); "
        "meetings: scenarios for the direct predictor.",
    )
    agent_demos: int = Field(
        48, ge=0, description="meetings: scripted tool-using demos added to SFT (tool_use ignores it)."
    )
    val_rows: int = Field(16, ge=0, description="SFT conversations held out for the eval loss (0 = none).")
    seed: int = Field(42, description="Seed of the training data; rollouts and evaluation draw their own.")
    compact_prompt: bool = Field(
        True, description="Short system prompt (format + tool signatures): half the tokens of the full one."
    )
    max_length: int = Field(
        768, ge=64, description="Tokens per SFT conversation or DPO pair; longer ones are cut."
    )


class AlignRolloutSettings(_Strict):
    prompts: int = Field(
        16, ge=1, description="Held-in prompts (tool_use episodes, meetings scenarios) the SFT model acts on."
    )
    k: int = Field(4, ge=1, description="Trajectories per prompt: the first greedy, the others sampled.")
    temperature: float = Field(0.8, gt=0.0, description="Sampling temperature of the extra trajectories.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus mass of the extra trajectories.")
    max_steps: int = Field(6, ge=1, description="ReAct turns per trajectory.")
    max_new_tokens: int = Field(96, ge=1, description="Tokens per generated turn.")
    batch_size: int = Field(16, ge=1, description="Conversations per batched generate call.")
    seed: int = Field(
        1,
        description="Seed of the held-in prompts and of sampling (ray: shard i samples with seed + i).",
    )
    prompts_per_task: int = Field(
        8, ge=1, description="executor ray: held-in prompts per rollout task (local runs them all at once)."
    )


class AlignPairSettings(_Strict):
    synthetic: int = Field(
        96,
        ge=0,
        description="Synthetic pairs: tool_use rows with one defect each; meetings scripted trajectories "
        "ranked by reward.",
    )
    on_policy: int = Field(
        64, ge=0, description="At most this many on-policy pairs (best vs worst SFT trajectory of a prompt)."
    )
    min_margin: float = Field(0.2, ge=0.0, description="Reward gap a pair needs to count as clearly ranked.")


class AlignDPOSettings(_Strict):
    beta: float = Field(0.1, gt=0.0, description="DPO temperature: higher stays closer to the SFT model.")
    loss_type: str = Field("sigmoid", description="TRL DPO loss type (sigmoid, ipo, hinge, ...).")
    train: TrainSettings = Field(
        default_factory=lambda: TrainSettings(learning_rate=5e-5, packing=False, max_steps=40),
        description="Optimisation of the DPO stage (the SFT adapter is its starting point and reference).",
    )


class AlignEvalSettings(_Strict):
    models: list[Literal["base", "sft", "dpo"]] = Field(
        default_factory=lambda: ["base", "sft", "dpo"], description="Which models the final table compares."
    )
    episodes: int = Field(
        24, ge=1, description="tool_use: held-out episodes per split; every turn of each is scored."
    )
    scenarios: int = Field(32, ge=1, description="meetings: held-out scenarios.")
    max_steps: int = Field(6, ge=1, description="ReAct turns per evaluated episode.")
    max_new_tokens: int = Field(96, ge=1, description="Tokens per generated turn.")
    batch_size: int = Field(16, ge=1, description="Conversations per batched generate call.")
    seed: int = Field(1000, description="Seed of the held-out data; never used for training or tuning.")


class AlignConfig(_Strict):
    """`posttrain align`: SFT -> trajectories with rewards -> preference pairs -> DPO -> evaluation."""

    task: Literal["tool_use", "meetings"] = Field("tool_use", description="Which task to align for.")
    model: ModelSettings = Field(
        default_factory=ModelSettings, description="Which model and how to place it."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter shape (SFT and DPO).")
    data: AlignDataSettings = Field(default_factory=AlignDataSettings, description="Training data.")
    sft: TrainSettings = Field(
        default_factory=lambda: TrainSettings(max_steps=-1), description="Optimisation of the SFT stage."
    )
    rollouts: AlignRolloutSettings = Field(
        default_factory=AlignRolloutSettings, description="Trajectories of the SFT model."
    )
    pairs: AlignPairSettings = Field(default_factory=AlignPairSettings, description="Preference pairs.")
    dpo: AlignDPOSettings = Field(default_factory=AlignDPOSettings, description="DPO stage.")
    evaluation: AlignEvalSettings = Field(
        default_factory=AlignEvalSettings, description="Held-out base/SFT/DPO comparison."
    )
    executor: ExecutorSettings = Field(
        default_factory=ExecutorSettings, description="Where the rollout shards run."
    )
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")


# ---------------------------------------------------------------- posttrain quickstart (make demo)


class QuickstartConfig(_Strict):
    """`posttrain quickstart`: tool-use data → 3 agentic episodes with SEAL → DPO → compliance table."""

    model: str = Field(DEFAULT_MODEL, description="Model spec to tune.")
    rows: int = Field(400, ge=20, description="tool_use rows to generate (SFT and preference).")
    episodes: int = Field(3, ge=1, description="Agentic episodes (each a TRAIN and a SEAL stage).")
    trial_steps: int = Field(4, ge=1, description="Optimizer steps per TRAIN and per SEAL training.")
    dpo_steps: int = Field(6, ge=1, description="DPO steps on the best adapter.")
    eval_episodes: int = Field(8, ge=1, description="Held-out tool-use episodes scored per model.")
    max_length: int = Field(512, ge=64, description="Tokens per training row.")
    seed: int = Field(42, description="Data and training seed (evaluation uses a different one).")
    output_root: str = Field("runs", description="Parent of the run directories.")
    name: str | None = Field(None, description="Run name prefix; default quickstart-<timestamp>.")
