"""`posttrain sft` / `posttrain dpo` end to end through the CLI on tiny-random, plus resume after a
real SIGKILL and the user-error paths (one line, exit 2, no traceback, nothing written)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import run_cli

TINY = ["--preset", "test"]


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_sft_cli_trains_and_writes_a_complete_run(tiny_spec, tmp_path):
    out = run_cli("sft", *TINY, "--name", "a", "--output-dir", "runs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "a"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 8
    assert summary["eval_loss"] < summary["eval_loss_before"] - 0.02
    losses = _losses(run)
    assert sorted(losses) == list(range(1, 9))
    assert sum(list(losses.values())[-3:]) / 3 < sum(list(losses.values())[:3]) / 3
    # LoRA B starts at zero, so any nonzero B proves the adapter was trained.
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    b = [t for k, t in weights.items() if "lora_B" in k]
    assert b and all(t.abs().sum() > 0 for t in b)
    for name in ("config.yaml", "report.md", "plots/loss.png", "adapter/posttrain.json"):
        assert (run / name).exists(), name
    assert not (tmp_path / "runs" / ".a.partial").exists()
    listing = run_cli("runs", "list", "--output-dir", "runs", cwd=tmp_path)
    assert listing.returncode == 0 and "completed" in listing.stdout and "a" in listing.stdout


def test_dpo_cli_on_top_of_an_sft_adapter(tiny_spec, tmp_path):
    assert run_cli("sft", *TINY, "--name", "s", "--output-dir", "runs", cwd=tmp_path).returncode == 0
    adapter = tmp_path / "runs" / "s" / "adapter"
    before = load_file(adapter / "adapter_model.safetensors")
    out = run_cli(
        "dpo",
        *TINY,
        "--adapter",
        str(adapter),
        "--name",
        "d",
        "--output-dir",
        "runs",
        "--set",
        "train.learning_rate=0.005",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "d" / "summary.json").read_text())
    assert summary["reference"] == str(adapter)
    assert summary["last_loss"] < summary["first_loss"]
    after = load_file(tmp_path / "runs" / "d" / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()  # TRL's temporary "ref" adapter is not saved
    assert any(not (before[k] == after[k]).all() for k in before)


def test_resume_after_sigkill_reproduces_the_uninterrupted_run(tiny_spec, tmp_path):
    args = [*TINY, "--output-dir", "runs", "--set", "train.save_steps=2"]
    ref = run_cli("sft", *args, "--name", "ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]

    proc = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", "sft", *args, "--name", "k"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    marker = tmp_path / "runs" / ".k.partial" / "checkpoints" / "checkpoint-4" / "CHECKPOINT_COMPLETE"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run ended before its step-4 checkpoint"
    assert not (tmp_path / "runs" / "k").exists()  # a killed run never looks complete

    again = run_cli("sft", *args, "--name", "k", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    ref_losses, resumed = _losses(tmp_path / "runs" / "ref"), _losses(tmp_path / "runs" / "k")
    assert sorted(resumed) == sorted(ref_losses)
    for step, loss in ref_losses.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-4, abs=1e-5), step
    a = load_file(tmp_path / "runs" / "ref" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "runs" / "k" / "adapter" / "adapter_model.safetensors")
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key


def test_bad_data_is_one_line_error_before_training(tiny_spec, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n')
    out = run_cli("sft", *TINY, "--data", str(bad), "--output-dir", "runs", cwd=tmp_path)
    assert out.returncode == 2
    assert f'{bad}:2: field "output"' in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "train.learnig_rate=1e-4"], "did you mean 'train.learning_rate'"),
        (["--set", "train.batch_size=zero"], "train.batch_size"),
        (["--preset", "tset"], "did you mean 'test'"),
    ],
)
def test_config_errors_are_one_line(tmp_path, args, needle):
    out = run_cli("sft", *args, cwd=tmp_path)
    assert out.returncode == 2
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_unfinished_run_is_not_clobbered(tiny_spec, tmp_path):
    (tmp_path / "runs" / ".x.partial").mkdir(parents=True)
    out = run_cli("sft", *TINY, "--name", "x", "--output-dir", "runs", cwd=tmp_path)
    assert out.returncode == 2 and "--resume" in out.stderr
