"""Charts as inline SVG for the dashboard: drawn on the server, so the page needs no script, CDN
or network to show a curve.

The same rules as the matplotlib plots: measured points (an eval every N steps, one loss per
episode) are drawn as markers, not joined into a line that suggests values in between; a
step or episode axis gets integer ticks; every chart has a title and axis labels; and a chart
with nothing finite to draw is the sentence "nothing to plot", never an empty frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 46
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass
class Series:
    """One labelled set of (x, y) points; `joined` draws a line through them, else markers only."""

    label: str
    points: list[tuple[float, float]] = field(default_factory=list)
    joined: bool = True

    def finite(self) -> list[tuple[float, float]]:
        return [(x, y) for x, y in self.points if math.isfinite(x) and math.isfinite(y)]


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """About `count` round tick values covering [low, high] (1, 2 or 5 times a power of ten);
    whole numbers only when `integer`, so a step axis never reads 2.5."""
    if high < low:
        low, high = high, low
    span = high - low or abs(high) or 1.0
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks or [low]


def tick_text(value: float, integer: bool, step: float | None = None) -> str:
    """A tick's label with as many decimals as the tick spacing needs, so neighbours never read
    the same (10.788 and 10.79, not 10.79 twice)."""
    if integer:
        return str(int(round(value)))
    if step and step > 0 and 1e-4 <= abs(value) < 1e6 or value == 0:
        decimals = max(0, math.ceil(-math.log10(step))) if step else 0
        return f"{value:.{decimals}f}"
    return f"{value:.4g}"


def chart(title: str, xlabel: str, ylabel: str, series: list[Series], integer_x: bool = True) -> str:
    """An SVG chart of `series`, or a "nothing to plot" note naming the chart when no series has a
    finite point. Non-finite points (a diverged loss) are left out, not drawn at zero."""
    drawn = [(s, pts) for s in series if (pts := s.finite())]
    if not drawn:
        return f'<p class="empty">{escape(title)}: nothing to plot (no finite values logged).</p>'
    xs = [x for _, pts in drawn for x, _ in pts]
    ys = [y for _, pts in drawn for _, y in pts]
    x_lo, x_hi = _padded(min(xs), max(xs), integer_x)
    y_lo, y_hi = _padded(min(ys), max(ys), False)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return TOP + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    out = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="title" x="{WIDTH / 2}" y="20" text-anchor="middle">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for t in nice_ticks(x_lo, x_hi, 6, integer_x):
        x = px(t)
        bottom = TOP + plot_h
        out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#999"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
            f"{tick_text(t, integer_x)}</text>"
        )
    y_ticks = nice_ticks(y_lo, y_hi, 5)
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else None
    for t in y_ticks:
        y = py(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{tick_text(t, False, y_step)}</text>"
        )
    out.append(
        f'<text class="label" x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
        f"{escape(xlabel)}</text>"
    )
    out.append(
        f'<text class="label" x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(ylabel)}</text>'
    )
    for i, (s, pts) in enumerate(drawn):
        color = COLORS[i % len(COLORS)]
        out.append(f'<g class="series" data-label="{escape(s.label)}">')
        if s.joined and len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if not s.joined or len(pts) <= 30:
            radius = 3.5 if not s.joined else 2
            for x, y in pts:
                out.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{radius}" fill="{color}">'
                    f"<title>{escape(s.label)} {tick_text(x, integer_x)}: {y:.5g}</title></circle>"
                )
        out.append("</g>")
    out.append(_legend([s.label for s, _ in drawn], [s.joined for s, _ in drawn]))
    out.append("</svg>")
    return "\n".join(out)


def _padded(low: float, high: float, integer: bool) -> tuple[float, float]:
    """A non-empty range around the data: a single value or a flat curve gets room on both sides."""
    if high == low:
        pad = 1.0 if integer else (abs(low) * 0.05 or 1.0)
        return low - pad, high + pad
    if integer:  # half a marker's room at both ends; ticks stay on whole numbers inside
        pad = max((high - low) * 0.03, 0.2)
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _legend(labels: list[str], joined: list[bool]) -> str:
    parts = []
    x = LEFT + 8
    for i, (label, line) in enumerate(zip(labels, joined, strict=True)):
        color = COLORS[i % len(COLORS)]
        mark = (
            f'<line x1="{x}" y1="{TOP + 10}" x2="{x + 14}" y2="{TOP + 10}" stroke="{color}" '
            'stroke-width="2"/>'
            if line
            else f'<circle cx="{x + 7}" cy="{TOP + 10}" r="3.5" fill="{color}"/>'
        )
        parts.append(mark + f'<text class="legend" x="{x + 18}" y="{TOP + 14}">{escape(label)}</text>')
        x += 24 + 7 * len(label)
    return "".join(parts)
