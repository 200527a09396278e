"""Resuming and restarting: a failed start leaves nothing behind, a run that never trained takes
new settings, a broken saved config is named, a corrupt newest checkpoint gives way to the
previous one, and a finished or misplaced run folder is refused in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from posttrain.config import SFTConfig, load_config
from posttrain.errors import ConfigError
from posttrain.pipelines._run import resumed
from tests.hostile.conftest import TEST, leftovers, refused


def _partial(root: Path, name: str, config: str | bytes, trained: bool) -> Path:
    """A run folder as a killed run leaves it: its config.yaml, and metrics if it had trained."""
    partial = root / "runs" / f".{name}.partial"
    partial.mkdir(parents=True)
    data = config.encode() if isinstance(config, str) else config
    (partial / "config.yaml").write_bytes(data)
    if trained:
        (partial / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    return partial


def _saved(**train: object) -> str:
    cfg = load_config(SFTConfig, preset="test", extra={"train": train} if train else None)
    return yaml.safe_dump(cfg.model_dump(mode="json"))


def test_a_failed_start_can_be_rerun_under_the_same_name(cli, tmp_path):
    refused(
        cli("sft", *TEST, "--name", "x", "--set", "lora.target_modules=[nope_proj]"),
        "nope_proj",
        root=tmp_path,
    )
    # the name is free again: the next refusal is about the new bad value, not "add --resume"
    line = refused(cli("sft", *TEST, "--name", "x", "--set", "train.scheduler=bogus"), "train.scheduler")
    assert "--resume" not in line and leftovers(tmp_path) == []


def test_a_finished_run_name_is_refused(cli, tmp_path):
    (tmp_path / "runs" / "done").mkdir(parents=True)
    refused(cli("sft", *TEST, "--name", "done"), "already complete", "done")


def test_resume_of_nothing(cli, tmp_path):
    refused(cli("sft", *TEST, "--name", "ghost", "--resume"), "nothing to resume", "ghost")


def test_an_output_dir_that_is_a_file(cli, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    refused(
        cli("sft", *TEST, "--name", "x", "--output-dir", "runs", "--store", f"sqlite:///{tmp_path}/s.db"),
        "runs",
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_runs_folder(cli, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o500)
    try:
        refused(cli("sft", *TEST, "--name", "x"), "runs")
    finally:
        (tmp_path / "runs").chmod(0o700)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("train: [1, 2\n", "not valid YAML"),
        ("trainn:\n  max_steps: 3\n", "unknown key 'trainn'"),
        (b"model:\n  name: \xff\n", "UTF-8"),
        ("- a\n- b\n", "mapping"),
        ("train:\n  scheduler: bogus\n", "train.scheduler"),
    ],
)
def test_resume_of_a_trained_run_names_its_broken_config(cli, tmp_path, content, needle):
    _partial(tmp_path, "x", content, trained=True)
    refused(cli("sft", *TEST, "--name", "x", "--resume"), "config.yaml", needle)
    assert (tmp_path / "runs" / ".x.partial" / "metrics.jsonl").exists()  # the trained work is kept


def test_resume_of_a_run_that_never_trained_takes_new_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _partial(tmp_path, "x", _saved(max_steps=8), trained=False)
    cfg = load_config(SFTConfig, preset="test", overrides=["train.max_steps=3"], extra={"run": {"name": "x"}})
    assert resumed(cfg, True).train.max_steps == 3


def test_resume_of_a_run_that_never_trained_gets_past_its_broken_config(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    _partial(tmp_path, "x", "train:\n  scheduler: bogus\n", trained=False)
    cfg = load_config(SFTConfig, preset="test", extra={"run": {"name": "x"}})
    assert resumed(cfg, True) == cfg
    assert "never trained" in caplog.text


def test_resume_of_a_trained_run_keeps_its_config_and_says_set_is_ignored(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    _partial(tmp_path, "x", _saved(max_steps=8), trained=True)
    cfg = load_config(SFTConfig, preset="test", overrides=["train.max_steps=3"], extra={"run": {"name": "x"}})
    assert resumed(cfg, True).train.max_steps == 8
    assert "--set ignored" in caplog.text


def test_a_saved_config_that_is_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    partial = tmp_path / "runs" / ".x.partial"
    (partial / "config.yaml").mkdir(parents=True)
    (partial / "metrics.jsonl").write_text("{}\n")
    cfg = load_config(SFTConfig, preset="test", extra={"run": {"name": "x"}})
    with pytest.raises(ConfigError, match="config.yaml"):
        resumed(cfg, True)


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), steps  # every step logged once
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(cli, tmp_path, caplog):
    """Train 8 steps (checkpoints at 4 and 8), put the run back as a killed run would leave it
    with a truncated newest checkpoint, and resume: it warns, continues from step 4 and logs the
    same per-step losses as the uninterrupted run."""
    first = cli("sft", *TEST, "--name", "c")
    assert first.code == 0, first.err[-2000:]
    done, partial = tmp_path / "runs" / "c", tmp_path / "runs" / ".c.partial"
    reference = _losses(done)
    assert sorted(reference) == list(range(1, 9))
    os.replace(done, partial)
    for name in ("adapter", "plots"):
        shutil.rmtree(partial / name, ignore_errors=True)
    for name in ("summary.json", "report.md"):
        (partial / name).unlink(missing_ok=True)
    weights = partial / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    again = cli("sft", *TEST, "--name", "c", "--resume")
    assert again.code == 0, again.err[-2000:]
    assert "checkpoint-8" in caplog.text and "previous complete checkpoint" in caplog.text
    assert (done / "checkpoints" / "corrupt-checkpoint-8").is_dir()
    resumed_losses = _losses(done)
    assert sorted(resumed_losses) == list(range(1, 9))
    for step in range(5, 9):
        assert resumed_losses[step] == pytest.approx(reference[step], rel=1e-5), step
