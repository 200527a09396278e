"""`posttrain quickstart` config (make demo): the shared `model` and `run` sections plus the demo's budget.

Before the one-house schema the quickstart's keys were flat: `model: <spec>`, `name`,
`output_root`. They still load, with a deprecation note, as `model.name`, `run.name` and
`run.output_root`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from posttrain.config.aliases import Alias, note, rename_aliases
from posttrain.config.sections import ModelSettings, RunSettings, Strict

QUICKSTART_ALIASES: dict[str, Alias] = {"name": "run.name", "output_root": "run.output_root"}


class QuickstartConfig(Strict):
    """`posttrain quickstart`: tool-use data → 3 agentic episodes with SEAL → DPO → compliance table."""

    model: ModelSettings = Field(
        default_factory=ModelSettings, description="Which model to tune and how to place it."
    )
    rows: int = Field(400, ge=20, description="tool_use rows to generate (SFT and preference).")
    episodes: int = Field(3, ge=1, description="Agentic episodes (each a TRAIN and a SEAL stage).")
    trial_steps: int = Field(4, ge=1, description="Optimizer steps per TRAIN and per SEAL training.")
    dpo_steps: int = Field(6, ge=1, description="DPO steps on the best adapter.")
    pool_rows: int = Field(
        200, ge=0, description="Function-pool requests (training tool families) added to the tool_use rows."
    )
    eval_episodes: int = Field(8, ge=1, description="Held-out tool-use episodes scored per model.")
    eval_items: int = Field(
        32, ge=1, description="Requests of tool families never trained on, scored per model (the headline)."
    )
    max_length: int = Field(512, ge=64, description="Tokens per training row.")
    seed: int = Field(42, description="Data and training seed (evaluation uses a different one).")
    run: RunSettings = Field(
        default_factory=RunSettings,
        description="run.name prefixes the three directories (default quickstart-<timestamp>); the tune "
        "and DPO runs record in run.store.",
    )

    scalar_sections: ClassVar[frozenset[str]] = frozenset({"model"})
    """Sections an old config may give as one value (`model: NAME`); `_flat_spellings` maps them."""

    @model_validator(mode="before")
    @classmethod
    def _flat_spellings(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            note("model", "model.name")
            data = {**data, "model": {"name": data["model"]}}
        return rename_aliases(data, QUICKSTART_ALIASES)
