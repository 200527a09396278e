"""`posttrain rlhf` end to end through the CLI on tiny-random: both stages with every technique on,
RLOO, resume after a real SIGKILL of the RL stage, and the one-line user errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from posttrain.tasks.conversations import (
    curriculum_order,
    read_scored_conversations,
    sample_path,
    score_pairs,
    split_by_prompt,
    to_prompts,
    to_sft_rows,
)
from tests.conftest import run_cli

TINY = ["--preset", "rlhf_test", "--output_dir", "runs"]
COMPONENTS = ("adlf/external", "adlf/internal", "adlf/coherence", "adlf/length", "adlf/faithfulness")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _rl_steps(run: Path) -> list[dict]:
    return [r for r in _rows(run / "metrics_rl.jsonl") if "loss" in r]


@pytest.fixture(scope="module")
def tiny_reward_model(tiny_spec, tiny_tokenizer, tmp_path_factory) -> Path:
    """A reward model trained once in-process, so the tests that are not about it skip that stage."""
    from posttrain.train.args import RewardModelArgs
    from posttrain.train.reward_model import train_reward_model

    out = tmp_path_factory.mktemp("rm")
    train, _ = split_by_prompt(read_scored_conversations(sample_path()), 0.05, 0)
    norm = [(r["prompt"], r["completion"]) for r in to_sft_rows(train[:32], "standard")]
    hp = RewardModelArgs(max_steps=2, learning_rate=3e-3, lora_r=8, lora_alpha=16, save_steps=100)
    result = train_reward_model(
        tiny_spec, tiny_tokenizer, score_pairs(train)[:16], norm, out / "rm", out / "ckpt", hp
    )
    assert result.status == "completed"
    return out / "rm"


def test_sft_then_grpo_with_every_technique(tiny_spec, tmp_path):
    out = run_cli(
        "rlhf",
        *TINY,
        "--name",
        "a",
        "--run_sft",
        "--run_rlhf",
        "--ppo_batch_size",
        "2",
        "--adlf_alpha",
        "0.4",
        "--use_dynamic_kl",
        "--kl_target",
        "0.5",
        "--use_curriculum",
        "--use_multi_objective",
        "--use_contrastive",
        "--use_self_critique",
        "--scheduler",
        "cosine_with_restarts",
        "--cosine_cycles",
        "2",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "a"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert (summary["sft_steps"], summary["rm_steps"], summary["rl_steps"]) == (2, 2, 2)
    assert summary["sft_critique_rows"] > 0 and summary["rm_pairs"] > 0
    lo, hi = summary["reward_gain_ci"]
    assert lo <= summary["reward_gain"] <= hi
    assert summary["reward_gain"] == pytest.approx(summary["rl_reward_mean"] - summary["sft_reward_mean"])
    for name in (
        "config.yaml",
        "report.md",
        "metrics.jsonl",
        "rollouts.jsonl",
        "eval_heldout.jsonl",
        "plots/rewards.png",
        "plots/kl_beta.png",
        "plots/lengths.png",
        "plots/sft_loss.png",
        "sft_adapter/adapter_model.safetensors",
        "reward_model/reward_model.json",
        "adapter/posttrain.json",
    ):
        assert (run / name).exists(), name

    steps = _rl_steps(run)
    assert [r["step"] for r in steps] == [1, 2]
    for row in steps:
        for key in (*COMPONENTS, "adlf/fluency", "adlf/quality", "kl", "beta", "reward", "contrastive/loss"):
            assert isinstance(row.get(key), float), (key, row)
        # ADLF: reward = (1 - alpha) external + alpha internal, per step means.
        expected = 0.6 * row["adlf/external"] + 0.4 * row["adlf/internal"]
        assert row["reward"] == pytest.approx(expected, abs=1e-5)
    # The KL is far below its target, so the controller lowers beta after every step.
    assert steps[0]["beta"] == 0.05 and steps[1]["beta"] < steps[0]["beta"]
    assert summary["beta_final"] < steps[1]["beta"]
    stages = {r["stage"] for r in _rows(run / "metrics.jsonl")}
    assert stages == {"sft", "reward_model", "rl"}

    # Curriculum: the first RL step trained on the two easiest training prompts.
    train, _ = split_by_prompt(read_scored_conversations(sample_path()), 0.05, 0)
    easiest = [r["context"] for r in to_prompts(curriculum_order(train, "score"), "standard")[:2]]
    first = [r["context"] for r in _rows(run / "rollouts.jsonl") if r["step"] == 1]
    assert first == [easiest[0]] * 2 + [easiest[1]] * 2

    # RL moved the adapter away from the SFT adapter it started from, and TRL's "ref" copy is not saved.
    sft = load_file(run / "sft_adapter" / "adapter_model.safetensors")
    final = load_file(run / "adapter" / "adapter_model.safetensors")
    assert sft.keys() == final.keys() and not (run / "adapter" / "ref").exists()
    assert any(not (sft[k] == final[k]).all() for k in sft)

    report = (run / "report.md").read_text()
    assert "## RL per step" in report and "95% bootstrap CI" in report
    from posttrain.store import Store

    store = Store(f"sqlite:///{tmp_path / 'runs' / 'posttrain.db'}")
    record = store.find_run("a")
    assert record.status == "completed" and record.metrics["rl_steps"] == 2
    episodes = store.list_episodes(record.id)
    assert [e.kind for e in episodes] == ["sft", "reward_model", "rl"]
    assert [s["step"] for s in episodes[2].metrics["per_step"] if "loss" in s] == [1, 2]


def test_rloo_runs_a_step_with_marker_tokens(tiny_reward_model, tmp_path):
    out = run_cli(
        "rlhf",
        *TINY,
        "--name",
        "r",
        "--run_rlhf",
        "--algo",
        "rloo",
        "--rl_max_steps",
        "1",
        "--token_format",
        "role_markers",
        "--set",
        f"reward_model.path={tiny_reward_model}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == "rloo" and summary["rl_steps"] == 1 and "sft_steps" not in summary
    (row,) = _rl_steps(run)
    assert all(isinstance(row.get(k), float) for k in (*COMPONENTS, "kl", "beta"))
    assert row["beta"] == 0.05  # dynamic KL off: beta stays at init_kl_coef
    rollout = _rows(run / "rollouts.jsonl")[0]
    assert "<|" not in rollout["context"]  # text metrics read the prompt's plain text, not the markers


def test_resume_after_sigkill_skips_sft_and_continues_rl_with_its_beta(tiny_reward_model, tmp_path):
    args = [
        "rlhf",
        *TINY,
        "--name",
        "k",
        "--run-sft",
        "--run-rlhf",
        "--max-steps",
        "4",
        "--set",
        "rl.dynamic_kl=true",
        "--set",
        "rl.kl_target=1.0",
        "--set",
        "rl.kl_horizon=2",
        "--set",
        f"reward_model.path={tiny_reward_model}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    partial = tmp_path / "runs" / ".k.partial"
    marker = partial / "checkpoints" / "rl" / "checkpoint-2" / "CHECKPOINT_COMPLETE"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run ended before its step-2 RL checkpoint"
    assert not (tmp_path / "runs" / "k").exists()
    saved_beta = json.loads((marker.parent / "kl_controller.json").read_text())["controller"]["beta"]
    before = {r["step"]: r for r in _rl_steps(partial)}
    assert saved_beta < 0.05  # two steps far below the target already lowered beta

    again = run_cli(*args, "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    run = tmp_path / "runs" / "k"
    steps = _rl_steps(run)
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # each step once, none redone from scratch
    for step in (1, 2):
        assert steps[step - 1] == before[step]
    assert steps[2]["beta"] == pytest.approx(saved_beta)  # step 3 ran with the checkpointed beta
    assert steps[3]["beta"] < steps[2]["beta"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rl_resumed_from_step"] == 2 and summary["status"] == "completed"
    # The SFT stage had finished before the kill: it is not run again, its numbers are kept.
    assert summary["sft_steps"] == 2
    assert [r["step"] for r in _rows(run / "metrics_sft.jsonl") if "loss" in r] == [1, 2]
    assert sorted({r["step"] for r in _rows(run / "rollouts.jsonl")}) == [1, 2, 3, 4]


def test_bad_data_is_one_line_error_before_any_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = {"conversation": [{"role": "human", "content": "Q?"}, {"role": "assistant", "content": "A."}]}
    bad.write_text(json.dumps({**good, "meta_eval_score": 4}) + "\n" + json.dumps(good) + "\n")
    out = run_cli("rlhf", *TINY, "--run_sft", "--data_path", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert f'{bad}:2: field "meta_eval_score" is missing' in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "nothing to do: add --run-sft and/or --run-rlhf"),
        (["--run-sft", "--set", "rl.epoch=2"], "did you mean 'rl.epochs'"),
        (["--run-sft", "--sft_epoch", "2"], "no such option '--sft_epoch' (did you mean '--sft_epochs'?)"),
        (["--run_sft", "--ppo_epochs", "1", "--rl_epochs", "2"], "both set 'rl.epochs'; choose one"),
    ],
)
def test_config_errors_are_one_line(tmp_path, args, needle):
    out = run_cli("rlhf", *TINY, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert needle in out.stderr and "Traceback" not in out.stderr


SEED_ARGV = ["--run_sft", "--data_path", "X.jsonl", "--sft_epochs", "2", "--ppo_epochs", "1"]
SEED_ARGV += ["--ppo_batch_size", "3", "--use_dynamic_kl", "--use_curriculum", "--no_use_length_penalty"]
SEED_ARGV += ["--sft_learning_rate", "1e-4", "--model_name", "M", "--output_dir", "D", "--fp16"]
NEW_KEYS = {
    "sft": {"enabled": True, "epochs": 2, "learning_rate": 1e-4},
    "data": {"path": "X.jsonl"},
    "rl": {"epochs": 1, "batch_size": 3, "dynamic_kl": True, "curriculum": "score"},
    "adlf": {"length_penalty": False},
    "model": {"name": "M", "dtype": "float16"},
    "run": {"output_root": "D", "name": "N"},
}


def test_seed_flags_parse_to_the_same_config_as_the_new_spelling(capsys):
    from posttrain.config import RLHF_ALIASES, RLHFConfig, flags_to_overrides, load_config, rename_overrides

    extra = flags_to_overrides(SEED_ARGV, RLHFConfig, RLHF_ALIASES, "rlhf", over={"run": {"name": "N"}})
    sets = rename_overrides(["sft_max_steps=5", "reward_model.lora_r=4"], RLHF_ALIASES)
    seed = load_config(RLHFConfig, preset="rlhf_test", overrides=sets, extra=extra)
    sets = ["sft.max_steps=5", "reward_model.lora.r=4"]
    assert seed == load_config(RLHFConfig, preset="rlhf_test", overrides=sets, extra=NEW_KEYS)
    err = capsys.readouterr().err
    assert "note: 'sft_learning_rate' is deprecated; use 'sft.learning_rate'" in err
    assert "note: 'reward_model.lora_r' is deprecated; use 'reward_model.lora.r'" in err
    # YAML keys take the seed's spellings too, and a seed switch may be turned off.
    old = RLHFConfig.model_validate({"ppo_epochs": 3, "use_multi_objective": True, "use_wandb": False})
    assert (old.rl.epochs, old.adlf.multi_objective, old.train.report_to) == (3.0, True, "none")


def test_a_seed_style_command_runs_as_written(tmp_path):
    """Seed 003's own command line (snake_case flags) still runs; every old flag prints its new key."""
    argv = ["--run_sft", "--data_path", sample_path(), "--sft_epochs", "2", "--sft_max_steps", "1"]
    argv += ["--use_dynamic_kl", "--model_name", "tiny-random", "--output_dir", "out", "--name", "n"]
    out = run_cli("rlhf", "--preset", "rlhf_test", *argv, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "note: 'sft_epochs' is deprecated; use 'sft.epochs'" in out.stderr
    cfg = yaml.safe_load((tmp_path / "out" / "n" / "config.yaml").read_text())
    assert (cfg["sft"]["epochs"], cfg["sft"]["max_steps"], cfg["rl"]["dynamic_kl"]) == (2.0, 1, True)


def test_help_is_typers_in_the_shared_style():
    from typer.testing import CliRunner

    from posttrain.cli import app

    for command in ("rlhf", "seal", "sft"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for option in ("--config", "--preset", "--set", "--model", "--name", "--output-dir", "--store"):
            assert option in result.output, (command, option)
        assert "--resume" in result.output
        assert not re.search(r"--[a-z]+_[a-z_]+", result.output), result.output


def test_stage_checks_name_the_keys():
    from posttrain.config import RLHFConfig
    from posttrain.errors import ConfigError
    from posttrain.pipelines.rlhf import check_config

    with pytest.raises(ConfigError, match="sft.self_critique trains in the SFT stage"):
        check_config(RLHFConfig.model_validate({"rl": {"enabled": True}, "sft": {"self_critique": True}}))
    with pytest.raises(ConfigError, match="float16 needs a CUDA GPU"):
        check_config(
            RLHFConfig.model_validate(
                {"sft": {"enabled": True}, "model": {"device": "cpu", "dtype": "float16"}}
            )
        )
