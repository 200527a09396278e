"""The training commands: sft, dpo, tune, align, rlhf, seal and quickstart. Each parses its flags,
loads one config and hands it to one pipeline function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from posttrain.cli.options import (
    ConfigOpt,
    DataOpt,
    DeepspeedOpt,
    FsdpOpt,
    LauncherOpt,
    ModelOpt,
    NameOpt,
    NumProcessesOpt,
    OutOpt,
    PresetOpt,
    ResumeOpt,
    SetOpt,
    StepsOpt,
    StoreOpt,
    console,
    flags,
    relaunch,
    show_summary,
)
from posttrain.errors import PosttrainError


def sft(
    ctx: typer.Context,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    max_steps: StepsOpt = None,
    store: StoreOpt = None,
    resume: ResumeOpt = False,
    launcher: LauncherOpt = "none",
    num_processes: NumProcessesOpt = None,
    deepspeed: DeepspeedOpt = None,
    fsdp: FsdpOpt = False,
) -> None:
    """LoRA supervised fine-tuning (loss on completions only)."""
    from posttrain.config import SFTConfig, load_config
    from posttrain.launch import launch_plan
    from posttrain.pipelines.finetune import run_sft

    plan = launch_plan(launcher, num_processes, deepspeed, fsdp)
    given = flags(model=model, data=data, name=name, output_dir=output_dir, max_steps=max_steps, store=store)
    cfg = load_config(SFTConfig, preset=preset, path=config, overrides=set_, extra=given)
    if plan is not None:
        relaunch(ctx, plan, cfg)
    show_summary("SFT summary", run_sft(cfg, resume=resume), exit_unless_completed=True)


def dpo(
    ctx: typer.Context,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    adapter: Annotated[
        str | None, typer.Option(help="SFT adapter to start from (also the reference).")
    ] = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    max_steps: StepsOpt = None,
    store: StoreOpt = None,
    resume: ResumeOpt = False,
    launcher: LauncherOpt = "none",
    num_processes: NumProcessesOpt = None,
    deepspeed: DeepspeedOpt = None,
    fsdp: FsdpOpt = False,
) -> None:
    """LoRA DPO on preference rows (prompt, chosen, rejected)."""
    from posttrain.config import DPOConfig, load_config
    from posttrain.launch import launch_plan
    from posttrain.pipelines.finetune import run_dpo
    from posttrain.pipelines.models import adapter_base

    plan = launch_plan(launcher, num_processes, deepspeed, fsdp)
    if adapter and model is None:  # the adapter names its base, so --model may be left out
        model = adapter_base(adapter)
    given = flags(
        model=model,
        data=data,
        name=name,
        output_dir=output_dir,
        max_steps=max_steps,
        store=store,
        adapter=adapter,
    )
    cfg = load_config(DPOConfig, preset=preset, path=config, overrides=set_, extra=given)
    if plan is not None:
        relaunch(ctx, plan, cfg)
    show_summary("DPO summary", run_dpo(cfg, resume=resume), exit_unless_completed=True)


def quickstart(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    rows: Annotated[int | None, typer.Option(help="tool_use rows to generate.")] = None,
    episodes: Annotated[int | None, typer.Option(help="Agentic episodes.")] = None,
    trial_steps: Annotated[int | None, typer.Option(help="Optimizer steps per training.")] = None,
    dpo_steps: Annotated[int | None, typer.Option(help="DPO steps.")] = None,
    eval_episodes: Annotated[int | None, typer.Option(help="Held-out episodes scored per model.")] = None,
    pool_rows: Annotated[int | None, typer.Option(help="Function-pool requests added to the data.")] = None,
    eval_items: Annotated[
        int | None, typer.Option(help="Requests of unseen tool families scored per model.")
    ] = None,
    output_dir: OutOpt = None,
    name: NameOpt = None,
    store: StoreOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the killed quickstart named by --name, stage by stage.")
    ] = False,
) -> None:
    """The main job of `make demo`: tool-use data → 3 agentic episodes with SEAL → DPO → base/tuned/DPO
    on unseen tool families and held-out episodes."""
    from posttrain.config import QuickstartConfig, load_config
    from posttrain.pipelines.quickstart import run_quickstart
    from posttrain.report.console import compliance_table

    given = flags(model=model, name=name, output_dir=output_dir, store=store)
    budget = dict(
        rows=rows,
        episodes=episodes,
        trial_steps=trial_steps,
        dpo_steps=dpo_steps,
        eval_episodes=eval_episodes,
        pool_rows=pool_rows,
        eval_items=eval_items,
    )
    given |= {k: v for k, v in budget.items() if v is not None}
    cfg = load_config(QuickstartConfig, preset=preset, path=config, overrides=set_, extra=given)
    console.print(compliance_table(run_quickstart(cfg, resume=resume)))


def tune(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    tuner: Annotated[str | None, typer.Option(help="agents, random, tpe, cma, hybrid or centaur.")] = None,
    backend: Annotated[str | None, typer.Option(help="Agent backend: rules, openai or local.")] = None,
    episodes: Annotated[int | None, typer.Option(help="max_episodes.")] = None,
    seal: Annotated[str | None, typer.Option(help="SEAL stage: refine, self_edit or none.")] = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Optimizer steps per training (trial.max_steps).")
    ] = None,
    store: StoreOpt = None,
    resume: ResumeOpt = False,
) -> None:
    """Agentic LoRA fine-tuning in episodes (seed 000): judge, reward-penalty, tuner, TRAIN, SEAL, QA."""
    from posttrain.config import TuneConfig, load_config
    from posttrain.pipelines.tune import run_tune

    given = flags(model=model, data=data, name=name, output_dir=output_dir, store=store)
    for key, value in (("tuner", tuner), ("backend", backend), ("max_episodes", episodes)):
        if value is not None:
            given.setdefault("agents", {})[key] = value
    if seal is not None:
        given["seal"] = {"mode": seal}
    if max_steps is not None:
        given["trial"] = {"max_steps": max_steps}
    cfg = load_config(TuneConfig, preset=preset, path=config, overrides=set_, extra=given)
    show_summary("tune summary", run_tune(cfg, resume=resume))


def rlhf(
    ctx: typer.Context,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Stop RL after N optimizer steps (rl.max_steps).")
    ] = None,
    store: StoreOpt = None,
    resume: ResumeOpt = False,
    run_sft: Annotated[
        bool | None, typer.Option("--run-sft", help="Run the SFT stage (sft.enabled).")
    ] = None,
    run_rlhf: Annotated[
        bool | None, typer.Option("--run-rlhf", help="Train the reward model and run RL (rl.enabled).")
    ] = None,
    launcher: LauncherOpt = "none",
    num_processes: NumProcessesOpt = None,
    deepspeed: DeepspeedOpt = None,
    fsdp: FsdpOpt = False,
) -> None:
    """Seed 003: SFT, reward model, online RL (GRPO/RLOO) with ADLF rewards.

    Seed 003's flags still run, each with a note naming the key that replaces it.
    """
    from posttrain.config import RLHF_ALIASES, RLHFConfig, flags_to_overrides, load_config, rename_overrides
    from posttrain.launch import launch_plan
    from posttrain.pipelines.rlhf import run_rlhf as run_pipeline

    plan = launch_plan(launcher, num_processes, deepspeed, fsdp)
    given = flags(model=model, data=data, name=name, output_dir=output_dir, store=store)
    for section, key, value in (
        ("rl", "max_steps", max_steps),
        ("sft", "enabled", run_sft),
        ("rl", "enabled", run_rlhf),
    ):
        if value is not None:
            given.setdefault(section, {})[key] = value
    extra = flags_to_overrides(ctx.args, RLHFConfig, RLHF_ALIASES, "rlhf", over=given)
    overrides = rename_overrides(set_, RLHF_ALIASES)
    cfg = load_config(RLHFConfig, preset=preset, path=config, overrides=overrides, extra=extra)
    if plan is not None:
        relaunch(ctx, plan, cfg)
    show_summary("RLHF summary", run_pipeline(cfg, resume=resume), exit_unless_completed=True)


def seal(
    ctx: typer.Context,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    data: Annotated[
        str | None, typer.Option("--data", help="The domain's data file (data_config.path).")
    ] = None,
    max_iterations: Annotated[
        int | None, typer.Option("--max-iterations", help="ReST-EM outer iterations (max_outer_iterations).")
    ] = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    store: StoreOpt = None,
    resume: ResumeOpt = False,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG shows every self-edit.")] = "INFO",
) -> None:
    """SEAL: self-edits applied as LoRA updates, generator trained with ReST-EM (seed 001)."""
    from posttrain.config import (
        SEAL_ALIASES,
        SEALConfig,
        flags_to_overrides,
        load_config,
        rename_overrides,
        seal_preset,
    )
    from posttrain.pipelines.seal import run_seal
    from posttrain.pipelines.terminal import set_log_level

    set_log_level(log_level)
    given = flags(model=model, name=name, output_dir=output_dir, store=store)
    if data is not None:
        given["data_config"] = {"path": data}
    if max_iterations is not None:
        given["max_outer_iterations"] = max_iterations
    extra = flags_to_overrides(ctx.args, SEALConfig, SEAL_ALIASES, "seal", over=given)
    overrides = rename_overrides(set_, SEAL_ALIASES)
    cfg = load_config(SEALConfig, preset=seal_preset(preset), path=config, overrides=overrides, extra=extra)
    show_summary("SEAL summary", run_seal(cfg, resume=resume))


def align(
    task: Annotated[str, typer.Option("--task", help="tool_use or meetings.")],
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    store: StoreOpt = None,
    resume: ResumeOpt = False,
    tools: Annotated[
        Path | None,
        typer.Option(
            help="tool_use: a file of OpenAI function specs; requests for them (data.tools_rows) join SFT."
        ),
    ] = None,
) -> None:
    """SFT -> tool-using trajectories with rewards -> preference pairs -> DPO -> base/SFT/DPO eval."""
    from posttrain.config import AlignConfig, load_config
    from posttrain.pipelines.align import run_align

    if task not in ("tool_use", "meetings"):
        raise PosttrainError(f"--task must be tool_use or meetings, got '{task}'")
    given = {"task": task, **flags(model=model, name=name, output_dir=output_dir, store=store)}
    if tools is not None:
        given["data"] = {"tools_file": str(tools)}
    preset = preset if preset or config else f"align_{task}"
    cfg = load_config(AlignConfig, preset=preset, path=config, overrides=set_, extra=given)
    summary = run_align(cfg, resume=resume)
    scalars = {k: v for k, v in summary.items() if isinstance(v, str | int | float)}
    show_summary("align summary", scalars)
    console.print(summary.get("eval_table", ""))
    if summary["status"] != "completed":
        raise typer.Exit(3)
