"""`posttrain data`: task data sets written to files, for training outside a pipeline."""

from __future__ import annotations

from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.tasks.tool_use import write_tool_use_data

SPLITS = ("train", "heldout")


def write_tool_use(out: Path, n: int, seed: int, split: str) -> Path:
    """`n` synthetic Thought→Action rows (SFT and preference) to `out`; `heldout` draws unseen tools
    and templates, so a model trained on `train` can be scored on it."""
    if split not in SPLITS:
        raise PosttrainError(f"--split must be train or heldout, got '{split}'")
    return write_tool_use_data(out, n, seed, split=split)
