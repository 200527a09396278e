"""What every command shares: the option types (one spelling, one help text each), the mapping of
shortcut flags onto config keys, and how a command ends (summary table, exit status)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML or JSON config file.")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="A preset shipped in posttrain/presets.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override: key.sub=value (repeatable).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="smollm2-135m, tiny-random, hub id or dir.")
]
DataOpt = Annotated[str | None, typer.Option("--data", help="Training data file (default: bundled sample).")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Run name (directory under --output-dir).")]
OutOpt = Annotated[str | None, typer.Option("--output-dir", help="Parent directory of runs (default runs).")]
StepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store URL (default sqlite in the output dir).")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the killed run named by --name.")]
LauncherOpt = Annotated[
    str,
    typer.Option(
        "--launcher", help="none: train in this process; accelerate: --num-processes ranks via accelerate."
    ),
]
NumProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--num-processes",
        help="With --launcher accelerate: processes (one per GPU; gloo on CPU). The global batch is kept.",
    ),
]
DeepspeedOpt = Annotated[
    str | None,
    typer.Option("--deepspeed", help="With --launcher accelerate: zero2 or zero3 (DeepSpeed ZeRO)."),
]
FsdpOpt = Annotated[
    bool, typer.Option("--fsdp", help="With --launcher accelerate: shard the model with FSDP2.")
]
AdapterOpt = Annotated[Path | None, typer.Option(help="PEFT adapter directory.")]

# Seed-style flags (`--sft_epochs 2`) arrive undeclared in ctx.args, so --help shows one style only.
SEED_FLAGS = {"allow_extra_args": True, "ignore_unknown_options": True}

_FLAG_KEYS = {
    "model": ("model", "name"),
    "data": ("data", "path"),
    "name": ("run", "name"),
    "output_dir": ("run", "output_root"),
    "store": ("run", "store"),
    "max_steps": ("train", "max_steps"),
    "adapter": ("dpo", "adapter"),
}


def writable_file(path: Path, flag: str) -> None:
    """Refuse an output path that cannot become a file, before any work whose result it would hold."""
    from posttrain.errors import PosttrainError

    if path.is_dir():
        raise PosttrainError(f"{flag} {path}: is a directory; give a file name such as {path / 'out.jsonl'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise PosttrainError(f"{flag} {path}: {path.parent} is a file, not a folder")


def flags(**values: Any) -> dict[str, Any]:
    """CLI shortcuts as a nested config dict; only flags the user gave, so a preset's value stands
    wherever the flag was left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is not None:
            section, field = _FLAG_KEYS[key]
            out.setdefault(section, {})[field] = value
    return out


def relaunch(ctx: typer.Context, plan: Any, cfg: Any) -> None:
    """Run this very command as the plan's ranks and exit with their status."""
    from posttrain.launch import command_args, launch_target, relaunch

    raise typer.Exit(relaunch(plan, command_args(ctx), launch_target(cfg)))


def show_summary(title: str, summary: dict[str, Any], *, exit_unless_completed: bool = False) -> None:
    """The run's summary table; exit status 3 when asked and the run did not complete (diverged,
    stopped), so scripts can tell a finished run from a failed one without reading the table."""
    from posttrain.report.console import summary_table

    table = summary_table(title, summary)
    if table is not None:
        console.print(table)
    if exit_unless_completed and summary["status"] != "completed":
        raise typer.Exit(3)
