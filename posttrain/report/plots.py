"""Matplotlib figures for reports, drawn without pyplot."""

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


def plot_lines(
    path: Path, series: dict[str, list[tuple[float, float]]], title: str, ylabel: str
) -> Path | None:
    """One line per non-empty series of (step, value) points; None, writing nothing, when all are empty."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    for label, points in series.items():
        ax.plot(
            *zip(*points, strict=True), label=label, linewidth=1.2, marker="." if len(points) < 30 else None
        )
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
