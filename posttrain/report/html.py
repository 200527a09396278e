"""The dashboard's HTML building blocks (the page shell, tables, escaped cells) and its first
page, the list of runs.

Everything is rendered on the server from store records and the run folders, so the page works
offline with no CDN. The one inline script only adds conveniences (filter the run list, open or
close every detail) and marks `<body data-ready>` once it has run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from posttrain.store.records import RunRecord


def cell(value: Any) -> str:
    """A table cell's text: numbers to 4 significant digits, a missing value as "-", escaped."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, dict | list):
        return escape(json.dumps(value, ensure_ascii=False, default=str))
    return escape(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    """An HTML table; cells go through `cell` unless already markup (wrapped in `Markup`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{v.html if isinstance(v, Markup) else cell(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclass(frozen=True)
class Markup:
    """HTML that a table cell shows as is (a link, a badge); anything else is escaped."""

    html: str


def page(title: str, body: str) -> str:
    """A whole HTML document with the dashboard's style and script."""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
        f'<body><header><a href="/">posttrain runs</a></header><main>{body}</main>'
        f"<script>{_SCRIPT}</script></body></html>"
    )


def runs_page(runs: Sequence[RunRecord], store_url: str) -> str:
    """Every run, newest first, each linking to its page."""
    rows = [
        [
            Markup(f'<a href="/runs/{r.id}">{r.id}</a>'),
            Markup(f'<a class="run-link" href="/runs/{r.id}">{escape(r.name)}</a>'),
            r.kind,
            Markup(f'<span class="status {escape(r.status)}">{escape(r.status)}</span>'),
            r.created_at,
            _headline(r.metrics),
        ]
        for r in runs
    ]
    listing = (
        table(["id", "name", "kind", "status", "created", "headline"], rows, "runs")
        if runs
        else '<p class="empty">No runs in this store yet: train one (posttrain quickstart, sft ...).</p>'
    )
    body = (
        f"<h1>Runs</h1><p class='muted'>store: {escape(store_url)} · {len(runs)} run(s)</p>"
        '<input id="filter" type="search" placeholder="filter by name, kind or status">' + listing
    )
    return page("posttrain runs", body)


def finite_number(value: Any) -> float | None:
    """A number a chart can draw: ints and finite floats; bools, NaN, inf and strings are None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _headline(metrics: Mapping[str, Any]) -> str:
    """The run's main number for the list: the first of the usual keys its summary holds."""
    for key in ("best_eval_loss", "eval_loss", "train_loss", "final_loss", "mean_reward", "accuracy"):
        value = metrics.get(key)
        if finite_number(value) is not None:
            return f"{key} {value:.4g}"
    return ""


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#20232a;padding:8px 16px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:12px 20px;max-width:1400px}
table{border-collapse:collapse;margin:8px 0;background:#fff}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
.muted{color:#666}.empty{color:#666;font-style:italic}.error{color:#b00020}
.status{padding:1px 6px;border-radius:8px;background:#eee}
.status.completed{background:#d7f5dd}.status.failed,.status.diverged{background:#fbd5d5}
.status.running{background:#fff1c2}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #ddd}
svg .title{font-weight:600;font-size:13px}svg .tick,svg .legend{font-size:11px}svg .label{font-size:12px}
.episode{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:10px 0}
.episode h3{margin:2px 0 6px}
.rationale{background:#eef5ff;padding:6px 8px;border-left:3px solid #1f77b4}
.msg{margin:4px 0}.role{display:inline-block;min-width:120px;font-weight:600}
.decision{font-weight:600}.better{color:#1a7f37}.worse{color:#b00020}
.stop{background:#fff3f3;border:1px solid #f3c0c0;padding:6px 10px;border-radius:6px}
pre{background:#f5f5f5;padding:6px;overflow:auto;max-height:400px}
#filter{margin:6px 0;padding:4px;width:320px}
"""

_SCRIPT = """
(function () {
  var filter = document.getElementById('filter');
  if (filter) {
    filter.addEventListener('input', function () {
      var q = filter.value.toLowerCase();
      document.querySelectorAll('table.runs tbody tr').forEach(function (tr) {
        tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
  }
  var toggle = document.getElementById('toggle-all');
  if (toggle) {
    toggle.addEventListener('click', function () {
      var all = document.querySelectorAll('details');
      var open = Array.prototype.some.call(all, function (d) { return !d.open; });
      all.forEach(function (d) { d.open = open; });
    });
  }
  document.body.setAttribute('data-ready', String(document.querySelectorAll('svg.chart').length));
})();
"""
