"""`posttrain rlhf`'s per-stage metrics, store episodes and report.md with plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from posttrain.report.markdown import format_value, markdown_table
from posttrain.report.plots import integer_ticks, new_figure, nothing_to_plot
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
            if key.startswith("eval_"):  # measured every eval_steps: points, not a line between them
                axes.plot(*zip(*points, strict=True), label=key, marker="o", linestyle="none")
            else:
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
    by_stage = {s: _steps(rows, s) for s in STAGES}
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
            known = ("loss", "eval_loss", "accuracy", "eval_accuracy", "learning_rate", "grad_norm")
            columns = [c for c in known if any(c in r for r in by_stage[stage])]
            parts += [f"## {title} per step\n", _step_table(by_stage[stage], columns)]
            if _plot(plots / f"{stage}_loss.png", f"{title} loss", by_stage[stage], ["loss", "eval_loss"]):
                parts.append(f"![{title} loss](plots/{stage}_loss.png)\n")
            else:
                parts.append(nothing_to_plot(f"{title} loss", "no finite loss was logged"))
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
            else:
                parts.append(nothing_to_plot(title, "no finite value was logged"))
    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _steps(rows: list[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    """A stage's logged steps, its train and eval rows of one step merged into one; the
    end-of-training row (`train_runtime`, a mean loss) is not a step."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["stage"] == stage and "step" in row and "train_runtime" not in row:
            by_step.setdefault(int(row["step"]), {}).update(row)
    return [by_step[step] for step in sorted(by_step)]


def _step_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Every logged step: a sample of them hid the step where a run went wrong."""
    return markdown_table(["step", *columns], [[r["step"], *(r.get(c) for c in columns)] for r in rows])
