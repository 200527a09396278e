"""The `posttrain` command line: parse → load config → call one pipeline function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from posttrain.errors import PosttrainError

app = typer.Typer(
    help="Agentic post-training for language models: LoRA SFT, DPO, RL and SEAL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Embedded and local models.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs recorded in the history store.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")
data_app = typer.Typer(help="Generate task data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML or JSON config file.")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="A preset shipped in posttrain/presets.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override: key.sub=value (repeatable).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="smollm2-135m, tiny-random, hub id or dir.")
]
DataOpt = Annotated[str | None, typer.Option("--data", help="Training data file (default: bundled sample).")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Run name (directory under --output-dir).")]
OutOpt = Annotated[str | None, typer.Option("--output-dir", help="Parent directory of runs (default runs).")]
StepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store URL (default sqlite in the output dir).")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the killed run named by --name.")]
LauncherOpt = Annotated[
    str,
    typer.Option(
        "--launcher", help="none: train in this process; accelerate: --num-processes ranks via accelerate."
    ),
]
NumProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--num-processes",
        help="With --launcher accelerate: processes (one per GPU; gloo on CPU). The global batch is kept.",
    ),
]
DeepspeedOpt = Annotated[
    str | None,
    typer.Option("--deepspeed", help="With --launcher accelerate: zero2 or zero3 (DeepSpeed ZeRO)."),
]
FsdpOpt = Annotated[
    bool, typer.Option("--fsdp", help="With --launcher accelerate: shard the model with FSDP2.")
]


def _flags(**values: Any) -> dict[str, Any]:
    """CLI shortcuts as a nested config dict; only flags the user gave."""
    paths = {
        "model": ("model", "name"),
        "data": ("data", "path"),
        "name": ("run", "name"),
        "output_dir": ("run", "output_root"),
        "store": ("run", "store"),
        "max_steps": ("train", "max_steps"),
        "adapter": ("dpo", "adapter"),
    }
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is not None:
            section, field = paths[key]
            out.setdefault(section, {})[field] = value
    return out


def _print_summary(title: str, summary: dict[str, Any]) -> None:
    from rich.table import Table

    from posttrain.distributed import is_main_process

    if not is_main_process():  # one table per run, not one per rank of a launch
        return

    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key, str(value))
    console.print(table)


def _relaunch(ctx: typer.Context, plan: Any, cfg: Any) -> None:
    """Run this very command as the plan's ranks and exit with their status."""
    from posttrain.launch import command_args, launch_target, relaunch

    raise typer.Exit(relaunch(plan, command_args(ctx), launch_target(cfg)))


@app.command()
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
    flags = _flags(model=model, data=data, name=name, output_dir=output_dir, max_steps=max_steps, store=store)
    cfg = load_config(SFTConfig, preset=preset, path=config, overrides=set_, extra=flags)
    if plan is not None:
        _relaunch(ctx, plan, cfg)
    summary = run_sft(cfg, resume=resume)
    _print_summary("SFT summary", summary)
    if summary["status"] != "completed":
        raise typer.Exit(3)


@app.command()
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
    from posttrain.pipelines.finetune import adapter_base_model, run_dpo

    plan = launch_plan(launcher, num_processes, deepspeed, fsdp)
    if adapter and model is None:
        model = adapter_base_model(adapter)
    flags = _flags(
        model=model,
        data=data,
        name=name,
        output_dir=output_dir,
        max_steps=max_steps,
        store=store,
        adapter=adapter,
    )
    cfg = load_config(DPOConfig, preset=preset, path=config, overrides=set_, extra=flags)
    if plan is not None:
        _relaunch(ctx, plan, cfg)
    summary = run_dpo(cfg, resume=resume)
    _print_summary("DPO summary", summary)
    if summary["status"] != "completed":
        raise typer.Exit(3)


