"""The training report: summary, every logged step, the loss plot and DPO's reward plot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from posttrain.report import write_training_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def test_long_runs_keep_every_logged_step_in_the_table(tmp_path: Path) -> None:
    rows: list[dict[str, float]] = [{"step": s, "loss": 1.0 / s} for s in range(1, 301)]
    rows += [{"step": s, "eval_loss": 2.0 / s} for s in (50, 100, 150, 200, 250)]
    text = write_training_report(tmp_path, "long", {}, rows).read_text()
    step_rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(row.split("|")[1]) for row in step_rows] == list(range(1, 301))
    assert step_rows[0] == "| 1 | 1 | - |" and step_rows[-1] == "| 300 | 0.003333 | - |"
    assert [row for row in step_rows if not row.endswith("| - |")] == [
        "| 50 | 0.02 | 0.04 |",
        "| 100 | 0.01 | 0.02 |",
        "| 150 | 0.006667 | 0.01333 |",
        "| 200 | 0.005 | 0.01 |",
        "| 250 | 0.004 | 0.008 |",
    ]


def _loss_axes(tmp_path: Path, rows: list[dict[str, float]], monkeypatch: pytest.MonkeyPatch):
    """The loss plot's axes as the report drew them (the real figure, kept by a spy on its factory)."""
    from posttrain.report import training

    made = []
    real = training.new_figure
    monkeypatch.setattr(training, "new_figure", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    write_training_report(tmp_path, "t", {}, rows)
    return made[0].axes[0]


def test_eval_loss_is_drawn_as_points_and_steps_have_integer_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[dict[str, float]] = [{"step": s, "loss": 3.0 - 0.5 * s} for s in range(1, 4)]
    rows += [{"step": 2, "eval_loss": 2.5}, {"step": 3, "eval_loss": 2.25}]
    axes = _loss_axes(tmp_path, rows, monkeypatch)
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert lines["eval loss"].get_linestyle() == "None" and lines["eval loss"].get_marker() == "o"
    assert lines["train loss"].get_linestyle() == "-"
    axes.figure.canvas.draw()
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert axes.get_title() == "t" and axes.get_xlabel() == "step" and axes.get_ylabel() == "loss"


def test_dpo_logs_get_margin_and_accuracy_columns_and_plot(tmp_path: Path) -> None:
    rows = [
        {"step": s, "loss": 0.7 - 0.1 * s, "rewards/margins": 0.2 * s, "rewards/accuracies": 0.25 * s}
        for s in range(1, 5)
    ]
    text = write_training_report(tmp_path, "DPO", {}, rows).read_text()
    assert "| step | loss | rewards/margins | rewards/accuracies |" in text
    assert "| 4 | 0.3 | 0.8 | 1 |" in text
    assert "![DPO reward margin and accuracy per step](plots/rewards.png)" in text
    assert (tmp_path / "plots" / "rewards.png").read_bytes()[:8] == PNG_MAGIC
    sft = write_training_report(tmp_path / "sft", "SFT", {}, [{"step": 1, "loss": 2.0}]).read_text()
    assert "rewards.png" not in sft and not (tmp_path / "sft" / "plots" / "rewards.png").exists()


def test_diverged_and_empty_logs_still_give_a_report(tmp_path: Path) -> None:
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": math.nan}, {"step": 3, "loss": "inf"}]
    text = write_training_report(tmp_path / "nan", "diverged", {"status": "diverged"}, rows).read_text()
    assert "| 2 | nan |" in text and "| 3 | inf |" in text
    assert (tmp_path / "nan" / "plots" / "loss.png").read_bytes()[:8] == PNG_MAGIC

    text = write_training_report(tmp_path / "empty", "empty", {"status": "failed"}, []).read_text()
    assert "| status | failed |" in text and "Loss per step" not in text and "loss.png" not in text
    assert "loss per step: nothing to plot (no finite loss was logged)" in text
    assert not (tmp_path / "empty" / "plots").exists()
