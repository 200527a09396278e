"""The hostile-input corpus runs the real `posttrain` entry point in this process (`cli.run`,
the same handler `main` uses), so a case costs milliseconds when it fails before any model
loads. Each case asserts the exit status, that the one error line names what was wrong, that
no traceback was printed and that no partial run folder was left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from posttrain.cli import run

# Fast, deterministic runs on the tiny model (a case that trains takes seconds, not minutes).
TEST = ("--preset", "test")


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The one `error:` line (empty when there is none)."""
        lines = [x for x in self.err.splitlines() if x.startswith("error: ")]
        assert len(lines) <= 1, self.err
        return lines[0] if lines else ""


Cli = Callable[..., Outcome]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("sft", "--preset", "test", ...)` runs posttrain in `tmp_path` and returns its Outcome."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTTRAIN_STORE", raising=False)
    capsys.readouterr()

    def invoke(*args: str) -> Outcome:
        code = run([str(a) for a in args])
        cap = capsys.readouterr()
        return Outcome(code, cap.out, cap.err)

    return invoke


def leftovers(root: Path) -> list[str]:
    """Partial run folders anywhere under `root` (a failed start must leave none)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.partial"))


def refused(result: Outcome, *needles: str, root: Path | None = None, code: int = 2) -> str:
    """Assert a clean refusal: `code`, one error line naming every needle, no traceback, and no
    partial run folder under `root`. Returns the error line."""
    assert "Traceback" not in result.err + result.out, result.err
    assert result.code == code, (result.code, result.err[-2000:])
    line = result.error
    assert line, result.err
    for needle in needles:
        assert needle in line, (needle, line)
    if root is not None:
        assert leftovers(root) == []
    return line


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ALPACA = [{"instruction": f"say {i}", "output": f"{i}"} for i in range(8)]
PAIRS = [{"prompt": f"say {i}", "chosen": f"{i}", "rejected": "no"} for i in range(8)]