@app.command()
def generate(
    input: Annotated[
        Path, typer.Option("--input", "-i", help="JSONL of prompts: prompt | messages | instruction.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL to write, one row per input row.")],
    model: ModelOpt = None,
    adapter: Annotated[Path | None, typer.Option(help="PEFT adapter directory.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per prompt.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Prompts per batched generate call.")] = 16,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
) -> None:
    """Batched, left-padded generation over a JSONL file of prompts."""
    from posttrain.pipelines.chat import run_generate

    n = run_generate(input, output, model, adapter, max_new_tokens, batch_size, temperature)
    console.print(f"wrote {n} completions to {output}")


@app.command()
def chat(
    model: ModelOpt = None,
    adapter: Annotated[Path | None, typer.Option(help="PEFT adapter directory.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per reply.")] = 256,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    tools: Annotated[
        str | None, typer.Option("--tools", help="tool_use: run the task's tools live, showing each step.")
    ] = None,
    max_steps: Annotated[int, typer.Option(help="With --tools: ReAct steps per reply.")] = 6,
) -> None:
    """Interactive chat with history; /reset clears it, /quit leaves."""
    from posttrain.pipelines.chat import run_chat

    run_chat(model, adapter, max_new_tokens, system, tools=tools, max_steps=max_steps)


@app.command()
def quickstart(
    model: ModelOpt = None,
    rows: Annotated[int | None, typer.Option(help="tool_use rows to generate.")] = None,
    episodes: Annotated[int | None, typer.Option(help="Agentic episodes.")] = None,
    trial_steps: Annotated[int | None, typer.Option(help="Optimizer steps per training.")] = None,
    dpo_steps: Annotated[int | None, typer.Option(help="DPO steps.")] = None,
    eval_episodes: Annotated[int | None, typer.Option(help="Held-out episodes scored per model.")] = None,
    output_dir: OutOpt = None,
    name: NameOpt = None,
) -> None:
    """The main job of `make demo`: tool-use data → 3 agentic episodes with SEAL → DPO → compliance table."""
    from posttrain.config import QuickstartConfig, load_config
    from posttrain.pipelines.quickstart import run_quickstart

    given = dict(
        model=model,
        rows=rows,
        episodes=episodes,
        trial_steps=trial_steps,
        dpo_steps=dpo_steps,
        eval_episodes=eval_episodes,
        output_root=output_dir,
        name=name,
    )
    cfg = load_config(QuickstartConfig, extra={k: v for k, v in given.items() if v is not None})
    result = run_quickstart(cfg)
    from rich.table import Table

    shown = ("full_compliance", "thought_prefix_rate", "json_validity", "tool_choice_accuracy", "n")
    table = Table(
        "model", *shown, title=f"tool-use compliance on held-out episodes ({result['run_dir']}/report.md)"
    )
    for label, metrics in result["compliance"].items():
        table.add_row(label, *[str(metrics.get(k)) for k in shown])
    console.print(table)


@app.command()
def tune(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    tuner: Annotated[str | None, typer.Option(help="agents, random, tpe or hybrid.")] = None,
    backend: Annotated[str | None, typer.Option(help="Agent backend: rules, openai or local.")] = None,
    episodes: Annotated[int | None, typer.Option(help="max_episodes.")] = None,
    seal: Annotated[str | None, typer.Option(help="SEAL stage: refine, self_edit or none.")] = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    store: StoreOpt = None,
    resume: ResumeOpt = False,
) -> None:
    """Agentic LoRA fine-tuning in episodes (seed 000): judge, reward-penalty, tuner, TRAIN, SEAL, QA."""
    from posttrain.config import TuneConfig, load_config
    from posttrain.pipelines.tune import run_tune

    flags = _flags(model=model, data=data, name=name, output_dir=output_dir, store=store)
    for key, value in (("tuner", tuner), ("backend", backend), ("max_episodes", episodes)):
        if value is not None:
            flags.setdefault("agents", {})[key] = value
    if seal is not None:
        flags["seal"] = {"mode": seal}
    cfg = load_config(TuneConfig, preset=preset, path=config, overrides=set_, extra=flags)
    _print_summary("tune summary", run_tune(cfg, resume=resume))


