"""A few real SFT steps on the embedded SmolLM2-135M (materialized from the wheel's GGUF)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_sft_on_smollm2_lowers_eval_loss(tmp_path):
    out = run_cli(
        "sft",
        "--model",
        "smollm2-135m",
        "--max-steps",
        "4",
        "--name",
        "s",
        "--output-dir",
        "runs",
        "--set",
        "data.max_train=48",
        "--set",
        "data.max_val=16",
        "--set",
        "data.max_length=256",
        "--set",
        "train.learning_rate=5e-4",
        "--set",
        "train.warmup_ratio=0",
        cwd=tmp_path,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())
    assert summary["eval_loss"] < summary["eval_loss_before"]
    assert 1.0 < summary["perplexity"] < summary["perplexity_before"] < 1e3
    assert summary["sample_generation"].strip()  # a real model says something
