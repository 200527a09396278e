"""The report of a `posttrain align` run: the base/SFT/DPO tables (also printed by the CLI and
`posttrain eval`), the run and stage tables, and plots of both trainings and of the figures."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posttrain.report.changes import regressions_markdown
from posttrain.report.markdown import markdown_table
from posttrain.report.plots import new_figure, nothing_to_plot, plot_lines


def format_figure(fig: dict[str, Any] | None) -> str:
    """`0.950 [0.88, 0.99] n=40` from a `Figure.as_dict()`; `- (n=0)` when there is nothing."""
    if not fig or fig["value"] is None:
        return f"- (n={fig['n'] if fig else 0})"
    lo, hi = fig["ci"]
    return f"{fig['value']:.3f} [{lo:.2f}, {hi:.2f}] n={fig['n']}"


def eval_tables(results: dict[str, Any], titles: dict[str, str]) -> str:
    """Markdown: one table per split (titled from `titles`, else by its name), a row per model,
    then the references, which fill only the accuracy columns."""
    parts = []
    for split, by_model in results["splits"].items():
        metrics = list(next(iter(by_model.values())))
        rows = [[name] + [format_figure(figs.get(m)) for m in metrics] for name, figs in by_model.items()]
        for ref, fig in results.get("references", {}).items():
            rows.append([ref] + [format_figure(fig) if m.endswith("accuracy") else "" for m in metrics])
        parts.append(f"### {titles.get(split, split)}\n\n" + markdown_table(["model", *metrics], rows))
    return "\n".join(parts)


MODEL_LABELS = {"base": "the base model", "sft": "the SFT adapter", "dpo": "DPO"}


def write_align_report(
    run_dir: Path,
    title: str,
    summary: dict[str, Any],
    results: dict[str, Any],
    bar_metrics: Sequence[str],
    split_titles: dict[str, str] | None = None,
) -> Path:
    """report.md with the base/SFT/DPO tables (`summary["eval_table"]`), the figures that got worse
    from one model to the next in words, and plots: SFT and DPO loss, DPO reward margins, and bars
    of `bar_metrics` per split and model. `split_titles` name the splits in the regressions."""
    plots = run_dir / "plots"
    sft_rows = _read_jsonl(run_dir / "metrics_sft.jsonl")
    dpo_rows = _read_jsonl(run_dir / "metrics_dpo.jsonl")
    made = [
        (
            "SFT loss",
            plot_lines(plots / "sft_loss.png", _losses(sft_rows), "SFT loss per step", "loss"),
        ),
        (
            "DPO loss",
            plot_lines(plots / "dpo_loss.png", _losses(dpo_rows), "DPO loss per step", "loss"),
        ),
        (
            "DPO reward margin",
            plot_lines(
                plots / "reward_margins.png",
                {"margin (chosen - rejected)": _series(dpo_rows, "rewards/margins")},
                "DPO reward margin per step",
                "margin",
            ),
        ),
        (
            "DPO reward accuracy",
            plot_lines(
                plots / "reward_accuracy.png",
                {"reward accuracy (chosen > rejected)": _series(dpo_rows, "rewards/accuracies")},
                "DPO reward accuracy per step",
                "accuracy",
            ),
        ),
        ("held-out figures", plot_bars(plots / "compliance.png", results, bar_metrics)),
    ]
    stages = {k: summary[k] for k in ("sft", "trajectories", "pairs", "dpo")}
    head = {k: v for k, v in summary.items() if not isinstance(v, dict | list) and k != "eval_table"}
    parts = [
        f"# {title}\n",
        "Every figure: mean [bootstrap 95% CI] n=examples. Held-out data comes from its own seed.\n",
        "## Base vs SFT vs DPO\n",
        summary["eval_table"],
        regressions_markdown(
            {(split_titles or {}).get(split, split): models for split, models in results["splits"].items()},
            MODEL_LABELS,
        ),
        "## Run\n",
        markdown_table(["key", "value"], list(head.items())),
        "## Stages\n",
        markdown_table(["stage", "key", "value"], _stage_rows(stages)),
        "## Plots\n",
    ]
    for what, p in made:
        parts.append(
            nothing_to_plot(what, "nothing was measured") if p is None else f"![{p.stem}](plots/{p.name})\n"
        )
    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _value(value: Any) -> float:
    """A bar's height; a missing figure is NaN (no bar, labelled n/a), never a fake 0."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _stage_rows(stages: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for stage, numbers in stages.items():
        for key, value in numbers.items():
            is_figure = isinstance(value, dict) and {"value", "n", "ci"} <= set(value)
            rows.append([stage, key, format_figure(value) if is_figure else value])
    return rows


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _losses(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    return {"train loss": _series(rows, "loss"), "eval loss": _series(rows, "eval_loss")}


def _series(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float) and "step" in r]


def plot_bars(path: Path, results: dict[str, Any], metrics: Sequence[str]) -> Path | None:
    """Grouped bars with 95% CI whiskers of `metrics`, one panel per split, a bar per model, each
    labelled with its value; the references as dashed lines. A figure no model has is left out
    (not drawn as a 0 bar); None, writing nothing, when no split has any of `metrics`."""
    splits = results["splits"]
    measured = {
        m
        for by_model in splits.values()
        for figs in by_model.values()
        for m in figs
        if not math.isnan(_value((figs.get(m) or {}).get("value")))
    }
    metrics = [m for m in metrics if m in measured]
    if not splits or not metrics:
        return None
    fig = new_figure()
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    for ax, (split, by_model) in zip(axes, splits.items(), strict=True):
        width = 0.8 / max(len(by_model), 1)
        for j, (name, figs) in enumerate(by_model.items()):
            vals = [_value((figs.get(m) or {}).get("value")) for m in metrics]
            cis = [(figs.get(m) or {}).get("ci") or [v, v] for m, v in zip(metrics, vals, strict=True)]
            err = [
                [v - c[0] for v, c in zip(vals, cis, strict=True)],
                [c[1] - v for v, c in zip(vals, cis, strict=True)],
            ]
            xs = [i + j * width for i in range(len(metrics))]
            bars = ax.bar(xs, vals, width, yerr=err, capsize=2, label=name)
            ax.bar_label(bars, labels=[f"{v:.2f}" if v == v else "n/a" for v in vals], fontsize=6)
        for ref, f in results.get("references", {}).items():
            ax.axhline(
                f["value"], linestyle="--", linewidth=1, color="grey" if "majority" in ref else "black"
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))])
        ax.set_xticklabels([m.replace("_", "\n") for m in metrics], fontsize=7)
        ax.set_ylim(0, 1.12)
        ax.set_title(f"held-out {split}")
        ax.set_ylabel("share (95% CI)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
