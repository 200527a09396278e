"""`--launcher accelerate`: the accelerate config posttrain writes, the checks before any
process starts, the command each rank runs, and the real thing: `posttrain sft` as two gloo
processes on CPU trains the same adapter as one process with the same global batch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from posttrain.config import RLHFConfig, SFTConfig
from posttrain.errors import ConfigError
from posttrain.launch import (
    LaunchPlan,
    accelerate_config,
    check_batches,
    check_environment,
    decoder_layer_class,
    launch_command,
    launch_plan,
    launch_target,
    write_accelerate_config,
)
from posttrain.store import Store
from tests.conftest import REPO, run_cli


def _posttrain(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`posttrain ...` in its own process; the ranks it launches import this checkout's posttrain."""
    return run_cli(*args, cwd=cwd, env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})


def _loaded(config: dict, tmp_path: Path):
    """The config as accelerate itself reads it (so a key it does not know fails here)."""
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(str(write_accelerate_config(config, tmp_path / "accelerate.yaml")))


# ------------------------------------------------------------------ the config posttrain writes


def test_ddp_on_cpu_is_torchrun_with_use_cpu_and_no_mixed_precision(tmp_path):
    config = accelerate_config(LaunchPlan(2), cuda=False, mixed_precision="bf16")
    loaded = _loaded(config, tmp_path)
    assert config["compute_environment"] == "LOCAL_MACHINE"
    # MULTI_GPU + use_cpu: accelerate's MULTI_CPU type launches N processes only through mpirun.
    assert loaded.distributed_type.value == "MULTI_GPU" and loaded.use_cpu is True
    assert loaded.num_processes == 2 and loaded.mixed_precision == "no"
    assert not loaded.deepspeed_config and not loaded.fsdp_config


def test_ddp_on_cuda_uses_bf16_when_the_model_trains_in_bf16(tmp_path):
    loaded = _loaded(accelerate_config(LaunchPlan(4), cuda=True, mixed_precision="bf16"), tmp_path)
    assert loaded.distributed_type.value == "MULTI_GPU" and loaded.use_cpu is False
    assert loaded.num_processes == 4 and loaded.mixed_precision == "bf16"


def test_one_process_is_a_plain_launch(tmp_path):
    loaded = _loaded(accelerate_config(LaunchPlan(1), cuda=False), tmp_path)
    assert loaded.distributed_type.value == "NO" and loaded.num_processes == 1


@pytest.mark.parametrize(("flag", "stage"), [("zero2", 2), ("zero3", 3)])
def test_deepspeed_config_names_the_zero_stage_and_leaves_batches_to_the_trainer(flag, stage, tmp_path):
    loaded = _loaded(
        accelerate_config(LaunchPlan(2, deepspeed=flag), cuda=True, mixed_precision="bf16"), tmp_path
    )
    assert loaded.distributed_type.value == "DEEPSPEED"
    ds = loaded.deepspeed_config
    assert ds["zero_stage"] == stage
    assert ds["zero3_save_16bit_model"] is (stage == 3)  # ZeRO-3 must gather weights to save them
    assert ds["offload_optimizer_device"] == ds["offload_param_device"] == "none"
    # "auto": HF fills them from posttrain's own arguments, so they cannot disagree.
    assert "gradient_accumulation_steps" not in ds and "gradient_clipping" not in ds


def test_fsdp_config_wraps_the_models_own_decoder_layer(tiny_spec, tmp_path):
    layer = decoder_layer_class(tiny_spec)
    assert layer == "LlamaDecoderLayer"
    config = accelerate_config(LaunchPlan(2, fsdp=True), cuda=True, mixed_precision="bf16", layer_class=layer)
    loaded = _loaded(config, tmp_path)
    assert loaded.distributed_type.value == "FSDP" and loaded.num_processes == 2
    fsdp = loaded.fsdp_config
    assert fsdp["fsdp_version"] == 2
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_the_ranks_rerun_posttrain_as_a_module_under_accelerate(tmp_path):
    cmd = launch_command(tmp_path / "a.yaml", 29555, ["sft", "--preset", "test"])
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--config_file") + 1] == str(tmp_path / "a.yaml")
    assert cmd[cmd.index("--main_process_port") + 1] == "29555"
    assert cmd[-5:] == ["-m", "posttrain.cli", "sft", "--preset", "test"]


# ------------------------------------------------------------------ refused before any process starts


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("accelerate", 2, "zero2", True), "--deepspeed and --fsdp both shard the model; choose one"),
        (("accelerate", 0, None, False), "--num-processes must be at least 1, got 0"),
        (("accelerate", 2, "zero1", False), "--deepspeed zero1: expected zero2 or zero3"),
        (("none", 2, None, False), "--num-processes needs --launcher accelerate"),
        (("none", None, "zero3", True), "--deepspeed and --fsdp need --launcher accelerate"),
        (("torchrun", 2, None, False), "--launcher torchrun: expected one of none, accelerate"),
    ],
)
def test_bad_launch_flags(args, needle):
    with pytest.raises(ConfigError) as err:
        launch_plan(*args)
    assert str(err.value) == needle


def test_no_launcher_flags_means_this_process():
    assert launch_plan("none", None) is None
    assert launch_plan("accelerate", None) == LaunchPlan(1)


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("deepspeed") is not None, reason="deepspeed is installed"
)
def test_deepspeed_without_the_package_names_the_install():
    with pytest.raises(
        ConfigError, match=r"--deepspeed zero3 needs the deepspeed package: pip install deepspeed"
    ):
        check_environment(LaunchPlan(2, deepspeed="zero3"), cuda=True)


