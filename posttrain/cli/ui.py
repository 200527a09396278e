"""`posttrain ui`: the local dashboard over the history store and the run folders."""

from __future__ import annotations

from typing import Annotated

import typer

from posttrain.cli.options import StoreOpt

RunsOpt = Annotated[str, typer.Option("--runs", help="Folder of the runs (and of the default store).")]
HostOpt = Annotated[str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless you mean to share.")]


def ui(
    store: StoreOpt = None,
    runs: RunsOpt = "runs",
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
) -> None:
    """A local web page of every run: curves, and for tune runs each agent's decisions."""
    from posttrain.pipelines.ui import serve_ui

    serve_ui(store, runs, host, port)
