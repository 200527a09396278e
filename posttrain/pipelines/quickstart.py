"""`posttrain quickstart`, the main job of `make demo`.

It reads top to bottom: materialize the embedded model → write tool-use data → 3 agentic
episodes (rules agents, or an OpenAI-compatible endpoint when one is configured) with the
SEAL stage → DPO on the best adapter → a base / tuned / DPO compliance table on held-out
episodes of the same tools. Each stage is a real run of its own pipeline (`posttrain tune`,
`posttrain dpo`), recorded in the store; the quickstart's own directory holds the table.

The one pipeline that imports other pipelines, by design: it is a recipe of recipes, and the
runs it starts are the same runs a user gets from those commands (own directory, store row,
report), so there is no shared step to move down. It builds their configs as objects.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.config import DPOConfig, ModelSettings, QuickstartConfig, TuneConfig, load_config
from posttrain.errors import PosttrainError
from posttrain.inference import generate_batch
from posttrain.models import device_settings, load_for_inference, materialize
from posttrain.pipelines.finetune import run_dpo
from posttrain.pipelines.tune import run_tune
from posttrain.report import markdown_table
from posttrain.rundir import RunDir
from posttrain.tasks.metrics import flat
from posttrain.tasks.tool_use import (
    build_registry,
    generate_tool_use_data,
    tool_use_episode_rows,
    tool_use_system_prompt,
    tool_use_turn_metrics,
    with_system_prompt,
)

console = Console()
EVAL_SEED = 7  # never a training seed: the held-out episodes are new values of the same templates
SHOWN = (
    "full_compliance",
    "thought_prefix_rate",
    "json_validity",
    "tool_choice_accuracy",
    "argument_accuracy",
    "hallucinated_tool_rate",
    "irrelevance_accuracy",
)


def run_quickstart(cfg: QuickstartConfig, resume: bool = False) -> dict[str, Any]:
    """Run the whole demo; returns the compliance table (also in <root>/<name>/report.md).

    With `resume` (and `run.name`) a stage whose run finished is read back and a killed one
    continues from its checkpoints; the data is regenerated from the same seed.
    """
    if resume and cfg.run.name is None:
        raise PosttrainError("--resume needs the run's name: add --name NAME")
    name = cfg.run.name or f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(cfg.run.output_root)
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    console.rule("1/5 embedded model")
    if cfg.model.name in ("smollm2-135m", "tiny-random"):
        console.print(f"{cfg.model.name}: {materialize(cfg.model.name)}")
    console.rule("2/5 tool-use data")
    sft_path, pref_path = write_data(out / "data", cfg.rows, cfg.seed)
    console.rule(f"3/5 {cfg.episodes} agentic episodes with the SEAL stage")
    tune = _stage(run_tune, tune_config(cfg, sft_path, root, f"{name}-tune"), resume)
    console.rule("4/5 DPO on the best adapter")
    tuned = Path(tune["run_dir"]) / "adapter"
    dpo = _stage(run_dpo, dpo_config(cfg, pref_path, tuned, root, f"{name}-dpo"), resume)
    console.rule("5/5 compliance on held-out episodes")
    adapters = {
        "base": None,
        "tuned": tuned,
        "dpo": Path(dpo["run_dir"]) / "adapter",
    }
    table = {
        label: evaluate_compliance(cfg.model, adapter, cfg.eval_episodes)
        for label, adapter in adapters.items()
    }
    write_report(out, cfg, tune, dpo, table)
    return {"run_dir": str(out), "tune": tune, "dpo": dpo, "compliance": table}


def _stage(run: Callable[..., dict[str, Any]], cfg: TuneConfig | DPOConfig, resume: bool) -> dict[str, Any]:
    """One recipe run of the demo. On resume a finished run is read back from its summary.json and
    a killed one (its `.partial` directory is there) continues; anything else starts fresh."""
    folder = RunDir(Path(cfg.run.output_root), cfg.run.name or "")
    if resume and (folder.final / "summary.json").exists():
        summary = json.loads((folder.final / "summary.json").read_text())
        return {**summary, "run_dir": str(folder.final)}
    return run(cfg, resume=resume and folder.partial.exists())


def write_data(folder: Path, n: int, seed: int) -> tuple[Path, Path]:
    """tool_use SFT rows and preference rows, with the compact system prompt, as two JSONL files."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = with_system_prompt(generate_tool_use_data(n, seed, "train"), tool_use_system_prompt("train", True))
    sft = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows if r["kind"] == "sft"]
    pref = [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
        for r in rows
        if r["kind"] == "preference"
    ]
    sft_path, pref_path = folder / "sft.jsonl", folder / "preference.jsonl"
    sft_path.write_text("".join(json.dumps(r) + "\n" for r in sft))
    pref_path.write_text("".join(json.dumps(r) + "\n" for r in pref))
    console.print(f"{len(sft)} SFT rows → {sft_path}\n{len(pref)} preference rows → {pref_path}")
    return sft_path, pref_path


