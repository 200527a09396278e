"""The report of a training run: `report.md` with the summary and a table of every logged step,
`plots/loss.png`, and for DPO `plots/rewards.png` (reward margin and accuracy, what DPO is
judged by)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from posttrain.report.markdown import markdown_table
from posttrain.report.plots import integer_ticks, new_figure, nothing_to_plot


def _finite_float(value: Any) -> float | None:
    """A plottable number: ints and finite floats; NaN, inf, the store's "nan" strings -> None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _merge_by_step(metrics_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """HF Trainer logs train and eval at one step as separate dicts; make one row per step."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in metrics_rows:
        if "step" not in row:
            continue
        by_step.setdefault(int(row["step"]), {}).update(row)
    return [by_step[step] for step in sorted(by_step)]


def _plot_loss(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Train loss per step, eval loss as markers; non-finite losses are left out of the curve.

    Returns False, writing no file, when there is no finite loss to plot.
    """
    train = [(r["step"], v) for r in rows if (v := _finite_float(r.get("loss"))) is not None]
    evals = [(r["step"], v) for r in rows if (v := _finite_float(r.get("eval_loss"))) is not None]
    if not train and not evals:
        return False
    figure = new_figure()
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if evals:  # measured every eval_steps: points, not a line through steps never evaluated
        axes.plot(*zip(*evals, strict=True), label="eval loss", marker="o", linestyle="none")
    integer_ticks(axes)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return True


REWARD_KEYS = ("rewards/margins", "rewards/accuracies")


def _plot_rewards(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """DPO's implicit rewards per step: the margin (chosen - rejected) and the share of pairs whose
    chosen answer wins, on two panels (their scales differ). False, writing nothing, without them."""
    panels = [
        ("reward margin (chosen - rejected)", "margin", "rewards/margins"),
        ("reward accuracy (chosen > rejected)", "accuracy", "rewards/accuracies"),
    ]
    series = {
        key: (
            [(r["step"], v) for r in rows if (v := _finite_float(r.get(key))) is not None],
            [(r["step"], v) for r in rows if (v := _finite_float(r.get(f"eval_{key}"))) is not None],
        )
        for _, _, key in panels
    }
    if not any(train or evals for train, evals in series.values()):
        return False
    figure = new_figure((9, 3.5))
    for i, (panel_title, ylabel, key) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, i)
        train, evals = series[key]
        if train:
            axes.plot(*zip(*train, strict=True), label="train", linewidth=1.2)
        if evals:
            axes.plot(*zip(*evals, strict=True), label="eval", marker="o", linestyle="none")
        if key == "rewards/accuracies":
            axes.set_ylim(-0.05, 1.05)
        integer_ticks(axes)
        axes.set(xlabel="step", ylabel=ylabel, title=panel_title)
        axes.grid(alpha=0.3)
        if train or evals:
            axes.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return True


def write_training_report(
    run_dir: Path,
    title: str,
    summary: Mapping[str, Any],
    metrics_rows: Sequence[Mapping[str, Any]],
) -> Path:
    """Write `run_dir/report.md` and `run_dir/plots/loss.png`; returns the report's path.

    `metrics_rows` are Trainer log dicts ({"step": 3, "loss": 2.1}, {"step": 10, "eval_loss": 1.9});
    rows without a step are ignored. The step table has every logged step; the plot uses every
    finite loss. With none at all, no plot is written and the report says so. DPO logs
    (`rewards/margins`, `rewards/accuracies`) also get their columns and `plots/rewards.png`.
    Overwrites an earlier report in the same directory.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = _merge_by_step(metrics_rows)
    plotted = _plot_loss(rows, run_dir / "plots" / "loss.png", title)
    rewards = _plot_rewards(rows, run_dir / "plots" / "rewards.png", title)

    parts = [f"# {title}\n", "## Summary\n", markdown_table(["key", "value"], list(summary.items()))]
    if rows:
        known = ("loss", "eval_loss", *REWARD_KEYS, "learning_rate", "grad_norm")
        columns = ["step"] + [c for c in known if any(c in r for r in rows)]
        parts.append("## Loss per step\n")
        parts.append(markdown_table(columns, [[r.get(c) for c in columns] for r in rows]))
    parts.append("## Plots\n")
    if plotted:
        parts.append("![loss per step](plots/loss.png)\n")
    else:
        parts.append(nothing_to_plot("loss per step", "no finite loss was logged"))
    if rewards:
        parts.append("![DPO reward margin and accuracy per step](plots/rewards.png)\n")

    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
