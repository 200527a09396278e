"""SEAL's run summary, report.md and plots (reward per iteration, score before/after updates)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posttrain.config import SEALConfig
from posttrain.report.markdown import markdown_table
from posttrain.report.plots import integer_ticks, new_figure
from posttrain.tasks.seal import BaseDomain, BaseRewardModel, BinaryReward, ContinuousReward, SuccessReward
from posttrain.train.restem import trend


def seal_summary(
    cfg: SEALConfig,
    domain: BaseDomain,
    device: str,
    history: list[dict],
    results: dict,
    train_items: Sequence[Any],
    held_out: Sequence[Any],
) -> dict[str, Any]:
    rewards = [row["reward_mean"] for row in history]
    out: dict[str, Any] = {
        "model": cfg.model.name,
        "device": device,
        "domain": domain.name,
        "seed": cfg.seed,
        "iterations": len(history),
        "train_contexts": len(train_items),
        "heldout_contexts": len(held_out),
        "self_edits": sum(row["n_samples"] for row in history),
        "kept": sum(row["n_kept"] for row in history),
        "reward_mean_first": rewards[0] if rewards else None,
        "reward_mean_last": rewards[-1] if rewards else None,
        "reward_trend_per_iteration": trend(rewards),
        "success_rate_last": history[-1]["success_rate"] if history else None,
        "reward": describe_reward(domain.reward_model),
    }
    if note := always_rewarded_note(domain.reward_model):
        out["reward_note"] = note
    headline = domain.metrics[0]
    for name in results.get("order", []):
        out[f"{name}_{headline}"] = results[name][headline]
    return out


def write_seal_report(
    run_dir: Path,
    title: str,
    summary: dict[str, Any],
    history: Sequence[dict],
    results: dict[str, Any],
    domain: BaseDomain,
) -> Path:
    """report.md with the summary, per-iteration metrics, reward distribution and results table."""
    parts = [f"# {title}\n"]
    if note := always_rewarded_note(domain.reward_model):
        parts.append(f"**Note:** {note}.\n")
    parts += ["## Summary\n", markdown_table(["key", "value"], list(summary.items()))]
    if history:
        columns = [
            "iteration",
            "n_samples",
            "n_valid",
            "reward_mean",
            "reward_std",
            "success_rate",
            "score_before_mean",
            "score_after_mean",
            "improvement_mean",
            "n_kept",
            "m_step",
            "mstep_loss_last",
            "elapsed_s",
        ]
        parts += [
            "## Outer iterations\n",
            markdown_table(columns, [[r.get(c) for c in columns] for r in history]),
        ]
        slope = trend([r["reward_mean"] for r in history])
        success = trend([r["success_rate"] for r in history])
        parts.append(f"Trend per iteration: reward mean {_fmt(slope)}, success rate {_fmt(success)}.\n")
        parts += [
            "## Reward distribution\n",
            markdown_table(
                ["iteration", "rewards (value: count)"], [[r["iteration"], r["reward_hist"]] for r in history]
            ),
        ]
    if results.get("order"):
        parts += ["## Held-out results\n", results_markdown(results, domain.metrics)]
    plots = _plot_iterations(history, run_dir / "plots") if history else []
    if plots:
        parts.append("## Plots\n")
        parts += [f"![{p.stem}](plots/{p.name})\n" for p in plots]
    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def describe_reward(reward: BaseRewardModel) -> str:
    """The reward a run used, in words: which rule turns a score before/after into a reward."""
    if isinstance(reward, BinaryReward):
        return f"binary: 1 when the update improves the score by more than {reward.margin:g}"
    if isinstance(reward, SuccessReward):
        return f"success: 1 when the score after the update is at least {reward.at:g}"
    if isinstance(reward, ContinuousReward):
        return "continuous: the score after the update minus the score before"
    return f"{reward.name} ({type(reward).__name__})"


def always_rewarded_note(reward: BaseRewardModel) -> str | None:
    """Why the success rate and rewards say nothing, when the reward accepts every self-edit
    (`success` at a score of 0 or below, as the tiny `seal --preset test` sets); else None."""
    if not (isinstance(reward, SuccessReward) and reward.at <= 0):
        return None
    return (
        f"the reward is `success` at a score of {reward.at:g}, which every update reaches (scores run "
        "from 0 to 1), so every valid self-edit is rewarded whether its update helped or not: the "
        "success rate and rewards here say nothing about the self-edits, only that the loop ran"
    )


def results_markdown(results: dict[str, Any], metrics: Sequence[str]) -> str:
    """The held-out table as markdown: one row per condition, metrics, 95% CI of the first metric."""
    rows = []
    for name in results["order"]:
        row = results[name]
        label = f"{name} (upper bound: searched on the test answer)" if row.get("upper_bound") else name
        lo, hi = row["ci"]
        rows.append([label, *(round(row[m], 4) for m in metrics), f"[{lo:.3f}, {hi:.3f}]"])
    return markdown_table(["condition", *metrics, f"95% CI ({metrics[0]})"], rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _plot_iterations(history: Sequence[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    its = [r["iteration"] for r in history]
    fig = new_figure()
    ax = fig.add_subplot()
    means = [r["reward_mean"] for r in history]
    stds = [r["reward_std"] for r in history]
    ax.errorbar(its, means, yerr=stds, marker="o", capsize=3, label="reward mean ± std")
    ax.plot(its, [r["success_rate"] for r in history], marker="s", label="success rate")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("reward / success rate")
    integer_ticks(ax)
    ax.set_title("SEAL reward per iteration")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    trend_path = out / "reward_trend.png"
    fig.savefig(trend_path)

    fig = new_figure()
    ax = fig.add_subplot()
    before = [r["score_before_mean"] for r in history]
    after = [r["score_after_mean"] if r["score_after_mean"] is not None else math.nan for r in history]
    ax.plot(its, before, marker="o", label="score before update")
    ax.plot(its, after, marker="o", label="score after update (mean over self-edits)")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("domain score")
    integer_ticks(ax)
    ax.set_title("Improvement from self-edits")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    gain_path = out / "before_after.png"
    fig.savefig(gain_path)
    return [trend_path, gain_path]
