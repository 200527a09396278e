"""`posttrain tune`'s report.md: the summary, one row per episode and the TRAIN vs SEAL loss plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from posttrain.agents.history import EpisodeSummary
from posttrain.report.markdown import markdown_table
from posttrain.report.plots import integer_ticks, new_figure, nothing_to_plot

HEADERS = [
    "episode",
    "lr",
    "batch",
    "epochs",
    "r",
    "alpha",
    "eval_loss",
    "ppl",
    "seal_loss",
    "seal_delta",
    "qa",
    "judge",
    "reward regime",
    "proposer",
]


def episode_table(history: list[EpisodeSummary]) -> str:
    """Markdown table: hparams, losses, SEAL delta, QA score and the agents' decisions."""
    rows = []
    for h in history:
        judge = h.decisions.get("judge", {})
        regime = h.decisions.get("reward_penalty", {}).get("reward_signal", {}).get("regime", "")
        hp = h.hparams
        rows.append(
            [
                h.episode,
                f"{hp.get('lr', 0):.2e}",
                hp.get("batch_size"),
                hp.get("epochs"),
                hp.get("lora_r"),
                hp.get("lora_alpha"),
                h.eval_loss,
                h.perplexity,
                h.seal_eval_loss,
                h.seal_delta,
                h.qa_score,
                "continue" if judge.get("continue", True) else "stop",
                regime,
                h.decisions.get("proposed_by", ""),
            ]
        )
    return markdown_table(HEADERS, rows)


def write_tune_report(
    run_dir: Path, title: str, history: list[EpisodeSummary], summary: dict[str, Any]
) -> Path:
    """report.md with the summary and the episode table, and plots/episodes.png (not written, and
    said, when no episode has a finite loss)."""
    plotted = _plot_losses(history, run_dir / "plots" / "episodes.png")
    text = [
        f"# {title}\n",
        markdown_table(["key", "value"], list(summary.items())),
        "\n## Episodes\n",
        episode_table(history),
        "\n![eval loss per episode, TRAIN vs SEAL](plots/episodes.png)\n"
        if plotted
        else "\n" + nothing_to_plot("eval loss per episode", "no episode has a finite eval loss"),
    ]
    path = run_dir / "report.md"
    path.write_text("\n".join(text))
    return path


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _plot_losses(history: list[EpisodeSummary], path: Path) -> bool:
    """Each episode trains its own model, so its loss is a point, not a line through episodes; the
    y range is at least 2% of the loss, so a 0.001 wobble does not fill the plot like a trend.
    False, writing nothing, when no loss is finite."""
    eps = [h.episode for h in history]
    train = [h.loss if h.loss is not None else float("nan") for h in history]
    seal = [_finite(h.seal_eval_loss) for h in history]
    values = [v for v in [*train, *seal] if v is not None and math.isfinite(v)]
    if not values:
        return False
    fig = new_figure((6, 3.5))
    ax = fig.add_subplot()
    ax.plot(eps, train, "o", label="TRAIN")
    if any(s is not None for s in seal):
        ax.plot(eps, [s if s is not None else float("nan") for s in seal], "s", label="SEAL")
    low, high = min(values), max(values)
    middle, half = (low + high) / 2, max((high - low) / 2 * 1.15, abs(low + high) / 2 * 0.01, 1e-6)
    ax.set_ylim(middle - half, middle + half)
    integer_ticks(ax)
    ax.set_xlabel("episode")
    ax.set_ylabel("eval loss (lower is better)")
    ax.set_title("eval loss of each episode's model, TRAIN and after SEAL")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True
