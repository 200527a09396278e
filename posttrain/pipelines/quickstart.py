"""`posttrain quickstart`, the main job of `make demo`.

It reads top to bottom: materialize the embedded model → write tool-use data (ReAct episodes of
the five executable tools and function-pool requests) → 3 agentic episodes (rules agents, or an
OpenAI-compatible endpoint when one is configured) with the SEAL stage → DPO on the best adapter
→ a base / tuned / DPO table: AST accuracy and its companions on tool families never trained on
(the headline), and format compliance on held-out episodes of the five tools. Each stage is a
real run of its own pipeline (`posttrain tune`, `posttrain dpo`), recorded in the store; the
quickstart's own directory holds the table.

The one pipeline that imports other pipelines, by design: it is a recipe of recipes, and the
runs it starts are the same runs a user gets from those commands (own directory, store row,
report), so there is no shared step to move down. It builds their configs as objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
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
from posttrain.report.changes import from_flat, regressions_markdown
from posttrain.rundir import RunDir
from posttrain.tasks.metrics import flat
from posttrain.tasks.tool_use import (
    USER_EVAL_METRICS,
    build_registry,
    generate_tool_use_data,
    tool_use_episode_rows,
    tool_use_system_prompt,
    tool_use_turn_metrics,
    user_eval_figures,
    with_system_prompt,
)
from posttrain.tasks.tool_use.pool_align import pool_training
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.pool_rows import pool_prompt, pool_rows

console = Console()
EVAL_SEED = 7  # never a training seed: the held-out episodes are new values of the same templates
FAMILIES_SHOWN = USER_EVAL_METRICS
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
    seconds: dict[str, float] = {}
    with _timed(seconds, "model"):
        console.rule("1/5 embedded model")
        if cfg.model.name in ("smollm2-135m", "tiny-random"):
            console.print(f"{cfg.model.name}: {materialize(cfg.model.name)}")
    with _timed(seconds, "data"):
        console.rule("2/5 tool-use data")
        sft_path, pref_path = write_data(out / "data", cfg.rows, cfg.seed, cfg.pool_rows)
    with _timed(seconds, "tune"):
        console.rule(f"3/5 {cfg.episodes} agentic episodes with the SEAL stage")
        tune = _stage(run_tune, tune_config(cfg, sft_path, root, f"{name}-tune"), resume)
    tuned = Path(tune["run_dir"]) / "adapter"
    with _timed(seconds, "dpo"):
        console.rule("4/5 DPO on the best adapter")
        dpo = _stage(run_dpo, dpo_config(cfg, pref_path, tuned, root, f"{name}-dpo"), resume)
    adapters = {
        "base": None,
        "tuned": tuned,
        "dpo": Path(dpo["run_dir"]) / "adapter",
    }
    with _timed(seconds, "evaluation"):
        console.rule("5/5 unseen tool families and held-out episodes")
        evaluated = {
            label: evaluate_model(cfg.model, adapter, cfg.eval_episodes, cfg.eval_items)
            for label, adapter in adapters.items()
        }
    families = {label: figs for label, (figs, _) in evaluated.items()}
    table = {label: figs for label, (_, figs) in evaluated.items()}
    write_report(out, cfg, tune, dpo, table, families, seconds)
    console.print(f"seconds per stage: {_per_stage(seconds)}")
    return {
        "run_dir": str(out),
        "tune": tune,
        "dpo": dpo,
        "families": families,
        "compliance": table,
        "seconds": seconds,
    }


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Wall seconds of one stage, so the report says where the demo's minutes went (a resumed
    stage that is read back costs ~0 and shows as such)."""
    start = time.perf_counter()
    yield
    seconds[stage] = round(time.perf_counter() - start, 1)


def _stage(run: Callable[..., dict[str, Any]], cfg: TuneConfig | DPOConfig, resume: bool) -> dict[str, Any]:
    """One recipe run of the demo. On resume a finished run is read back from its summary.json and
    a killed one (its `.partial` directory is there) continues; anything else starts fresh."""
    folder = RunDir(Path(cfg.run.output_root), cfg.run.name or "")
    if resume and (folder.final / "summary.json").exists():
        summary = json.loads((folder.final / "summary.json").read_text())
        return {**summary, "run_dir": str(folder.final)}
    return run(cfg, resume=resume and folder.partial.exists())


