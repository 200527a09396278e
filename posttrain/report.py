"""Console tables and markdown reports for runs.

`runs_table` and `run_detail` back `posttrain runs list` and `posttrain runs show ID`;
`write_training_report` leaves `report.md` and `plots/loss.png` in a run directory.
Numbers print with 4 significant digits; a missing value prints as "-".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from posttrain.store import EpisodeRecord, RunRecord, TaskAttemptRecord

__all__ = ["format_value", "markdown_table", "run_detail", "runs_table", "write_training_report"]

STATUS_STYLES = {"running": "cyan", "completed": "green", "failed": "red", "diverged": "magenta"}
# Metrics worth a column in `runs list`, in the order shown; others only appear in `runs show`.
HEADLINE_METRICS = ("eval_loss", "perplexity", "accuracy", "reward")
MAX_STEP_ROWS = 20


def format_value(value: Any) -> str:
    """One cell: floats to 4 significant digits, dicts/lists as compact JSON, None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _compact(mapping: Mapping[str, Any]) -> str:
    """`lr=0.0002 r=8` -- one line for hparams or decisions in a table cell."""
    return " ".join(f"{key}={format_value(value)}" for key, value in mapping.items()) or "-"


def _finite_float(value: Any) -> float | None:
    """A plottable number: ints and finite floats; NaN, inf, the store's "nan" strings -> None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# ---------------------------------------------------------------- console


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def runs_table(runs: Sequence[RunRecord]) -> Table:
    """One row per run (pass them newest first, as `Store.list_runs` returns them)."""
    table = Table(title="runs", title_justify="left")
    for column in ("id", "name", "kind", "status", "created (UTC)"):
        table.add_column(column, no_wrap=column != "name", justify="right" if column == "id" else "left")
    headline = [m for m in HEADLINE_METRICS if any(m in run.metrics for run in runs)]
    for metric in headline:
        table.add_column(metric, justify="right")
    table.add_column("run dir / error")
    for run in runs:
        table.add_row(
            str(run.id),
            run.name,
            run.kind,
            _status(run.status),
            run.created_at.strftime("%Y-%m-%d %H:%M"),
            *(format_value(run.metrics.get(metric)) for metric in headline),
            Text(run.error, style="red") if run.error else (run.run_dir or "-"),
        )
    return table


def run_detail(
    run: RunRecord, episodes: Sequence[EpisodeRecord], attempts: Sequence[TaskAttemptRecord] = ()
) -> Group:
    """Everything `runs show` prints: run fields, final metrics, one row per episode, and the
    executor's task attempts (tasks and retries per stage, then every attempt that did not succeed)."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    fields.add_row("run", f"{run.id}  {run.name}")
    fields.add_row("kind", run.kind)
    fields.add_row("status", _status(run.status))
    fields.add_row("created", run.created_at.isoformat(timespec="seconds"))
    fields.add_row("updated", run.updated_at.isoformat(timespec="seconds"))
    if run.heartbeat_at is not None:
        fields.add_row("heartbeat", run.heartbeat_at.isoformat(timespec="seconds"))
    fields.add_row("run dir", run.run_dir or "-")
    if run.error:
        fields.add_row("error", Text(run.error, style="red"))
    parts: list[Any] = [fields]

    if run.metrics:
        metrics = Table(title="final metrics", title_justify="left")
        metrics.add_column("metric")
        metrics.add_column("value", justify="right")
        for key, value in run.metrics.items():
            metrics.add_row(key, format_value(value))
        parts.append(metrics)

    if episodes:
        table = Table(title="episodes", title_justify="left")
        for column in ("#", "kind", "status", "hparams", "eval_loss", "perplexity", "decisions"):
            justify = "right" if column in ("#", "eval_loss", "perplexity") else "left"
            table.add_column(column, justify=justify)
        for episode in episodes:
            table.add_row(
                str(episode.index),
                episode.kind,
                episode.status,
                _compact(episode.hparams),
                format_value(episode.metrics.get("eval_loss")),
                format_value(episode.metrics.get("perplexity")),
                _compact(episode.decisions),
            )
        parts.append(table)
    if attempts:
        parts += _attempt_tables(attempts)
    return Group(*parts)


def _attempt_tables(attempts: Sequence[TaskAttemptRecord]) -> list[Table]:
    stages = Table(title="executor tasks", title_justify="left")
    for column in ("stage", "tasks", "attempts", "ok", "failed", "lost", "running"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for stage in dict.fromkeys(a.stage for a in attempts):
        mine = [a for a in attempts if a.stage == stage]
        count = {
            status: sum(a.status == status for a in mine) for status in ("ok", "failed", "lost", "running")
        }
        tasks = len({a.task_key for a in mine})
        stages.add_row(stage, str(tasks), str(len(mine)), *(str(n) for n in count.values()))
    tables = [stages]
    bad = [a for a in attempts if a.status in ("failed", "lost")]
    if bad:
        failures = Table(title="failed task attempts", title_justify="left")
        for column in ("stage", "task", "attempt", "status", "worker", "error"):
            failures.add_column(column, justify="right" if column == "attempt" else "left")
        for a in bad:
            error = Text(a.error or "-", style="red")
            failures.add_row(a.stage, a.task_key, str(a.attempt), a.status, a.worker or "-", error)
        tables.append(failures)
    return tables


# ---------------------------------------------------------------- markdown


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells go through `format_value`, pipes are escaped."""

    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else format_value(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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
    # Figure + the Agg canvas directly: no pyplot, so no global backend switch and no GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
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
