"""`posttrain export`: a trained run as a merged model, a portable adapter or a GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from posttrain.cli.options import console


def export(
    target: Annotated[
        str, typer.Argument(help="A run name (under --output-dir), a run folder, or an adapter folder.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to create; refused if it exists and is not empty.")
    ],
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Merge the adapter into its base: a standalone Transformers model "
            "(AutoModelForCausalLM, vLLM, transformers serve). Without it: the adapter, naming its "
            "base by the public hub id.",
        ),
    ] = False,
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="bf16, fp16 or fp32 (default: fp32 merged, the adapter as saved)."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="hf (safetensors folder) or gguf (merged; needs llama.cpp's converter)."
        ),
    ] = "hf",
    output_dir: Annotated[str, typer.Option(help="Where runs named by TARGET live.")] = "runs",
) -> None:
    """Export a trained run or adapter for use outside posttrain; written atomically."""
    from posttrain.pipelines.export import run_export

    path = run_export(target, out, merge=merge, dtype=dtype, fmt=fmt, output_root=output_dir)
    console.print(f"exported {target} to {path}")