def write_data(folder: Path, n: int, seed: int, pool: int = 0) -> tuple[Path, Path]:
    """tool_use SFT rows and preference rows as two JSONL files: `n` turns of ReAct episodes (the
    compact system prompt) and `pool` function-pool requests (every tool in full), alternately
    an SFT row and a preference row (its gold turn against one defect)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = with_system_prompt(generate_tool_use_data(n, seed, "train"), tool_use_system_prompt("train", True))
    sft = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows if r["kind"] == "sft"]
    pref = [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
        for r in rows
        if r["kind"] == "preference"
    ]
    conversations, pairs = pool_training(pool, seed) if pool else ([], [])
    for i, (turns, pair) in enumerate(zip(conversations, pairs, strict=True)):
        if i % 2:
            pref.append({"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]})
        else:
            sft.append({"prompt": turns[:2], "completion": turns[2]["content"]})
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
            # 8 validation rows: each of the 6 trainings evaluates them (16 rows took 8 s each time)
            "data": {"path": str(data), "seed": cfg.seed, "max_val": 8},
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
    """The DPO stage: `cfg.dpo_steps` steps of 2 pairs, otherwise at DPO's defaults, on top of the
    tuned adapter."""
    return load_config(
        DPOConfig,
        extra={
            "model": cfg.model.model_dump(),
            # A pair is two sequences plus the reference's forward: at DPO's default batch of 4 a
            # step cost 41 s on 2 cores (246 s of the 853 s demo on a fresh clone), so 2 pairs a
            # step, and 8 validation pairs instead of 16 (its evaluation cost 47 s).
            "data": {"path": str(data), "max_val": 8, "max_length": cfg.max_length},
            "dpo": {"adapter": str(adapter)},
            "train": {"max_steps": cfg.dpo_steps, "batch_size": 2, "save_steps": 1000, "seed": cfg.seed},
            "run": {"name": name, "output_root": str(root), "store": cfg.run.store},
        },
    )


def evaluate_model(
    model: ModelSettings, adapter: Path | None, episodes: int, items: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(figures on `items` requests of unseen tool families, compliance of every turn of
    `episodes` held-out ReAct episodes with the gold history as context), greedy."""
    settings = device_settings(model.device, model.dtype, model.attn_implementation, model.use_kernels)
    llm, tok = load_for_inference(model.name, adapter, settings)
    unseen = pool_rows(items, EVAL_SEED, "heldout")
    replies = generate_batch(llm, tok, [pool_prompt(r) for r in unseen], max_new_tokens=96, batch_size=16)
    families, _ = user_eval_figures(replies, [pool_item(r, i) for i, r in enumerate(unseen)])
    rows = tool_use_episode_rows("train", EVAL_SEED, episodes, compact=True)
    texts = generate_batch(llm, tok, [r["prompt"] for r in rows], max_new_tokens=96, batch_size=16)
    with tempfile.TemporaryDirectory(prefix="posttrain-eval-") as tmp:
        figures = tool_use_turn_metrics(texts, rows, build_registry("train", Path(tmp)))
    return flat(families, n=len(unseen)), flat(figures, n=len(rows))


QUICKSTART_LABELS = {"base": "the base model", "tuned": "the tuned adapter", "dpo": "DPO"}


def write_report(
    out: Path,
    cfg: QuickstartConfig,
    tune: dict,
    dpo: dict,
    table: dict[str, dict],
    families: dict[str, dict],
    seconds: dict[str, float],
) -> Path:
    """report.md (the base/tuned/DPO tables, then every figure that got worse from one model to the
    next in words, then each stage's seconds), compliance.json and families.json in `out`."""
    rows = [
        [label, *[_cell(metrics.get(k)) for k in SHOWN], metrics.get("n")] for label, metrics in table.items()
    ]
    unseen = [
        [label, *[_cell(metrics.get(k)) for k in FAMILIES_SHOWN], metrics.get("n")]
        for label, metrics in families.items()
    ]
    text = "\n".join(
        [
            "# posttrain quickstart\n",
            f"Model `{cfg.model.name}`; {cfg.episodes} agentic episodes ({tune.get('backend')} agents, "
            "SEAL refine), "
            f"then {cfg.dpo_steps} DPO steps on the best adapter. Greedy decoding, no constraints.\n",
            f"Tool families never trained on ({cfg.eval_items} requests; AST accuracy is the headline, "
            "irrelevance counts only beside must-call):\n",
            markdown_table(["model", *FAMILIES_SHOWN, "n"], unseen),
            f"\nFormat compliance on {cfg.eval_episodes} held-out episodes of the five training tools "
            "(new values of the training templates):\n",
            markdown_table(["model", *SHOWN, "n turns"], rows),
            f"\nTune run: `{tune['run_dir']}` (best eval loss {tune.get('best_eval_loss')}); "
            f"DPO run: `{dpo['run_dir']}`.\n",
            regressions_markdown(
                {
                    "tool families never trained on": {
                        label: from_flat(m, FAMILIES_SHOWN) for label, m in families.items()
                    },
                    "held-out episodes of the five training tools": {
                        label: from_flat(m, SHOWN) for label, m in table.items()
                    },
                },
                QUICKSTART_LABELS,
            ),
            f"\nSeconds per stage: {_per_stage(seconds)}.\n",
        ]
    )
    (out / "report.md").write_text(text)
    (out / "compliance.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "families.json").write_text(json.dumps(families, indent=2) + "\n")
    return out / "report.md"


def _per_stage(seconds: dict[str, float]) -> str:
    return ", ".join(f"{stage} {s:.0f}" for stage, s in seconds.items())


def _cell(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value
