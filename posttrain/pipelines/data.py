"""`posttrain data`: task data sets written to files, for training outside a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.tasks.tool_use import write_tool_use_data
from posttrain.tasks.tool_use.pool_rows import pool_rows
from posttrain.tasks.tool_use.user_rows import user_tool_rows
from posttrain.toolcall import load_tools

SPLITS = ("train", "heldout")
SOURCES = ("react", "pool")


def write_tool_use(
    out: Path, n: int, seed: int, split: str, *, source: str = "react", tools: Path | None = None
) -> Path:
    """`n` synthetic Thought→Action rows to `out`.

    `react`: SFT and preference rows of whole episodes; `heldout` draws unseen tools and templates.
    `pool`: function-pool requests (`heldout` = families never trained on). `tools`: requests for
    the tools in that file. Pool and user rows carry `messages`, `tools` and BFCL-shaped `gold`,
    so `posttrain eval --task tool_use --data` scores them as they are.
    """
    if split not in SPLITS:
        raise PosttrainError(f"--split must be train or heldout, got '{split}'")
    if source not in SOURCES:
        raise PosttrainError(f"--source must be one of {', '.join(SOURCES)}, got '{source}'")
    if tools is None and source == "react":
        return write_tool_use_data(out, n, seed, split=split)
    rows = user_tool_rows(load_tools(tools), n, seed) if tools is not None else pool_rows(n, seed, split)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out
