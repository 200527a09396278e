"""`posttrain quickstart` config (make demo)."""

from __future__ import annotations

from pydantic import Field

from posttrain.config.constants import DEFAULT_MODEL
from posttrain.config.sections import Strict


class QuickstartConfig(Strict):
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