def _agent_backend() -> str:
    """openai when an endpoint or key is configured, the offline rules otherwise."""
    return "openai" if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY") else "rules"


def tune_config(cfg: QuickstartConfig, data: Path, root: Path, name: str) -> TuneConfig:
    """The tune stage: `cfg.episodes` episodes of `cfg.trial_steps` steps each, SEAL refine."""
    return load_config(
        TuneConfig,
        extra={
            "model": cfg.model.model_dump(),
            "data": {"path": str(data), "seed": cfg.seed, "max_val": 16},
            # Batch 8 doubles a step's cost; capping it keeps every episode's cost fixed, so the
            # 3 episodes fit the 15-minute budget on 2 cores even when the tuner scales up.
            "search_space": {"batch_size": {"values": [1, 2, 4], "default": 4}},
            "agents": {
                "backend": _agent_backend(),
                "max_episodes": cfg.episodes,
                "force_min_episodes": cfg.episodes,
                "seed": cfg.seed,
            },
            "seal": {"mode": "refine"},
            "trial": {"max_steps": cfg.trial_steps, "max_length": cfg.max_length},
            "run": {"name": name, "output_root": str(root), "store": cfg.run.store},
        },
    )


def dpo_config(cfg: QuickstartConfig, data: Path, adapter: Path, root: Path, name: str) -> DPOConfig:
    """The DPO stage: `cfg.dpo_steps` steps at DPO's defaults on top of the tuned adapter."""
    return load_config(
        DPOConfig,
        extra={
            "model": cfg.model.model_dump(),
            "data": {"path": str(data), "max_val": 16, "max_length": cfg.max_length},
            "dpo": {"adapter": str(adapter)},
            "train": {"max_steps": cfg.dpo_steps, "save_steps": 1000, "seed": cfg.seed},
            "run": {"name": name, "output_root": str(root), "store": cfg.run.store},
        },
    )


def evaluate_compliance(model: ModelSettings, adapter: Path | None, episodes: int) -> dict[str, Any]:
    """Each held-out turn generated greedily with the gold history as context, then scored."""
    rows = tool_use_episode_rows("train", EVAL_SEED, episodes, compact=True)
    settings = device_settings(model.device, model.dtype, model.attn_implementation, model.use_kernels)
    model, tok = load_for_inference(model.name, adapter, settings)
    texts = generate_batch(model, tok, [r["prompt"] for r in rows], max_new_tokens=96, batch_size=16)
    with tempfile.TemporaryDirectory(prefix="posttrain-eval-") as tmp:
        figures = tool_use_turn_metrics(texts, rows, build_registry("train", Path(tmp)))
    return flat(figures, n=len(rows))


def write_report(out: Path, cfg: QuickstartConfig, tune: dict, dpo: dict, table: dict[str, dict]) -> Path:
    rows = [
        [label, *[_cell(metrics.get(k)) for k in SHOWN], metrics.get("n")] for label, metrics in table.items()
    ]
    text = "\n".join(
        [
            "# posttrain quickstart\n",
            f"Model `{cfg.model.name}`; {cfg.episodes} agentic episodes ({tune.get('backend')} agents, "
            "SEAL refine), "
            f"then {cfg.dpo_steps} DPO steps on the best adapter. Scored on {cfg.eval_episodes} held-out "
            "tool-use episodes (new values of the training templates), greedy decoding, no constraints.\n",
            markdown_table(["model", *SHOWN, "n turns"], rows),
            f"\nTune run: `{tune['run_dir']}` (best eval loss {tune.get('best_eval_loss')}); "
            f"DPO run: `{dpo['run_dir']}`.\n",
        ]
    )
    (out / "report.md").write_text(text)
    (out / "compliance.json").write_text(json.dumps(table, indent=2) + "\n")
    return out / "report.md"


def _cell(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value