@app.command()
def serve(
    model: ModelOpt = None,
    adapter: Annotated[Path | None, typer.Option(help="PEFT adapter directory (merged at load).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    served_model_name: Annotated[
        str | None, typer.Option(help="Name clients send as `model` (default: adapter path, else --model).")
    ] = None,
) -> None:
    """OpenAI-compatible server (/v1/chat/completions, /v1/models) with JSON-schema constrained output;
    one request at a time."""
    from posttrain.pipelines.serve import run_serve

    run_serve(model, adapter, host, port, served_model_name)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def rlhf(
    ctx: typer.Context,
    launcher: LauncherOpt = "none",
    num_processes: NumProcessesOpt = None,
    deepspeed: DeepspeedOpt = None,
    fsdp: FsdpOpt = False,
) -> None:
    """Seed 003: SFT, reward model, online RL (GRPO/RLOO) with ADLF rewards; --help lists all flags."""
    from posttrain.config import RLHFConfig, load_config, parse_rlhf_flags
    from posttrain.launch import launch_plan
    from posttrain.pipelines.rlhf import run_rlhf

    plan = launch_plan(launcher, num_processes, deepspeed, fsdp)
    flags, meta = parse_rlhf_flags(ctx.args)
    cfg = load_config(
        RLHFConfig, preset=meta.get("preset"), path=meta.get("config"), overrides=meta.get("set"), extra=flags
    )
    if plan is not None:
        _relaunch(ctx, plan, cfg)
    summary = run_rlhf(cfg, resume=meta.get("resume", False))
    _print_summary("RLHF summary", summary)
    if summary["status"] != "completed":
        raise typer.Exit(3)


@app.command()
def seal(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    max_iterations: Annotated[
        int | None, typer.Option("--max-iterations", help="ReST-EM outer iterations (max_outer_iterations).")
    ] = None,
    name: NameOpt = None,
    output_dir: OutOpt = None,
    store: StoreOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG shows every self-edit.")] = "INFO",
) -> None:
    """SEAL: self-edits applied as LoRA updates, generator trained with ReST-EM (seed 001)."""
    import logging

    from posttrain.config import SEALConfig, load_config
    from posttrain.pipelines.seal import run_seal, seal_preset

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise PosttrainError(f"--log-level {log_level}: expected DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("posttrain").setLevel(level)
    flags: dict[str, Any] = {"run": {}}
    if model is not None:
        flags["model_name"] = model
    if max_iterations is not None:
        flags["max_outer_iterations"] = max_iterations
    for key, value in (("name", name), ("output_root", output_dir), ("store", store)):
        if value is not None:
            flags["run"][key] = value
    cfg = load_config(SEALConfig, preset=seal_preset(preset), path=config, overrides=set_, extra=flags)
    _print_summary("SEAL summary", run_seal(cfg))


@app.command()
def doctor() -> None:
    """What this machine will use and why: device, dtype, attention, kernels, store, versions."""
    from posttrain.pipelines.doctor import run_doctor

    run_doctor()


@app.command()
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
) -> None:
    """SFT -> tool-using trajectories with rewards -> preference pairs -> DPO -> base/SFT/DPO eval."""
    from posttrain.config import AlignConfig, load_config
    from posttrain.pipelines.align import run_align

    if task not in ("tool_use", "meetings"):
        raise PosttrainError(f"--task must be tool_use or meetings, got '{task}'")
    flags = {"task": task, **_flags(model=model, name=name, output_dir=output_dir, store=store)}
    preset = preset if preset or config else f"align_{task}"
    cfg = load_config(AlignConfig, preset=preset, path=config, overrides=set_, extra=flags)
    summary = run_align(cfg, resume=resume)
    _print_summary("align summary", {k: v for k, v in summary.items() if isinstance(v, str | int | float)})
    console.print(summary.get("eval_table", ""))
    if summary["status"] != "completed":
        raise typer.Exit(3)


@app.command("eval")
def eval_(
    task: Annotated[str, typer.Option("--task", help="tool_use or meetings.")],
    model: ModelOpt = None,
    adapter: Annotated[
        Path | None, typer.Option(help="PEFT adapter directory (default: base alone).")
    ] = None,
    split: Annotated[str, typer.Option(help="tool_use: indist, heldout or all; meetings: heldout.")] = "all",
    n: Annotated[
        int, typer.Option("--n", help="Episodes per split (tool_use) or scenarios (meetings).")
    ] = 24,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per generated turn.")] = 96,
    max_steps: Annotated[int, typer.Option(help="ReAct turns per episode.")] = 6,
    batch_size: Annotated[int, typer.Option(help="Conversations per batched generate call.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the held-out data (align holds out 1000).")] = 1000,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write figures + records as JSON.")
    ] = None,
) -> None:
    """Held-out metrics of a model or adapter on an align task, each with n and a bootstrap 95% CI."""
    from posttrain.pipelines.evaluate import run_eval

    result = run_eval(
        task,
        model,
        adapter,
        split,
        n,
        max_new_tokens=max_new_tokens,
        max_steps=max_steps,
        batch_size=batch_size,
        seed=seed,
        output=output,
    )
    console.print(result["table"])
    if output is not None:
        console.print(f"wrote {output}")


