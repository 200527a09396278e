"""The `posttrain` command line: parse → load config → call one pipeline function.

Commands live in train.py (training recipes), inference.py (use a model), models.py, runs.py and
data.py; they are registered here on one `app`, in the order `posttrain --help` lists them."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from posttrain.cli.data import data_app
from posttrain.cli.inference import chat, eval_, generate, serve
from posttrain.cli.models import doctor, models_app
from posttrain.cli.options import SEED_FLAGS
from posttrain.cli.runs import runs_app
from posttrain.cli.train import align, dpo, quickstart, rlhf, seal, sft, tune
from posttrain.errors import PosttrainError

app = typer.Typer(
    help="Agentic post-training for language models: LoRA SFT, DPO, RL and SEAL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (sft, dpo, generate, chat, quickstart, tune, serve):
    app.command()(command)
for command in (rlhf, seal):
    app.command(context_settings=SEED_FLAGS)(command)
app.command()(doctor)
app.command()(align)
app.command("eval")(eval_)
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")


def main() -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback."""
    from posttrain.pipelines.terminal import quiet_libraries

    quiet_libraries()
    try:
        app()
    except PosttrainError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
