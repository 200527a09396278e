"""The align report: tables with n and CI for every model, references in the accuracy columns,
and a report.md with its plots from a run directory's metrics files."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.report import eval_tables, format_figure, write_align_report
from posttrain.tasks.metrics import figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_eval_tables_show_n_and_ci_for_every_model():
    fig = figure([1, 0, 1]).as_dict()
    results = {"splits": {"heldout": {"base": {"agent_accuracy": fig}, "sft": {"agent_accuracy": fig}}}}
    results["references"] = {"oracle_accuracy": figure([1, 1]).as_dict()}
    table = eval_tables(results, {"heldout": "meetings, held-out"})
    assert table.startswith("### meetings, held-out\n")
    assert "| base | 0.667 [" in table and "n=3" in table
    assert "| oracle_accuracy | 1.000 [1.00, 1.00] n=2 |" in table
    assert eval_tables(results, {}).startswith("### heldout\n")  # untitled splits show their name
    json.dumps(results)  # figures are JSON as they are


def test_format_figure_of_nothing_shows_n():
    assert format_figure(figure([]).as_dict()) == "- (n=0)"
    assert format_figure(None) == "- (n=0)"
    assert format_figure(figure([1.0, 1.0]).as_dict()) == "1.000 [1.00, 1.00] n=2"


def test_align_report_has_tables_stages_and_plots(tmp_path: Path):
    sft = [{"step": s, "loss": 2.0 - 0.1 * s} for s in range(1, 5)]
    dpo = [{"step": s, "loss": 0.7, "rewards/margins": 0.1 * s, "rewards/accuracies": 0.5} for s in (1, 2)]
    (tmp_path / "metrics_sft.jsonl").write_text("\n".join(map(json.dumps, sft)))
    (tmp_path / "metrics_dpo.jsonl").write_text("\n".join(map(json.dumps, dpo)))
    fig = figure([1, 0]).as_dict()
    results = {"splits": {"heldout": {"base": {"agent_accuracy": fig}}}, "references": {}}
    summary = {
        "task": "meetings",
        "runtime_s": 1.5,
        "sft": {"steps": 4},
        "trajectories": {"count": 2, "mean_reward": fig},
        "pairs": {"synthetic": 1},
        "dpo": {"steps": 2},
        "eval_table": eval_tables(results, {}),
    }
    path = write_align_report(tmp_path, "align test", summary, results, ["agent_accuracy"])
    report = path.read_text()
    assert report.startswith("# align test\n")
    assert "| base | 0.500 [" in report and "| runtime_s | 1.5 |" in report
    assert "| trajectories | mean_reward | 0.500 [" in report
    for name in ("sft_loss", "dpo_loss", "reward_margins", "reward_accuracy", "compliance"):
        assert f"![{name}](plots/{name}.png)" in report
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC


def test_figures_nobody_measured_say_nothing_to_plot_instead_of_an_empty_chart(tmp_path: Path):
    # a task whose bar metrics the models do not have (the empty compliance.png of the issue)
    results = {"splits": {"heldout": {"base": {"agent_accuracy": None}, "dpo": {}}}, "references": {}}
    summary = {"sft": {}, "trajectories": {}, "pairs": {}, "dpo": {}, "eval_table": ""}
    report = write_align_report(tmp_path, "t", summary, results, ["agent_accuracy", "compliance"]).read_text()
    assert "*held-out figures: nothing to plot (nothing was measured).*" in report
    assert "*SFT loss: nothing to plot" in report and "*DPO reward accuracy: nothing to plot" in report
    assert not (tmp_path / "plots" / "compliance.png").exists() and "compliance.png" not in report
