"""The dashboard's SVG charts keep the plotting rules: measured points are markers, step axes have
whole-number ticks, every chart has a title and axis labels, and no data means a sentence."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from posttrain.report.svg import Series, chart, nice_ticks, tick_text

NS = "{http://www.w3.org/2000/svg}"


def test_eval_points_are_markers_and_train_is_a_line():
    svg = chart(
        "loss <per> step",
        "step",
        "loss",
        [
            Series("loss", [(s, 3.0 - 0.1 * s) for s in range(1, 11)]),
            Series("eval_loss", [(5, 2.6), (10, 2.1)], False),
        ],
    )
    root = ET.fromstring(svg)  # well-formed XML: the title's "<" is escaped
    groups = {g.get("data-label"): g for g in root.iter(f"{NS}g")}
    assert groups["loss"].find(f"{NS}polyline") is not None
    assert groups["eval_loss"].find(f"{NS}polyline") is None
    assert len(groups["eval_loss"].findall(f"{NS}circle")) == 2
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "loss <per> step" in texts and "step" in texts and "loss" in texts
    x_ticks = [
        t.text
        for t in root.iter(f"{NS}text")
        if t.get("class") == "tick" and t.get("text-anchor") == "middle"
    ]
    assert x_ticks and all(re.fullmatch(r"\d+", t) for t in x_ticks)


def test_a_chart_without_finite_values_is_a_sentence():
    html = chart(
        "DPO reward margin", "step", "margin", [Series("m", [(1, math.nan), (2, math.inf)]), Series("e")]
    )
    assert html == '<p class="empty">DPO reward margin: nothing to plot (no finite values logged).</p>'


@pytest.mark.parametrize(("low", "high"), [(1, 3), (0, 7), (1, 300), (5, 5)])
def test_integer_axes_never_get_fractional_ticks(low, high):
    ticks = nice_ticks(low - 0.2, high + 0.2, 6, integer=True)
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert all(low - 0.2 <= t <= high + 0.2 for t in ticks)


def test_close_ticks_are_labelled_apart():
    ticks = nice_ticks(10.7875, 10.797, 5)
    labels = [tick_text(t, False, ticks[1] - ticks[0]) for t in ticks]
    assert len(set(labels)) == len(labels) == len(ticks) >= 2
