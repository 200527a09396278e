"""`posttrain runs ...`: the runs recorded in the history store."""

from __future__ import annotations

from typing import Annotated

import typer

from posttrain.cli.options import StoreOpt, console

runs_app = typer.Typer(help="Runs recorded in the history store.", no_args_is_help=True)

StoreDirOpt = Annotated[str, typer.Option(help="Where the default store lives.")]


@runs_app.command("list")
def runs_list(
    store: StoreOpt = None,
    output_dir: StoreDirOpt = "runs",
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 50,
) -> None:
    """Runs in the store, newest first."""
    from posttrain.pipelines.runs import list_runs

    console.print(list_runs(store, output_dir, limit))


@runs_app.command("show")
def runs_show(
    run: Annotated[str, typer.Argument(help="Run id or run name, as `posttrain runs list` shows them.")],
    store: StoreOpt = None,
    output_dir: StoreDirOpt = "runs",
) -> None:
    """One run by id or name: fields, final metrics, episodes, executor task attempts and config."""
    from posttrain.pipelines.runs import show_run

    console.print(show_run(run, store, output_dir))
