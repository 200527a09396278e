"""Matplotlib figures for reports, drawn without pyplot, and the rules every plot keeps: a step,
episode or iteration axis has integer ticks; values measured now and then (an eval every N
steps) are points, not a line through values never measured; every plot has a title and axis
labels; and a plot with nothing to draw is not written (the report says "nothing to plot")."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(size: tuple[float, float] = (7, 4)) -> Any:
    """A figure (inches, 100 dpi) on the Agg canvas directly: no pyplot, so no global backend switch
    and no GUI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def integer_ticks(ax: Any) -> None:
    """Whole-number ticks on the x axis (steps, episodes, iterations: never 2.5), no offset text."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")


def nothing_to_plot(title: str, why: str) -> str:
    """The report's line where a plot would be: said, not drawn as an empty frame."""
    return f"*{title}: nothing to plot ({why}).*\n"


def plot_lines(
    path: Path, series: dict[str, list[tuple[float, float]]], title: str, ylabel: str
) -> Path | None:
    """One line per non-empty series of (step, value) points, a series named "eval..." as points
    only; None, writing nothing, when all are empty."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    for label, points in series.items():
        if label.startswith("eval"):
            ax.plot(*zip(*points, strict=True), label=label, marker="o", linestyle="none")
        else:
            marker = "." if len(points) < 30 else None
            ax.plot(*zip(*points, strict=True), label=label, linewidth=1.2, marker=marker)
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    integer_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
