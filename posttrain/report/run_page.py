"""The dashboard's page of one run: summary, config, curves, and what its kind records (the
tune decision timeline, SEAL self-edits, align trajectories), then its executor attempts."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import yaml

from posttrain.report.html import cell, finite_number, page, table
from posttrain.report.svg import Series, chart
from posttrain.report.timeline import (
    attempts_section,
    self_edit_section,
    timeline_section,
    trajectory_section,
)
from posttrain.store.records import (
    AgentMessageRecord,
    EpisodeRecord,
    RunRecord,
    SelfEditRecord,
    TaskAttemptRecord,
    TrajectoryRecord,
)

# (title, y label, keys): each chart draws the keys present; "eval_" keys are measured now and
# then, so they are drawn as points.
STEP_CHARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss per step", "loss", ("loss", "eval_loss")),
    ("DPO reward margin (chosen - rejected)", "margin", ("rewards/margins", "eval_rewards/margins")),
    (
        "DPO reward accuracy (chosen > rejected)",
        "accuracy",
        ("rewards/accuracies", "eval_rewards/accuracies"),
    ),
    ("RL reward per step", "reward", ("reward", "eval_reward")),
    ("KL to the reference per step", "KL", ("kl", "objective/kl")),
)


@dataclass
class RunData:
    """What a run page shows: the store's records of one run and its metrics files by stage."""

    run: RunRecord
    episodes: list[EpisodeRecord] = field(default_factory=list)
    messages: list[AgentMessageRecord] = field(default_factory=list)
    self_edits: list[SelfEditRecord] = field(default_factory=list)
    trajectories: list[TrajectoryRecord] = field(default_factory=list)
    attempts: list[TaskAttemptRecord] = field(default_factory=list)
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    run_dir: Path | None = None


def run_page(data: RunData) -> str:
    """One run: header, summary, config, curves, then what its kind records (decisions,
    self-edits, trajectories) and its executor attempts."""
    r = data.run
    parts = [
        f'<h1 id="run-name">{escape(r.name)}</h1>',
        f'<p class="muted">run {r.id} · {escape(r.kind)} · <span class="status {escape(r.status)}">'
        f"{escape(r.status)}</span> · created {cell(r.created_at)} · folder "
        f"{escape(str(data.run_dir) if data.run_dir else (r.run_dir or '-'))}</p>",
        '<p><button type="button" id="toggle-all">open / close all details</button></p>',
    ]
    if r.error:
        parts.append(f'<p class="error">error: {escape(r.error)}</p>')
    if r.metrics:
        parts.append("<h2>Summary</h2>" + table(["key", "value"], list(r.metrics.items()), "kv"))
    parts.append(
        "<details><summary>config</summary><pre>"
        + escape(yaml.safe_dump(r.config, sort_keys=False, allow_unicode=True))
        + "</pre></details>"
    )
    parts.append(curves_section(data))
    agentic = any(e.decisions.get("tuner") or e.decisions.get("proposed_by") for e in data.episodes)
    if r.kind == "tune" or agentic:
        parts.append(timeline_section(data.episodes, data.messages))
    elif data.episodes:
        parts.append(_episodes_table(data.episodes))
    if data.self_edits:
        parts.append(self_edit_section(data.self_edits, data.episodes))
    if data.trajectories:
        parts.append(trajectory_section(data.trajectories))
    if data.attempts:
        parts.append(attempts_section(data.attempts))
    return page(f"{r.name} · posttrain", "\n".join(parts))


def curves_section(data: RunData) -> str:
    """Per-step charts from the metrics files, then per-episode charts from the store."""
    charts = []
    for group, rows in data.curves.items():
        for title, ylabel, keys in STEP_CHARTS:
            present = [k for k in keys if any(k in row for row in rows)]
            if not present:
                continue
            series = [Series(k, _points(rows, "step", k), joined=not k.startswith("eval_")) for k in present]
            name = f"{group}: {title}" if group else title
            charts.append(chart(name, "step", ylabel, series))
    charts.extend(_episode_charts(data.run.kind, data.episodes))
    if not charts:
        return "<h2>Curves</h2><p class='empty'>Nothing to plot: this run logged no steps or episodes.</p>"
    return "<h2>Curves</h2>" + '<div class="charts">' + "".join(charts) + "</div>"


def _episode_charts(kind: str, episodes: list[EpisodeRecord]) -> list[str]:
    if not episodes:
        return []
    unit = "iteration" if kind == "seal" else "episode"
    if kind == "tune":
        keys = [("eval_loss", "TRAIN eval loss"), ("seal_eval_loss", "SEAL eval loss")]
        series = [Series(label, _per_episode(episodes, key), joined=False) for key, label in keys]
        return [chart("eval loss per episode (each point is one trained model)", unit, "eval loss", series)]
    numeric = sorted({k for e in episodes for k, v in e.metrics.items() if finite_number(v) is not None})
    wanted = [k for k in numeric if any(w in k for w in ("loss", "reward", "score", "accuracy"))][:4]
    return [
        chart(
            f"{k} per {unit}",
            unit,
            k,
            [Series(k, _per_episode(episodes, k), joined=False)],
        )
        for k in wanted
    ]


def _per_episode(episodes: list[EpisodeRecord], key: str) -> list[tuple[float, float]]:
    return [(e.index, v) for e in episodes if (v := finite_number(e.metrics.get(key))) is not None]


def _episodes_table(episodes: list[EpisodeRecord]) -> str:
    rows = [[e.index, e.kind, e.status, e.hparams, e.metrics] for e in episodes]
    return "<h2>Episodes</h2>" + table(["episode", "kind", "status", "hparams", "metrics"], rows, "episodes")


def _points(rows: list[dict[str, Any]], x: str, y: str) -> list[tuple[float, float]]:
    return [
        (float(row[x]), value)
        for row in rows
        if finite_number(row.get(x)) is not None and (value := finite_number(row.get(y))) is not None
    ]
