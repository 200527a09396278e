"""`posttrain rlhf`'s per-stage metrics, store episodes and report.md with plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from posttrain.report.markdown import format_value, markdown_table
from posttrain.report.plots import integer_ticks, new_figure
from posttrain.rundir import RunDir
from posttrain.store import Store

STAGES = ("sft", "reward_model", "rl")
# Columns of the RL step table in report.md, in order; absent ones are skipped.
RL_COLUMNS = (
    "reward",
    "adlf/external",
    "adlf/internal",
    "adlf/coherence",
    "adlf/length",
    "adlf/fluency",
    "adlf/faithfulness",
    "kl",
    "beta",
    "completions/mean_length",
    "contrastive/loss",
)


def stage_rows(run: RunDir) -> list[dict[str, Any]]:
    """Every stage's per-step rows, each with its "stage"."""
    rows = []
    for stage in STAGES:
        path = run.path / f"metrics_{stage}.jsonl"
        if path.exists():
            rows += [{"stage": stage, **json.loads(x)} for x in path.read_text().splitlines() if x]
    return rows


def record_stage(
    store: Store | None, run_id: int | None, index: int, stage: str, summary: dict[str, Any], run: RunDir
) -> None:
    """One store episode per finished stage: its summary and every logged step (rank 0 only)."""
    if (
        store is None
        or run_id is None
        or not summary
        or any(e.kind == stage for e in store.list_episodes(run_id))
    ):
        return
    steps = [{k: v for k, v in r.items() if k != "stage"} for r in stage_rows(run) if r["stage"] == stage]
    store.add_episode(run_id, index, stage, {}, {**summary, "per_step": steps}, {})


def join_stage_metrics(run: RunDir) -> list[dict[str, Any]]:
    """metrics.jsonl: every stage's per-step rows in one file, each with its "stage"; returns them."""
    rows = stage_rows(run)
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [
        (r["step"], float(r[key]))
        for r in rows
        if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool) and math.isfinite(r[key])
    ]


def _plot(path: Path, title: str, rows: list[dict[str, Any]], left: list[str], right: list[str] = ()) -> bool:
    """Lines of `left` keys per step (and `right` keys on a second axis); False when nothing to draw."""
    if not any(_series(rows, k) for k in [*left, *right]):
        return False
    figure = new_figure()
    axes = figure.add_subplot()
    for key in left:
        if points := _series(rows, key):
            axes.plot(*zip(*points, strict=True), label=key, linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_ylabel(", ".join(left))
    integer_ticks(axes)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if right:
        twin = axes.twinx()
        for key in right:
            if points := _series(rows, key):
                twin.plot(*zip(*points, strict=True), label=key, linewidth=1.2, linestyle="--", color="black")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    axes.legend(handles, labels, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return True


def write_rlhf_report(run_dir: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """report.md with the summary, held-out result, each stage's steps and plots/*.png."""
    by_stage = {s: [r for r in rows if r["stage"] == s and "loss" in r] for s in STAGES}
    plots = run_dir / "plots"
    parts = [f"# posttrain rlhf: {summary['run']}\n", "## Summary\n"]
    parts.append(markdown_table(["key", "value"], [(k, format_value(v)) for k, v in summary.items()]))
    if "reward_gain" in summary:
        lo, hi = summary["reward_gain_ci"]
        parts += [
            "## Held-out prompts (external reward model)\n",
            f"SFT {summary['sft_reward_mean']:.4f} → RL {summary['rl_reward_mean']:.4f}: gain "
            f"{summary['reward_gain']:+.4f}, 95% bootstrap CI [{lo:+.4f}, {hi:+.4f}] over "
            f"{summary['eval_prompts']} prompts × {summary['eval_samples']} samples "
            "(every completion in `eval_heldout.jsonl`).\n",
        ]
    for stage, title in (("sft", "SFT"), ("reward_model", "Reward model")):
        if by_stage[stage]:
            columns = [
                c for c in ("loss", "accuracy", "learning_rate", "grad_norm") if c in by_stage[stage][0]
            ]
            parts += [f"## {title} per step\n", _step_table(by_stage[stage], columns)]
            if _plot(plots / f"{stage}_loss.png", f"{title} loss", by_stage[stage], ["loss"]):
                parts.append(f"![{title} loss](plots/{stage}_loss.png)\n")
    rl = by_stage["rl"]
    if rl:
        parts += ["## RL per step\n", _step_table(rl, [c for c in RL_COLUMNS if any(c in r for r in rl)])]
        components = ["reward", "adlf/external", "adlf/internal"] + [
            k
            for k in rl[0]
            if k.startswith("adlf/") and k not in ("adlf/external", "adlf/internal", "adlf/reward")
        ]
        for name, title, left, right in (
            ("rewards", "ADLF reward and its components", components, []),
            ("kl_beta", "KL to the reference (solid) and beta (dashed)", ["kl"], ["beta"]),
            ("lengths", "completion length (tokens)", ["completions/mean_length"], []),
        ):
            if _plot(plots / f"{name}.png", title, rl, left, right):
                parts.append(f"![{title}](plots/{name}.png)\n")
    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _step_table(rows: list[dict[str, Any]], columns: list[str], limit: int = 20) -> str:
    shown = (
        rows if len(rows) <= limit else [rows[round(i * (len(rows) - 1) / (limit - 1))] for i in range(limit)]
    )
    note = (
        f"{len(shown)} of {len(rows)} steps; every step is in `metrics.jsonl`.\n\n"
        if len(shown) < len(rows)
        else ""
    )
    return note + markdown_table(
        ["step", *columns], [[r["step"], *(r.get(c) for c in columns)] for r in shown]
    )
