"""`posttrain sft` and `posttrain dpo` configs."""

from __future__ import annotations

from pydantic import Field

from posttrain.config.sections import (
    DataSettings,
    LoraSettings,
    ModelSettings,
    RunSettings,
    Strict,
    TrainSettings,
)


class SFTConfig(Strict):
    """`posttrain sft`: LoRA supervised fine-tuning with loss on the completion only."""

    model: ModelSettings = Field(
        default_factory=ModelSettings, description="Which model and how to place it."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter shape.")
    data: DataSettings = Field(default_factory=DataSettings, description="Training data and split.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Optimisation.")
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")


class DPOSettings(Strict):
    beta: float = Field(0.1, gt=0.0, description="DPO temperature: higher stays closer to the reference.")
    loss_type: str = Field("sigmoid", description="TRL DPO loss type (sigmoid, ipo, hinge, ...).")
    adapter: str | None = Field(
        None, description="SFT adapter to start from; it is also the frozen reference. None = base model."
    )


class DPOConfig(Strict):
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
