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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Share of rows held out for validation.")
    seed: int = Field(0, description="Seed of the train/validation split.")
    max_train: int = Field(10_000, ge=1, description="Cap on training rows (after shuffling).")
    max_val: int = Field(2_000, ge=1, description="Cap on validation rows (after shuffling).")
    max_length: int = Field(512, ge=16, description="Tokens per example; longer ones are truncated.")


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
