"""`posttrain data ...`: task data sets written to files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from posttrain.cli.options import console

data_app = typer.Typer(help="Generate task data sets.", no_args_is_help=True)


@data_app.command("tool-use")
def data_tool_use(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    n: Annotated[int, typer.Option("--n", help="Rows to generate (SFT and preference).")] = 2500,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
    split: Annotated[str, typer.Option(help="train, or heldout (unseen tools and templates).")] = "train",
) -> None:
    """Synthetic Thought→Action tool-use data: SFT rows and preference rows with one defect each."""
    from posttrain.pipelines.data import write_tool_use

    console.print(f"wrote {write_tool_use(out, n, seed, split)}")
