"""`runs list` and `runs show` tables, built from runs stored in a real SQLite file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.report import run_detail, runs_table
from posttrain.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'history.db'}") as opened:
        yield opened


def _render(renderable: object) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(renderable)
    return console.export_text()


def _cells(text: str) -> list[list[str]]:
    """Header and body rows of a rendered rich table, as stripped cell strings."""
    return [
        [cell.strip() for cell in line.strip()[1:-1].split(line.strip()[0])]
        for line in text.splitlines()
        if line.strip()[:1] in ("┃", "│")
    ]


def test_runs_table_shows_every_run_with_status_and_headline_metrics(store: Store) -> None:
    done = store.create_run("tune-smollm", "tune", {}, "runs/tune-smollm")
    store.update_run(done, status="completed", metrics={"eval_loss": 1.23456, "perplexity": 3.437})
    broken = store.create_run("dpo-broken", "align", {}, None)
    store.update_run(broken, status="failed", error="CUDA out of memory.")
    store.create_run("seal-live", "seal", {}, None)

    text = _render(runs_table(store.list_runs()))

    header, *rows = _cells(text)
    assert header == [
        "id",
        "name",
        "kind",
        "status",
        "created (UTC)",
        "eval_loss",
        "perplexity",
        "run dir / error",
    ]
    assert [row[:4] for row in rows] == [  # newest first
        ["3", "seal-live", "seal", "running"],
        ["2", "dpo-broken", "align", "failed"],
        ["1", "tune-smollm", "tune", "completed"],
    ]
    assert [row[5:] for row in rows] == [
        ["-", "-", "-"],
        ["-", "-", "CUDA out of memory."],
        ["1.235", "3.437", "runs/tune-smollm"],
    ]


def test_run_detail_lists_fields_metrics_and_episodes(store: Store) -> None:
    run_id = store.create_run("tune-a", "tune", {"lr": 2e-4}, "runs/tune-a")
    store.update_run(run_id, status="diverged", metrics={"eval_loss": math.nan, "episodes": 2})
    store.add_episode(run_id, 0, "train", {"lr": 0.0002, "r": 8}, {"eval_loss": 2.5, "perplexity": 12.18}, {})
    store.add_episode(
        run_id, 1, "seal", {"lr": 0.0001}, {"eval_loss": 2.25, "perplexity": 9.488}, {"judge": "stop"}
    )

    text = _render(run_detail(store.get_run(run_id), store.list_episodes(run_id)))

    assert "tune-a" in text and "diverged" in text and "runs/tune-a" in text
    metrics = [row for row in _cells(text) if len(row) == 2]
    assert metrics == [["metric", "value"], ["eval_loss", "nan"], ["episodes", "2"]]
    episodes = [row for row in _cells(text) if len(row) == 7]
    assert episodes == [
        ["#", "kind", "status", "hparams", "eval_loss", "perplexity", "decisions"],
        ["0", "train", "completed", "lr=0.0002 r=8", "2.5", "12.18", "-"],
        ["1", "seal", "completed", "lr=0.0001", "2.25", "9.488", "judge=stop"],
    ]


def test_run_detail_counts_task_attempts_per_stage_and_lists_failures(store: Store) -> None:
    run_id = store.create_run("tune-ray", "tune", {}, None)
    for key, outcomes in (("episode0/proposal0", ["ok"]), ("episode0/proposal1", ["failed", "lost", "ok"])):
        for outcome in outcomes:
            attempt = store.start_task_attempt(run_id, "tune.train", key, worker="node-a:7")
            error = "RuntimeError: CUDA out of memory." if outcome == "failed" else None
            store.finish_task_attempt(attempt, outcome, error=error, duration_s=1.0)
    store.start_task_attempt(run_id, "seal.inner", "iteration0/c0/0")  # still running

    text = _render(run_detail(store.get_run(run_id), [], store.list_task_attempts(run_id)))

    rows = _cells(text)
    start = rows.index(["stage", "tasks", "attempts", "ok", "failed", "lost", "running"])
    assert rows[start + 1 : start + 3] == [
        ["tune.train", "2", "4", "2", "1", "1", "0"],
        ["seal.inner", "1", "1", "0", "0", "0", "1"],
    ]
    start = rows.index(["stage", "task", "attempt", "status", "worker", "error"])
    assert rows[start + 1][:5] == ["tune.train", "episode0/proposal1", "1", "failed", "node-a:7"]
    assert rows[start + 1][5] == "RuntimeError: CUDA out of memory."
    assert rows[start + 2][:4] == ["tune.train", "episode0/proposal1", "2", "lost"]
    assert len(rows) == start + 3  # the successful attempts are only counted


def test_run_detail_without_episodes_has_no_episode_table(store: Store) -> None:
    run_id = store.create_run("fresh", "sft", {}, None)
    text = _render(run_detail(store.get_run(run_id), []))
    assert "fresh" in text and "running" in text
    assert "episodes" not in text and "final metrics" not in text
