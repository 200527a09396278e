"""`posttrain sft` and `posttrain dpo` configs."""

from __future__ import annotations

from pydantic import Field, field_validator

from posttrain.config.sections import (
    DataSettings,
    DPOLoss,
    LoraSettings,
    ModelSettings,
    OptimSettings,
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


class DPOTrainSettings(OptimSettings):
    """DPO starts from a model that already follows instructions, so its step is a quarter of SFT's."""

    learning_rate: float = Field(5e-5, gt=0.0, description="Peak learning rate.")
    packing: bool = Field(
        False,
        description="Always false: TRL 1.16 disabled DPO's padding_free, so pairs are padded.",
    )

    @field_validator("packing")
    @classmethod
    def _no_packing(cls, value: bool) -> bool:
        # The key exists so `train.packing` means the same in every recipe; accepting true and
        # padding anyway would silently ignore it.
        if value:
            raise ValueError("DPO cannot pack pairs with TRL 1.16 (its padding_free is disabled); use false")
        return value


class DPOSettings(Strict):
    beta: float = Field(0.1, gt=0.0, description="DPO temperature: higher stays closer to the reference.")
    loss_type: DPOLoss = Field(
        "sigmoid",
        description="TRL DPO loss type (sigmoid, ipo, hinge, ...); 'sigmoid+sft' adds an NLL term on the "
        "chosen answer (RPO), which keeps DPO from unlearning what SFT taught.",
    )
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
    train: DPOTrainSettings = Field(default_factory=DPOTrainSettings, description="Optimisation.")
    dpo: DPOSettings = Field(default_factory=DPOSettings, description="DPO objective.")
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")
