"""ARC self-edits: the `ArcSelfEdit` config, the prompt asking for one, and a forgiving parser."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from posttrain.tasks.arc.grids import ArcTask
from posttrain.tasks.arc.prompts import Strategy, examples_text

LR_RANGE = (1e-5, 1e-2)
EPOCH_RANGE = (1, 10)


class ArcSelfEdit(BaseModel):
    """A self-edit for ARC: which augmentations to train on and how. Out-of-range values clamp."""

    model_config = ConfigDict(extra="forbid")

    basic: bool = Field(True, description="add rotated, flipped and transposed copies of the pairs")
    size: bool = Field(False, description="add copies with every cell enlarged (2x2, 2x1, 1x2 blocks)")
    chain: bool = Field(False, description="add copies under composed ops (geometric then 2x upscale)")
    repeat: bool = Field(False, description="add copies with the grids tiled twice down/across/both")
    strategy: Strategy = Field(
        "output_tokens", description="loss on the answer grids only, or on every token of the prompt too"
    )
    learning_rate: float = Field(1e-4, description=f"LoRA learning rate, clamped to {list(LR_RANGE)}")
    num_train_epochs: int = Field(3, description=f"epochs over the rows, clamped to {list(EPOCH_RANGE)}")

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_").replace(" ", "_")
            key = key.removeprefix("train_using_")
            return {"all": "all_tokens", "output": "output_tokens", "outputs": "output_tokens"}.get(key, key)
        return value

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _clamp_lr(cls, value: Any) -> float:
        lr = _number(value)
        return min(max(lr, LR_RANGE[0]), LR_RANGE[1])

    @field_validator("num_train_epochs", mode="before")
    @classmethod
    def _clamp_epochs(cls, value: Any) -> int:
        epochs = round(_number(value))
        return min(max(epochs, EPOCH_RANGE[0]), EPOCH_RANGE[1])

    def to_text(self) -> str:
        """Canonical JSON, the form to train the generator on in the ReST-EM M-step."""
        return json.dumps(self.model_dump(), separators=(", ", ": "))


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    number = float(value)  # "3e-4" and 3 both fine; "fast" raises ValueError
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


_FIELD_ALIASES = {
    "basic": "basic",
    "use_basic_augmenters": "basic",
    "size": "size",
    "use_size_augmenters": "size",
    "chain": "chain",
    "use_chain_augmenters": "chain",
    "repeat": "repeat",
    "use_repeat_augmenters": "repeat",
    "strategy": "strategy",
    "training_strategy": "strategy",
    "learning_rate": "learning_rate",
    "lr": "learning_rate",
    "num_train_epochs": "num_train_epochs",
    "epochs": "num_train_epochs",
    "num_epochs": "num_train_epochs",
}
# key: value pairs, quoted or not, with JSON or Python literals; used on truncated or sloppy JSON.
_PAIR = re.compile(r"""["']?(\w+)["']?\s*[:=]\s*("[^"\n]*"|'[^'\n]*'|[-+\w.]+)""")


def parse_self_edit(text: str) -> ArcSelfEdit | None:
    """Read a self-edit config from model output; None when nothing usable is in it.

    Finds the first JSON object in surrounding prose (nested objects such as SEAL's
    {"data_generation": {...}, "training": {...}} are flattened, and the official key names
    `use_basic_augmenters`, `lr`, `epochs`, ... are understood). When no complete object
    parses (truncated output, Python literals) it salvages the complete `key: value` pairs.
    Numbers out of range are clamped; a field whose value is unusable takes its default; a
    text with no recognised field gives None.
    """
    if not isinstance(text, str):
        return None
    fields = _known_fields(_first_object(text) or {})
    if not fields:
        fields = _known_fields(dict(_salvage(text)))
    good = {}
    for name, value in fields.items():
        try:
            ArcSelfEdit.model_validate({name: value})
        except ValidationError:
            continue
        good[name] = value
    return ArcSelfEdit.model_validate(good) if good else None


def _first_object(text: str) -> dict | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and _known_fields(value):
            return value
    return None


def _known_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, Mapping):
            for name, inner in _known_fields(value).items():
                found.setdefault(name, inner)
        elif isinstance(key, str) and key.strip().lower() in _FIELD_ALIASES:
            found.setdefault(_FIELD_ALIASES[key.strip().lower()], value)
    return found


def _salvage(text: str) -> list[tuple[str, Any]]:
    literals = {"true": True, "false": False, "yes": True, "no": False, "null": None, "none": None}
    pairs = []
    for key, raw in _PAIR.findall(text):
        if raw[0] in "\"'":
            value: Any = raw[1:-1]
        elif raw.lower() in literals:
            value = literals[raw.lower()]
        else:
            try:
                value = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            except ValueError:
                value = raw
        pairs.append((key, value))
    return pairs


def self_edit_prompt(task: ArcTask) -> list[dict]:
    """Chat messages showing the train pairs and asking for an ArcSelfEdit as JSON."""
    example = ArcSelfEdit().to_text()
    content = (
        f"Training examples of a grid puzzle:\n\n{examples_text(task.train)}\n\n"
        "Choose how to fine-tune a model on these examples. Options: basic (add rotated and flipped "
        "copies), size (add enlarged copies), chain (add combined transforms), repeat (add tiled "
        'copies), strategy ("all_tokens" or "output_tokens": train on whole prompts or on answers '
        f"only), learning_rate ({LR_RANGE[0]:g} to {LR_RANGE[1]:g}), num_train_epochs "
        f"({EPOCH_RANGE[0]} to {EPOCH_RANGE[1]}). Reply with JSON only, like:\n{example}"
    )
    return [{"role": "user", "content": content}]


create_self_edit_prompt = self_edit_prompt
