"""The plot rules of every report, checked on the real Agg figures the writers draw: eval values as
points, integer step/episode ticks, a title and axis labels, and "nothing to plot" in the report
instead of an empty chart (align's plot_lines, tune's episodes.png, rlhf's stage plots)."""

from __future__ import annotations

from typing import Any

import pytest

from posttrain.agents.history import EpisodeSummary
from posttrain.report import plot_lines
from posttrain.report.rlhf import write_rlhf_report
from posttrain.report.tune import write_tune_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _spy_figures(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[Any]:
    """The real figures `module` draws, kept by a spy on its `new_figure` factory."""
    made: list[Any] = []
    real = module.new_figure
    monkeypatch.setattr(module, "new_figure", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    return made


def _integer_ticks(axes: Any) -> list[float]:
    axes.figure.canvas.draw()
    low, high = axes.get_xlim()
    return [t for t in axes.get_xticks() if low <= t <= high]


def test_plot_lines_draws_eval_as_points_with_integer_ticks_title_and_labels(tmp_path, monkeypatch):
    from posttrain.report import plots

    made = _spy_figures(monkeypatch, plots)
    series = {"train loss": [(1, 2.0), (2, 1.5), (3, 1.2)], "eval loss": [(2, 1.7), (3, 1.4)]}
    path = plot_lines(tmp_path / "p.png", series, "SFT loss per step", "loss")
    assert path is not None and path.read_bytes()[:8] == PNG_MAGIC
    axes = made[0].axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert lines["eval loss"].get_linestyle() == "None" and lines["eval loss"].get_marker() == "o"
    assert lines["train loss"].get_linestyle() == "-"
    ticks = _integer_ticks(axes)
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert (axes.get_title(), axes.get_xlabel(), axes.get_ylabel()) == ("SFT loss per step", "step", "loss")


def test_plot_lines_with_nothing_writes_nothing(tmp_path):
    assert plot_lines(tmp_path / "p.png", {"train loss": [], "eval loss": []}, "t", "loss") is None
    assert not (tmp_path / "p.png").exists()


def _episode(i: int, loss: float | None, seal: float | None = None) -> EpisodeSummary:
    return EpisodeSummary(episode=i, hparams={"lr": 1e-4}, eval_loss=loss, seal_eval_loss=seal)


def test_episodes_plot_is_not_zoomed_into_a_wobble_and_has_a_title(tmp_path, monkeypatch):
    from posttrain.report import tune

    made = _spy_figures(monkeypatch, tune)
    history = [_episode(0, 2.500, 2.501), _episode(1, 2.502, 2.500), _episode(2, 2.501)]
    report = write_tune_report(tmp_path, "tune", history, {"best": 2.5}).read_text()
    assert "![eval loss per episode, TRAIN vs SEAL](plots/episodes.png)" in report
    assert (tmp_path / "plots" / "episodes.png").read_bytes()[:8] == PNG_MAGIC
    axes = made[0].axes[0]
    low, high = axes.get_ylim()
    assert high - low >= 0.02 * 2.5 * 0.99  # a 0.002 spread does not fill the plot like a trend
    assert axes.get_title() and axes.get_xlabel() == "episode" and "eval loss" in axes.get_ylabel()
    assert all(line.get_linestyle() == "None" for line in axes.get_lines())  # each episode its own model
    ticks = _integer_ticks(axes)
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_episodes_without_a_finite_loss_say_nothing_to_plot(tmp_path):
    history = [_episode(0, float("nan")), _episode(1, None)]
    report = write_tune_report(tmp_path, "tune", history, {}).read_text()
    assert "*eval loss per episode: nothing to plot (no episode has a finite eval loss).*" in report
    assert "episodes.png" not in report and not (tmp_path / "plots" / "episodes.png").exists()


def _rlhf_rows() -> list[dict[str, Any]]:
    sft = [{"stage": "sft", "step": s, "loss": 2.0 - 0.01 * s} for s in range(1, 31)]
    sft += [{"stage": "sft", "step": 15, "eval_loss": 1.9}, {"stage": "sft", "step": 30, "eval_loss": 1.8}]
    sft += [{"stage": "sft", "step": 30, "train_runtime": 3.0, "train_loss": 1.85}]
    rl = [
        {"stage": "rl", "step": s, "loss": 0.1, "reward": 0.1 * s, "kl": 0.01, "beta": 0.04} for s in (1, 2)
    ]
    rl += [{"stage": "rl", "step": 3, "loss": float("nan"), "reward": float("nan"), "kl": float("nan")}]
    return sft + rl


def test_rlhf_report_keeps_every_step_and_draws_eval_as_points(tmp_path, monkeypatch):
    from posttrain.report import rlhf

    made = _spy_figures(monkeypatch, rlhf)
    report = write_rlhf_report(tmp_path, {"run": "r"}, _rlhf_rows()).read_text()
    sft = report[report.index("## SFT per step") : report.index("## RL per step")]
    steps = [
        int(line.split("|")[1]) for line in sft.splitlines() if line.startswith("| ") and line[2].isdigit()
    ]
    assert steps == list(range(1, 31))  # all 30, no sample and no end-of-training row
    assert (
        "| step | loss | eval_loss |" in sft and "| 15 | 1.85 | 1.9 |" in sft and "| 14 | 1.86 | - |" in sft
    )
    rl = report[report.index("## RL per step") :]
    assert "| 3 | nan |" in rl  # the diverged step stays in the table
    lines = {line.get_label(): line for line in made[0].axes[0].get_lines()}
    assert lines["eval_loss"].get_linestyle() == "None" and lines["eval_loss"].get_marker() == "o"
    assert made[0].axes[0].get_title() == "SFT loss"
    assert "*completion length (tokens): nothing to plot (no finite value was logged).*" in rl
    assert not (tmp_path / "plots" / "lengths.png").exists()