def test_fsdp_on_cpu_is_refused_rather_than_silently_ddp():
    with pytest.raises(ConfigError, match="--fsdp needs CUDA GPUs"):
        check_environment(LaunchPlan(2, fsdp=True), cuda=False)


def test_every_global_batch_of_an_rlhf_run_is_checked_before_launch():
    cfg = RLHFConfig.model_validate(
        {
            "sft": {"enabled": True, "batch_size": 4},
            "rl": {"enabled": True, "batch_size": 3, "num_generations": 2},
        }
    )
    target = launch_target(cfg)
    assert target.batches == {
        "sft.batch_size": (4, 1),
        "reward_model.batch_size": (4, 1),
        "rl.batch_size x rl.num_generations": (6, 1),
    }
    check_batches(target, 2)
    with pytest.raises(ConfigError, match=r"^sft.batch_size: the global batch .* over 3 processes"):
        check_batches(target, 3)
    sft = launch_target(SFTConfig.model_validate({"model": {"name": "tiny-random"}}))
    assert sft.model == "tiny-random" and sft.batches == {"train.batch_size": (4, 1)}


def test_the_cli_refuses_a_batch_it_cannot_split_in_one_line(tmp_path):
    out = _posttrain(
        "sft", "--preset", "test", "--launcher", "accelerate", "--num-processes", "3", cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "train.batch_size: the global batch (4 examples x 1 accumulation steps = 4)" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()


def test_each_rank_runs_the_same_command_without_the_launcher_flags(monkeypatch):
    from typer.testing import CliRunner

    import posttrain.launch
    from posttrain.cli import app

    launched = []
    monkeypatch.setattr(posttrain.launch, "relaunch", lambda plan, argv, target: launched.append(argv) or 0)
    common = ["--launcher", "accelerate", "--num-processes", "2"]
    sft = ["sft", "--preset", "test", "--set", "train.seed=1", "--set", "lora.r=4", "--name", "x", "--resume"]
    rlhf = ["rlhf", "--preset", "rlhf_test", "--set", "lora.r=4", "--run-sft", "--sft_epochs", "2"]
    for argv in (sft, rlhf):
        result = CliRunner().invoke(app, [argv[0], *common, *argv[1:]])
        assert result.exit_code == 0, result.output
    assert launched[0] == sft
    assert launched[1] == rlhf


# ------------------------------------------------------------------ two gloo processes == one process


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), "a step was logged twice (by two ranks?)"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_two_gloo_processes_train_the_same_adapter_as_one(tiny_spec, tmp_path):
    """Same seed, same global batch (4), packing on, LoRA dropout 0 (preset `test`): the distributed
    sampler gives each rank half of every global batch and DDP averages the two halves' token-weighted
    gradients, so the 8 optimizer steps are the single-process ones up to float summation order."""
    common = ["sft", "--preset", "test", "--output-dir", "runs"]
    one = _posttrain(*common, "--name", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _posttrain(
        *common, "--name", "two", "--launcher", "accelerate", "--num-processes", "2", cwd=tmp_path
    )
    assert two.returncode == 0, two.stderr[-3000:]

    runs = tmp_path / "runs"
    s1, s2 = (json.loads((runs / n / "summary.json").read_text()) for n in ("one", "two"))
    assert (s1["processes"], s2["processes"]) == (1, 2)
    assert s1["steps"] == s2["steps"] == 8
    assert s2["train_tokens"] == s1["train_tokens"]  # counted over both ranks
    l1, l2 = _losses(runs / "one"), _losses(runs / "two")
    assert sorted(l1) == sorted(l2) == list(range(1, 9))
    assert max(abs(l1[k] - l2[k]) for k in l1) < 1e-4

    a1 = load_file(runs / "one" / "adapter" / "adapter_model.safetensors")
    a2 = load_file(runs / "two" / "adapter" / "adapter_model.safetensors")
    assert a1.keys() == a2.keys()
    assert all(a1[k].abs().sum() > 0 for k in a1 if "lora_B" in k)  # trained: B starts at zero
    scale = max(t.abs().max().item() for t in a1.values())
    assert max((a1[k] - a2[k]).abs().max().item() for k in a1) < 1e-4 * scale

    # Rank 0 alone wrote the run: one store row, one finished directory, no leftovers.
    store = Store(f"sqlite:///{runs / 'posttrain.db'}")
    assert sorted(r.name for r in store.list_runs()) == ["one", "two"]
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith("posttrain.db")) == ["one", "two"]
    assert (runs / "two" / "report.md").exists() and (runs / "two" / "adapter" / "posttrain.json").exists()


def test_rlhf_as_two_processes_writes_one_run_with_every_ranks_rollouts(tiny_spec, tmp_path):
    out = _posttrain(
        "rlhf",
        "--preset",
        "rlhf_test",
        "--run_sft",
        "--run_rlhf",
        "--name",
        "r",
        "--output_dir",
        "runs",
        "--launcher",
        "accelerate",
        "--num-processes",
        "2",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2
    assert summary["sft_steps"] == summary["rm_steps"] == summary["rl_steps"] == 2
    # 2 RL steps x 2 prompts x 2 generations, half sampled on each rank and gathered by rank 0.
    rollouts = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 8 and sorted({r["step"] for r in rollouts}) == [1, 2]
    rows = [json.loads(x) for x in (run / "metrics_rl.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # logged once, by rank 0
    store = Store(f"sqlite:///{tmp_path / 'runs' / 'posttrain.db'}")
    (row,) = store.list_runs()
    assert row.status == "completed" and len(store.list_episodes(row.id)) == 3
