"""The `posttrain` command line: parse → load config → call one pipeline function.

Commands live in train.py (training recipes), inference.py (use a model), models.py, runs.py and
data.py; they are registered here on one `app`, in the order `posttrain --help` lists them."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import typer
from typer.exceptions import Abort, TyperException

from posttrain.cli.data import data_app
from posttrain.cli.export import export
from posttrain.cli.inference import chat, eval_, generate, serve
from posttrain.cli.models import doctor, models_app
from posttrain.cli.options import SEED_FLAGS
from posttrain.cli.runs import runs_app
from posttrain.cli.train import align, dpo, quickstart, rlhf, seal, sft, tune
from posttrain.cli.ui import ui
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
app.command()(export)
app.command()(ui)
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")


def run(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status; nothing escapes as a traceback.

    Expected failures (a `PosttrainError`, a bad flag, a file the OS refuses) print one plain
    line `error: ...` to stderr and give 2. Anything else is a bug: its traceback goes to a file
    whose path the one line names, and the status is 1. The line is written without Rich, whose
    markup would eat `[...]` in a message and whose wrapping would split paths.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = app(args=argv, prog_name="posttrain", standalone_mode=False)
    except TyperException as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
            return 2
        got = _given(argv, getattr(err, "param", None))
        hint = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
        return _fail(f"{err.format_message()}{got}{hint}", 2)
    except PosttrainError as err:
        return _fail(str(err), 2)
    except (KeyboardInterrupt, Abort):
        sys.stderr.write("interrupted\n")
        return 130
    except OSError as err:  # the OS refused a path the user named: full disk, permissions, a folder
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 2)
    except Exception as err:
        path = save_traceback(argv)
        return _fail(f"unexpected {type(err).__name__}: {_first_line(err)} (traceback saved to {path})", 1)
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback."""
    from posttrain.pipelines.terminal import quiet_libraries

    quiet_libraries()
    sys.exit(run())


def _given(argv: list[str], param: object) -> str:
    """` (got 'VALUE')` for the flag a bad-value error is about, as the user typed it; typer's own
    message names the flag and the rule but not the value."""
    for opt in getattr(param, "opts", []) or []:
        for i, arg in enumerate(argv):
            if arg == opt and i + 1 < len(argv):
                return f" (got '{argv[i + 1]}')"
            if arg.startswith(opt + "="):
                return f" (got '{arg[len(opt) + 1 :]}')"
    return ""


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return code


def save_traceback(argv: list[str]) -> Path:
    """Write the exception being handled to a file a bug report can attach; returns its path."""
    fd, name = tempfile.mkstemp(prefix="posttrain-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"posttrain {' '.join(argv)}\n\n{traceback.format_exc()}")
    return Path(name)


__all__ = ["app", "main", "run"]
