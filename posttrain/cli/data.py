"""`posttrain data ...`: task data sets written to files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from posttrain.cli.options import console, writable_file

data_app = typer.Typer(help="Generate task data sets.", no_args_is_help=True)


@data_app.command("tool-use")
def data_tool_use(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Rows to generate (SFT and preference).")] = 2500,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
    split: Annotated[str, typer.Option(help="train, or heldout (unseen tools and templates).")] = "train",
    source: Annotated[
        str,
        typer.Option(
            help="react: episodes of the five executable tools; pool: requests of the function pool's "
            "families (heldout = families never trained on), in the shape `posttrain eval --data` scores."
        ),
    ] = "react",
    tools: Annotated[
        Path | None,
        typer.Option(help="A file of OpenAI function specs: rows that call YOUR tools (and no-call rows)."),
    ] = None,
) -> None:
    """Synthetic Thought→Action tool-use data: SFT rows and preference rows with one defect each,
    function-pool requests, or requests for your own tools."""
    from posttrain.pipelines.data import write_tool_use

    writable_file(out, "--out")
    console.print(f"wrote {write_tool_use(out, n, seed, split, source=source, tools=tools)}")
