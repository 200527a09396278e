"""README stays true: its generated sections match the code and bench results, and it opens
with the two commands."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _update_readme():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "bench" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_sections_are_current():
    readme = (ROOT / "README.md").read_text()
    assert _update_readme().render(readme) == readme, "run: python bench/update_readme.py"


def test_readme_opens_with_the_two_commands():
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:10])
    assert "make demo" in head and "make test" in head


def test_every_cli_command_is_documented():
    from typer.main import get_command

    from posttrain.cli import app

    readme = (ROOT / "README.md").read_text()
    group = get_command(app)
    for name, command in group.commands.items():
        subs = getattr(command, "commands", None)
        for sub in subs or [None]:
            usage = f"posttrain {name}" + (f" {sub}" if sub else "")
            assert usage in readme, f"README lacks an example of `{usage}`"
