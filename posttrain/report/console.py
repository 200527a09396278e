"""Console tables: `posttrain runs list` and `runs show ID`, a run's summary, the quickstart table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from posttrain.report.markdown import format_value
from posttrain.report.tune_timeline import tune_timeline
from posttrain.store import EpisodeRecord, RunRecord, TaskAttemptRecord

STATUS_STYLES = {"running": "cyan", "completed": "green", "failed": "red", "diverged": "magenta"}
# Metrics worth a column in `runs list`, in the order shown; others only appear in `runs show`.
HEADLINE_METRICS = ("eval_loss", "perplexity", "accuracy", "reward")


def _compact(mapping: Mapping[str, Any]) -> str:
    """`lr=0.0002 r=8` -- one line for hparams or decisions in a table cell."""
    return " ".join(f"{key}={format_value(value)}" for key, value in mapping.items()) or "-"


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
        if run.kind == "tune":
            parts.append(tune_timeline(episodes, run.metrics))
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


# The quickstart table's columns, in the order the README shows them.
COMPLIANCE_COLUMNS = ("full_compliance", "thought_prefix_rate", "json_validity", "tool_choice_accuracy", "n")


def summary_table(title: str, summary: dict[str, Any]) -> Table | None:
    """One key/value row per summary entry, floats to 4 significant digits; None on the non-main
    ranks of a launch, so a run prints one table, not one per rank."""
    from posttrain.distributed import is_main_process

    if not is_main_process():
        return None
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key, str(value))
    return table


FAMILY_COLUMNS = ("ast_accuracy", "must_call_rate", "irrelevance_accuracy", "hallucinated_function_rate")


def compliance_table(result: dict[str, Any]) -> Table:
    """Quickstart's last word for each model it trained: AST accuracy and its companions on tool
    families never trained on (the headline), then format compliance on held-out episodes."""
    title = f"tool use: unseen tool families, then held-out episodes ({result['run_dir']}/report.md)"
    families = result.get("families", {})
    table = Table("model", *FAMILY_COLUMNS, *COMPLIANCE_COLUMNS, title=title)
    for label, metrics in result["compliance"].items():
        unseen = families.get(label, {})
        table.add_row(
            label,
            *[str(unseen.get(k)) for k in FAMILY_COLUMNS],
            *[str(metrics.get(k)) for k in COMPLIANCE_COLUMNS],
        )
    return table
