"""The quickstart (make demo's job) end to end on tiny-random at the smallest budget."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_quickstart_writes_the_compliance_table(tiny_spec, tmp_path):
    out = run_cli(
        "quickstart",
        "--model",
        "tiny-random",
        "--rows",
        "30",
        "--episodes",
        "1",
        "--trial-steps",
        "1",
        "--dpo-steps",
        "1",
        "--eval-episodes",
        "1",
        "--name",
        "q",
        "--output-dir",
        "runs",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = json.loads((tmp_path / "runs" / "q" / "compliance.json").read_text())
    assert set(table) == {"base", "tuned", "dpo"}
    for metrics in table.values():
        assert metrics["n"] >= 1 and 0.0 <= metrics["full_compliance"] <= 1.0
    assert "| model | full_compliance |" in (tmp_path / "runs" / "q" / "report.md").read_text()
    assert (tmp_path / "runs" / "q-tune" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "runs" / "q-dpo" / "adapter" / "adapter_config.json").exists()
