"""Which model a command loads: the embedded specs, their materialized copies, and the base an
adapter was trained on."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from posttrain.models import EMBEDDED, materialize, posttrain_home
from posttrain.rundir import adapter_base_model


def models_table() -> Table:
    """Each embedded spec, what it is, and where its safetensors copy lives (`-` until the first use
    or `posttrain models materialize` writes it)."""
    rows = []
    for spec, what in EMBEDDED.items():
        path = posttrain_home() / "models" / spec
        rows.append((spec, what, str(path) if (path / ".materialized").exists() else "-"))
    table = Table()
    table.add_column("spec", no_wrap=True)
    table.add_column("what")
    table.add_column("materialized at", overflow="fold")  # a long path folds, never cut with …
    for row in rows:
        table.add_row(*row)
    return table


def materialize_model(spec: str) -> Path:
    """The directory of `spec`'s plain safetensors copy under $POSTTRAIN_HOME, written if missing."""
    return materialize(spec)


def adapter_base(adapter: str | Path) -> str | None:
    """The base model an adapter directory was saved from (its posttrain.json), so `--model` can be
    left out; None for an adapter posttrain did not write."""
    return adapter_base_model(adapter)
