"""`--launcher accelerate`: run one training command as N processes through `accelerate launch`.

posttrain writes the accelerate config itself (one YAML in a temp dir: DDP, DeepSpeed ZeRO-2/3
or FSDP2, the process count, mixed precision matching the model's dtype) and re-invokes the
same `posttrain` command under `python -m accelerate.commands.launch`, minus the launcher
flags. Each rank then runs the ordinary pipeline: TRL/HF Trainer does the distributed part,
and posttrain.distributed decides which rank writes (rank 0) and how the configured global
batch is split (it is kept, so N processes reproduce the single-process run).

On CPU the config says MULTI_GPU with `use_cpu: true`: accelerate launches MULTI_CPU through
`mpirun` only (without a hostfile it starts ONE process), while its torchrun path with
ACCELERATE_USE_CPU=true starts N processes that join over gloo. Checked on accelerate 1.15.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from posttrain.config import DPOConfig, RLHFConfig, SFTConfig
from posttrain.distributed import split_global_batch
from posttrain.errors import ConfigError
from posttrain.rundir import RUN_STAMP_ENV

LAUNCHERS = ("none", "accelerate")
ZERO_STAGES = {"zero2": 2, "zero3": 3}
# Options of sft/dpo/rlhf that choose the launch itself; the ranks run the command without them.
LAUNCH_OPTIONS = ("launcher", "num_processes", "deepspeed", "fsdp")


@dataclass(frozen=True)
class LaunchPlan:
    """How to run a training command across processes; built by `launch_plan`."""

    num_processes: int
    deepspeed: str | None = None  # "zero2" | "zero3"
    fsdp: bool = False


def launch_plan(
    launcher: str, num_processes: int | None, deepspeed: str | None = None, fsdp: bool = False
) -> LaunchPlan | None:
    """Validate the launch flags; None means: train in this process, as without them."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher}: expected one of {', '.join(LAUNCHERS)}")
    if launcher == "none":
        given = [
            flag
            for flag, value in (
                ("--num-processes", num_processes is not None),
                ("--deepspeed", deepspeed is not None),
                ("--fsdp", fsdp),
            )
            if value
        ]
        if given:
            verb = "need" if len(given) > 1 else "needs"
            raise ConfigError(f"{' and '.join(given)} {verb} --launcher accelerate")
        return None
    if deepspeed is not None and fsdp:
        raise ConfigError("--deepspeed and --fsdp both shard the model; choose one")
    if deepspeed is not None and deepspeed not in ZERO_STAGES:
        raise ConfigError(f"--deepspeed {deepspeed}: expected zero2 or zero3")
    processes = 1 if num_processes is None else num_processes
    if processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {processes}")
    return LaunchPlan(processes, deepspeed, fsdp)


def check_environment(plan: LaunchPlan, cuda: bool) -> None:
    """Refuse a plan this machine cannot run, before any process starts."""
    if plan.deepspeed is not None:
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(
                f"--deepspeed {plan.deepspeed} needs the deepspeed package: pip install deepspeed "
                "(or drop --deepspeed for plain DDP)"
            )
        if not cuda:
            raise ConfigError(f"--deepspeed {plan.deepspeed} needs CUDA GPUs; on CPU drop it (plain DDP)")
    if plan.fsdp and not cuda:
        # accelerate turns FSDP on only for GPU process groups; on CPU it would quietly run DDP.
        raise ConfigError("--fsdp needs CUDA GPUs (accelerate shards only on GPUs); on CPU drop it for DDP")
    if cuda:
        import torch

        gpus = torch.cuda.device_count()
        if plan.num_processes > gpus:
            raise ConfigError(
                f"--num-processes {plan.num_processes} asks for one GPU per process but {gpus} are visible "
                f"(CUDA_VISIBLE_DEVICES); use --num-processes {gpus} or fewer"
            )


def decoder_layer_class(model_spec: str) -> str:
    """The class name of the model's repeated transformer block (FSDP wraps each one)."""
    import transformers

    from posttrain.models import resolve

    config = transformers.AutoConfig.from_pretrained(resolve(model_spec))
    for arch in config.architectures or []:
        names = getattr(getattr(transformers, arch, None), "_no_split_modules", None)
        if names:
            return names[0]
    raise ConfigError(
        f"--fsdp: cannot tell the transformer layer class of '{model_spec}' "
        f"(architectures {config.architectures} list no _no_split_modules); use --deepspeed zero3 instead"
    )