@models_app.command("list")
def models_list() -> None:
    """Embedded model specs and whether they are materialized."""
    from rich.table import Table

    from posttrain.models import EMBEDDED, posttrain_home

    table = Table("spec", "what", "materialized at")
    for spec, what in EMBEDDED.items():
        path = posttrain_home() / "models" / spec
        table.add_row(spec, what, str(path) if (path / ".materialized").exists() else "-")
    console.print(table)
    console.print("Any Hugging Face hub id or local model directory works as --model too.")


@models_app.command("materialize")
def models_materialize(
    spec: Annotated[str, typer.Argument(help="smollm2-135m or tiny-random")] = "smollm2-135m",
) -> None:
    """Write the plain safetensors copy of an embedded model under $POSTTRAIN_HOME."""
    from posttrain.models import materialize

    console.print(f"{spec}: {materialize(spec)}")


@data_app.command("tool-use")
def data_tool_use(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    n: Annotated[int, typer.Option("--n", help="Rows to generate (SFT and preference).")] = 2500,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
    split: Annotated[str, typer.Option(help="train, or heldout (unseen tools and templates).")] = "train",
) -> None:
    """Synthetic Thought→Action tool-use data: SFT rows and preference rows with one defect each."""
    from posttrain.tasks.tool_use import write_tool_use_data

    if split not in ("train", "heldout"):
        raise PosttrainError(f"--split must be train or heldout, got '{split}'")
    console.print(f"wrote {write_tool_use_data(out, n, seed, split=split)}")


@runs_app.command("list")
def runs_list(
    store: StoreOpt = None,
    output_dir: Annotated[str, typer.Option(help="Where the default store lives.")] = "runs",
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 50,
) -> None:
    """Runs in the store, newest first."""
    from posttrain.pipelines.finetune import open_store
    from posttrain.report import runs_table
    from posttrain.rundir import STALE_GRACE_S

    st = open_store(store, output_dir)
    st.mark_stale_running(STALE_GRACE_S)
    console.print(runs_table(st.list_runs(limit=limit)))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[int, typer.Argument(help="Run id from `posttrain runs list`.")],
    store: StoreOpt = None,
    output_dir: Annotated[str, typer.Option(help="Where the default store lives.")] = "runs",
) -> None:
    """One run: config, final metrics, its episodes and its executor task attempts."""
    from posttrain.pipelines.finetune import open_store
    from posttrain.report import run_detail

    st = open_store(store, output_dir)
    console.print(run_detail(st.get_run(run_id), st.list_episodes(run_id), st.list_task_attempts(run_id)))


def _quiet_libraries() -> None:
    """Keep the terminal for our progress bars and summaries, not library deprecation chatter."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("transformers", "trl", "peft", "datasets", "accelerate", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass


def main() -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback."""
    _quiet_libraries()
    try:
        app()
    except PosttrainError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
