"""Console tables and markdown reports, built from runs stored in a real SQLite file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.report import markdown_table, run_detail, runs_table, write_training_report
from posttrain.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def test_markdown_table_formats_and_escapes_cells() -> None:
    table = markdown_table(
        ["name", "loss", "ok", "note"], [["a|b", 1.234567, True, None], ["c", 2, False, "x"]]
    )
    assert table.splitlines() == [
        "| name | loss | ok | note |",
        "|---|---|---|---|",
        "| a\\|b | 1.235 | true | - |",
        "| c | 2 | false | x |",
    ]


def test_training_report_has_summary_step_table_and_loss_plot(tmp_path: Path) -> None:
    rows: list[dict[str, float]] = [{"step": s, "loss": 3.0 - 0.25 * s} for s in range(1, 9)]
    rows += [{"step": 4, "eval_loss": 2.125}, {"step": 8, "eval_loss": 1.875}, {"train_runtime": 12.5}]
    summary = {"model": "tiny-random", "final eval_loss": 1.875, "steps": 8}

    path = write_training_report(tmp_path / "run", "SFT tiny-random", summary, rows)

    assert path == tmp_path / "run" / "report.md"
    text = path.read_text()
    assert text.startswith("# SFT tiny-random\n")
    assert (
        "| model | tiny-random |" in text
        and "| final eval_loss | 1.875 |" in text
        and "| steps | 8 |" in text
    )
    assert "| step | loss | eval_loss |" in text
    assert "| 1 | 2.75 | - |" in text
    assert "| 4 | 2 | 2.125 |" in text  # train and eval rows of one step are merged
    assert "| 8 | 1 | 1.875 |" in text
    assert "train_runtime" not in text and "of 8 logged steps" not in text
    assert "![loss per step](plots/loss.png)" in text
    png = tmp_path / "run" / "plots" / "loss.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000


def test_long_runs_are_trimmed_to_twenty_steps_keeping_first_last_and_eval_steps(tmp_path: Path) -> None:
    rows: list[dict[str, float]] = [{"step": s, "loss": 1.0 / s} for s in range(1, 301)]
    rows += [{"step": s, "eval_loss": 2.0 / s} for s in (50, 100, 150, 200, 250)]
    text = write_training_report(tmp_path, "long", {}, rows).read_text()
    step_rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(step_rows) == 20
    assert step_rows[0] == "| 1 | 1 | - |" and step_rows[-1] == "| 300 | 0.003333 | - |"
    assert [row for row in step_rows if not row.endswith("| - |")] == [
        "| 50 | 0.02 | 0.04 |",
        "| 100 | 0.01 | 0.02 |",
        "| 150 | 0.006667 | 0.01333 |",
        "| 200 | 0.005 | 0.01 |",
        "| 250 | 0.004 | 0.008 |",
    ]
    steps = [int(row.split("|")[1]) for row in step_rows]
    assert steps == sorted(set(steps))
    assert max(b - a for a, b in zip(steps, steps[1:], strict=False)) <= 30  # the rest spread out evenly
    assert "20 of 300 logged steps" in text


def test_diverged_and_empty_logs_still_give_a_report(tmp_path: Path) -> None:
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": math.nan}, {"step": 3, "loss": "inf"}]
    text = write_training_report(tmp_path / "nan", "diverged", {"status": "diverged"}, rows).read_text()
    assert "| 2 | nan |" in text and "| 3 | inf |" in text
    assert (tmp_path / "nan" / "plots" / "loss.png").read_bytes()[:8] == PNG_MAGIC

    text = write_training_report(tmp_path / "empty", "empty", {"status": "failed"}, []).read_text()
    assert "| status | failed |" in text and "Loss per step" not in text and "loss.png" not in text
    assert not (tmp_path / "empty" / "plots").exists()