def accelerate_config(
    plan: LaunchPlan, *, cuda: bool, mixed_precision: str = "no", layer_class: str | None = None
) -> dict[str, Any]:
    """The accelerate config (as `accelerate config` would write it) for one machine.

    DeepSpeed's batch size, accumulation and clipping stay "auto" (absent here), so the HF
    Trainer fills them from posttrain's own arguments and they cannot disagree.
    """
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        # accelerate refuses MULTI_GPU with one process; one plain process is "NO".
        "distributed_type": "MULTI_GPU" if plan.num_processes > 1 else "NO",
        "downcast_bf16": "no",
        "enable_cpu_affinity": False,
        "gpu_ids": "all",
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": mixed_precision if cuda else "no",
        "num_machines": 1,
        "num_processes": plan.num_processes,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": not cuda,
    }
    if plan.deepspeed is not None:
        stage = ZERO_STAGES[plan.deepspeed]
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {
            "zero_stage": stage,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            # The base loads whole on every rank and ZeRO-3 partitions it when training starts:
            # posttrain loads the model before the trainer exists, so zero.Init would not apply.
            "zero3_init_flag": False,
            "zero3_save_16bit_model": stage == 3,
        }
    elif plan.fsdp:
        if layer_class is None:
            raise ValueError("FSDP needs the model's transformer layer class (decoder_layer_class)")
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 2,  # per-parameter sharding: frozen base and trainable LoRA mix freely
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": layer_class,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_reshard_after_forward": True,
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": False,
            "fsdp_activation_checkpointing": False,
        }
    return config


def write_accelerate_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port nothing listens on now, for the main process's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(config_path: Path, port: int, argv: list[str]) -> list[str]:
    """`python -m accelerate.commands.launch ... -m posttrain.cli <argv>` (argv without launcher flags)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_path),
        "--main_process_port",
        str(port),
        "-m",
        "posttrain.cli",
        *argv,
    ]


@dataclass(frozen=True)
class LaunchTarget:
    """What the launcher must know of a run's config: the model, its placement, its global batches."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    # config keys -> (examples per step, accumulation steps): the global batches each rank splits
    batches: dict[str, tuple[int, int]] = field(default_factory=dict)


def launch_target(cfg: SFTConfig | DPOConfig | RLHFConfig) -> LaunchTarget:
    """The launch-relevant part of a validated sft/dpo/rlhf config."""
    if isinstance(cfg, RLHFConfig):
        accumulation = cfg.train.gradient_accumulation_steps
        batches = {}
        if cfg.sft.enabled:
            batches["sft.batch_size"] = (cfg.sft.batch_size, accumulation)
        if cfg.rl.enabled and not cfg.reward_model.path:
            batches["reward_model.batch_size"] = (cfg.reward_model.batch_size, accumulation)
        if cfg.rl.enabled:  # TRL's batch counts completions: prompts x num_generations
            batches["rl.batch_size x rl.num_generations"] = (
                cfg.rl.batch_size * cfg.rl.num_generations,
                accumulation,
            )
        return LaunchTarget(cfg.model.name, cfg.model.device, cfg.model.dtype, batches)
    train = cfg.train
    batches = {"train.batch_size": (train.batch_size, train.gradient_accumulation_steps)}
    return LaunchTarget(cfg.model.name, cfg.model.device, cfg.model.dtype, batches)


def check_batches(target: LaunchTarget, processes: int) -> None:
    """Refuse, before any process starts, a global batch the ranks cannot split evenly."""
    for keys, (batch, accumulation) in target.batches.items():
        try:
            split_global_batch(batch, accumulation, processes)
        except ConfigError as err:
            raise ConfigError(f"{keys}: {err}") from None


def relaunch(plan: LaunchPlan, argv: list[str], target: LaunchTarget) -> int:
    """Run `posttrain <argv>` as `plan.num_processes` ranks and wait; returns the launcher's exit code
    (1 when any rank failed).

    Embedded models are materialized here first, once, so the ranks do not race to build them.
    """
    import torch

    from posttrain.models import EMBEDDED, device_settings, materialize

    settings = device_settings(target.device, target.dtype)
    cuda = settings.device.startswith("cuda")
    check_environment(plan, cuda)
    check_batches(target, plan.num_processes)
    if target.model in EMBEDDED:
        materialize(target.model)
    config = accelerate_config(
        plan,
        cuda=cuda,
        mixed_precision="bf16" if settings.dtype == torch.bfloat16 else "no",
        layer_class=decoder_layer_class(target.model) if plan.fsdp else None,
    )
    env = {**os.environ, RUN_STAMP_ENV: os.environ.get(RUN_STAMP_ENV) or time.strftime("%Y%m%d-%H%M%S")}
    if not cuda:
        env["ACCELERATE_USE_CPU"] = "true"
    with tempfile.TemporaryDirectory(prefix="posttrain-accelerate-") as tmp:
        path = write_accelerate_config(config, Path(tmp) / "accelerate.yaml")
        return subprocess.run(launch_command(path, free_port(), argv), env=env).returncode


def command_args(ctx: Any) -> list[str]:
    """The command line of a click/typer context again, minus the launch options.

    Rebuilt from the parsed values (not sys.argv), so it is the same however the options
    were spelled; arguments the command did not declare (`ctx.args`) follow unchanged.
    """
    argv = [ctx.info_name]
    for param in ctx.command.params:
        # Typer vendors its own click, so the parameter kind is read, not isinstance-checked.
        if param.param_type_name != "option" or param.name in LAUNCH_OPTIONS:
            continue
        value = ctx.params.get(param.name)
        if value is None:
            continue
        if param.is_flag:
            if value != param.default:
                argv.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        for item in value if param.multiple else [value]:
            argv += [param.opts[0], str(item)]
    return [*argv, *ctx.args]
