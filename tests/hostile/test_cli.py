"""The one top-level handler: expected failures are one plain line and exit 2, a bug is a short
line naming a saved traceback and exit 1, and messages reach the terminal whole (no Rich markup
eating brackets, no wrapping)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.hostile.conftest import TEST, leftovers, refused


def test_an_unexpected_error_saves_its_traceback_and_exits_1(cli, monkeypatch):
    import posttrain.pipelines.runs

    def broken(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(posttrain.pipelines.runs, "list_runs", broken)
    result = cli("runs", "list")
    line = refused(result, "ZeroDivisionError", "traceback saved to", code=1)
    saved = Path(line.rsplit("traceback saved to ", 1)[1].rstrip(")"))
    try:
        text = saved.read_text()
        assert "Traceback" in text and "ZeroDivisionError" in text and "runs list" in text
    finally:
        saved.unlink()


def test_brackets_in_a_message_survive(cli, tmp_path):
    refused(cli("sft", *TEST, "--data", "[bold]rows[/].jsonl"), "[bold]rows[/].jsonl", root=tmp_path)


def test_a_long_message_stays_on_one_line(cli, tmp_path):
    name = "x" * 180 + ".jsonl"
    refused(cli("sft", *TEST, "--data", name), name, root=tmp_path)


def test_a_file_with_one_valid_row_trains_and_finishes(cli, tmp_path):
    (tmp_path / "one.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    result = cli("sft", *TEST, "--max-steps", "2", "--data", "one.jsonl", "--name", "one")
    assert result.code == 0 and "Traceback" not in result.err, result.err[-2000:]
    assert (tmp_path / "runs" / "one" / "adapter" / "adapter_model.safetensors").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("sft", *TEST, "--set", "train.scheduler=bogus", "--name", "bog"), "train.scheduler"),
        (("data", "tool-use", "--out", "rows.jsonl", "--n", "-5"), "--n"),
    ],
)
def test_a_real_process_exits_2_with_one_line(tmp_path, args, needle):
    out = run_cli(*args, cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    errors = [x for x in out.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0]
    assert leftovers(tmp_path) == []


def test_help_with_no_command_in_a_real_process(tmp_path):
    out = run_cli(cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "Usage" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_run_is_what_main_calls():
    import inspect

    import posttrain.cli

    assert "run()" in inspect.getsource(posttrain.cli.main)
    assert sys.modules["posttrain.cli"].run is posttrain.cli.run
