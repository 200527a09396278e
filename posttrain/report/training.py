"""The report of a training run: `report.md` with the summary and a step table, and
`plots/loss.png`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from posttrain.report.markdown import markdown_table
from posttrain.report.plots import new_figure

MAX_STEP_ROWS = 20


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


def _spread(items: list[int], n: int) -> list[int]:
    """`n` evenly spaced items, first and last included (all of them when there are few)."""
    if len(items) <= n:
        return items
    if n <= 1:
        return items[:n]
    return [items[round(k * (len(items) - 1) / (n - 1))] for k in range(n)]


def _trim(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most `limit` rows: first, last, eval steps (up to half), the rest evenly spaced."""
    if len(rows) <= limit:
        return rows
    evals = [i for i, row in enumerate(rows) if "eval_loss" in row]
    keep = {0, len(rows) - 1, *_spread(evals, limit // 2)}
    others = [i for i in range(len(rows)) if i not in keep]
    keep.update(_spread(others, limit - len(keep)))
    return [rows[i] for i in sorted(keep)]


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
    if evals:
        axes.plot(*zip(*evals, strict=True), label="eval loss", marker="o", linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
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
    rows without a step are ignored. The step table keeps at most 20 steps: first, last, eval
    steps, the rest evenly spaced; the plot uses every finite loss. With none at all, no plot is written.
    Overwrites an earlier report in the same directory.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = _merge_by_step(metrics_rows)
    plotted = _plot_loss(rows, run_dir / "plots" / "loss.png", title)

    parts = [f"# {title}\n", "## Summary\n", markdown_table(["key", "value"], list(summary.items()))]
    if rows:
        columns = ["step"] + [
            c for c in ("loss", "eval_loss", "learning_rate", "grad_norm") if any(c in r for r in rows)
        ]
        shown = _trim(rows, MAX_STEP_ROWS)
        parts.append("## Loss per step\n")
        if len(shown) < len(rows):
            parts.append(f"{len(shown)} of {len(rows)} logged steps; every step is in `metrics.jsonl`.\n")
        parts.append(markdown_table(columns, [[r.get(c) for c in columns] for r in shown]))
    if plotted:
        parts.append("## Plots\n")
        parts.append("![loss per step](plots/loss.png)\n")

    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
