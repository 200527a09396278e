"""`posttrain models ...` and `posttrain doctor`: the models posttrain can load and the machine
it would run them on."""

from __future__ import annotations

from typing import Annotated

import typer

from posttrain.cli.options import console

models_app = typer.Typer(help="Embedded and local models.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """Embedded model specs and whether they are materialized."""
    from posttrain.pipelines.doctor import print_whole
    from posttrain.pipelines.models import models_table

    print_whole(models_table())  # a path whole on one line in a pipe, folded (never cut) on a terminal
    console.print("Any Hugging Face hub id or local model directory works as --model too.")


@models_app.command("materialize")
def models_materialize(
    spec: Annotated[str, typer.Argument(help="smollm2-135m or tiny-random")] = "smollm2-135m",
) -> None:
    """Write the plain safetensors copy of an embedded model under $POSTTRAIN_HOME."""
    from posttrain.pipelines.models import materialize_model

    console.print(f"{spec}: {materialize_model(spec)}")


def doctor() -> None:
    """What this machine will use and why: device, dtype, attention, kernels, store, versions."""
    from posttrain.pipelines.doctor import run_doctor

    run_doctor()
