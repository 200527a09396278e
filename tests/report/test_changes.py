"""Regressions in words: the sentences for worse, better, equal and missing figures, lower-is-better
metrics and CIs, and that the quickstart and align reports carry them under their tables."""

from __future__ import annotations

from pathlib import Path

from posttrain.config import QuickstartConfig, load_config
from posttrain.pipelines.quickstart import write_report
from posttrain.report import eval_tables, write_align_report
from posttrain.report.changes import better, from_flat, regressions, regressions_markdown
from posttrain.tasks.metrics import figure

LABELS = {"base": "the base model", "tuned": "the tuned adapter", "dpo": "DPO"}


def fig(value: float | None, n: int = 16, ci: tuple[float, float] | None = None) -> dict:
    return {"value": value, "n": n, "ci": list(ci) if ci else None}


def test_a_figure_that_got_worse_is_said_with_both_values_the_reference_and_n():
    models = {
        "tuned": {"irrelevance_accuracy": fig(1.0)},
        "dpo": {"irrelevance_accuracy": fig(0.0)},
    }
    assert regressions(models, LABELS) == [
        "DPO lowered irrelevance_accuracy from 1.00 to 0.00 compared with the tuned adapter (n=16)."
    ]


def test_better_equal_and_within_tolerance_are_not_regressions():
    models = {
        "base": {"ast_accuracy": fig(0.2), "format_validity": fig(0.5), "must_call_rate": fig(0.80)},
        "tuned": {"ast_accuracy": fig(0.6), "format_validity": fig(0.5), "must_call_rate": fig(0.795)},
    }
    assert regressions(models, LABELS) == []
    # the same drop past a tighter tolerance is said
    assert regressions(models, LABELS, tolerance=0.001) == [
        "The tuned adapter lowered must_call_rate from 0.80 to 0.80 compared with the base model (n=16)."
    ]


def test_missing_or_none_figures_are_not_compared():
    models = {
        "base": {"ast_accuracy": fig(None, n=0), "format_validity": fig(0.9)},
        "tuned": {"ast_accuracy": fig(0.5), "format_validity": None, "task_accuracy": fig(0.1)},
        "dpo": {"ast_accuracy": fig(None, n=0), "task_accuracy": fig(0.0, n=12)},
    }
    assert regressions(models, LABELS) == [
        "DPO lowered task_accuracy from 0.10 to 0.00 compared with the tuned adapter (n=16 and 12)."
    ]


def test_lower_is_better_metrics_regress_when_they_rise():
    assert better("hallucinated_function_rate") == "lower" and better("direct_brier") == "lower"
    assert better("irrelevance_accuracy") == "higher" and better("agent_mean_tool_calls") is None
    models = {
        "base": {
            "hallucinated_function_rate": fig(0.3),
            "agent_brier": fig(0.2),
            "agent_mean_tool_calls": fig(2),
        },
        "tuned": {
            "hallucinated_function_rate": fig(0.1),
            "agent_brier": fig(0.4),
            "agent_mean_tool_calls": fig(9),
        },
        "dpo": {
            "hallucinated_function_rate": fig(0.5),
            "agent_brier": fig(0.1),
            "agent_mean_tool_calls": fig(1),
        },
    }
    assert regressions(models, LABELS) == [
        "The tuned adapter raised agent_brier from 0.20 to 0.40 compared with the base model (n=16); "
        "lower is better.",
        "DPO raised hallucinated_function_rate from 0.10 to 0.50 compared with the tuned adapter (n=16); "
        "lower is better.",
    ]


def test_beyond_its_ci_only_when_both_intervals_exist_and_do_not_overlap():
    apart = {"base": {"a_accuracy": fig(0.9, ci=(0.8, 1.0))}, "dpo": {"a_accuracy": fig(0.2, ci=(0.1, 0.4))}}
    overlap = {
        "base": {"a_accuracy": fig(0.9, ci=(0.5, 1.0))},
        "dpo": {"a_accuracy": fig(0.5, ci=(0.2, 0.8))},
    }
    one_ci = {"base": {"a_accuracy": fig(0.9, ci=(0.8, 1.0))}, "dpo": {"a_accuracy": fig(0.2)}}
    assert regressions(apart, LABELS) == [
        "DPO lowered a_accuracy from 0.90 to 0.20 compared with the base model (n=16, beyond its CI)."
    ]
    assert "beyond" not in regressions(overlap, LABELS)[0]
    assert "beyond" not in regressions(one_ci, LABELS)[0]
    # real bootstrap figures: all ones vs all zeros cannot overlap
    real = {
        "base": {"x_accuracy": figure([1] * 8).as_dict()},
        "dpo": {"x_accuracy": figure([0] * 8).as_dict()},
    }
    assert regressions(real, LABELS)[0].endswith("(n=8, beyond its CI).")


def test_flat_figures_take_their_own_n_and_ci():
    flat = {
        "ast_accuracy": 0.5,
        "ast_accuracy_ci": [0.3, 0.7],
        "ast_accuracy_n": 10,
        "thought_prefix_rate": 1.0,
        "n": 40,
    }
    assert from_flat(flat, ["ast_accuracy", "thought_prefix_rate"]) == {
        "ast_accuracy": {"value": 0.5, "n": 10, "ci": [0.3, 0.7]},
        "thought_prefix_rate": {"value": 1.0, "n": 40, "ci": None},
    }


def test_markdown_says_when_nothing_got_worse():
    text = regressions_markdown({"held-out": {"base": {"a": fig(0.1)}, "dpo": {"a": fig(0.2)}}}, LABELS)
    assert (
        text
        == "## Regressions\n\nOn held-out: no figure got worse by more than 0.01 from a model to the next.\n"
    )


def _flat_row(irrelevance: float, ast: float, n: int = 16) -> dict:
    return {
        "ast_accuracy": ast,
        "ast_accuracy_ci": [max(ast - 0.1, 0), min(ast + 0.1, 1)],
        "ast_accuracy_n": n,
        "irrelevance_accuracy": irrelevance,
        "irrelevance_accuracy_ci": [irrelevance, irrelevance],
        "irrelevance_accuracy_n": 4,
        "n": n,
    }


def test_quickstart_report_states_that_dpo_lost_irrelevance_accuracy(tmp_path: Path):
    cfg = load_config(QuickstartConfig)
    families = {"base": _flat_row(0.5, 0.0), "tuned": _flat_row(1.0, 0.25), "dpo": _flat_row(0.0, 0.5)}
    table = {
        label: {"full_compliance": v, "full_compliance_n": 30, "n": 30}
        for label, v in (("base", 0.0), ("tuned", 0.9), ("dpo", 0.9))
    }
    tune, dpo = {"run_dir": "runs/q-tune", "backend": "rules"}, {"run_dir": "runs/q-dpo"}
    seconds = {"model": 0.4, "data": 2.0, "tune": 300.0, "dpo": 120.2, "evaluation": 150.0}
    report = write_report(tmp_path, cfg, tune, dpo, table, families, seconds).read_text()
    head = report.index("## Regressions")
    assert head > report.index("| model | ast_accuracy") and head > report.index("| model | full_compliance")
    assert (
        "- DPO lowered irrelevance_accuracy from 1.00 to 0.00 compared with the tuned adapter "
        "(n=4, beyond its CI).\n" in report[head:]
    )
    assert "The tuned adapter lowered irrelevance" not in report  # 0.5 → 1.0 is better
    assert "On held-out episodes of the five training tools: no figure got worse by more than 0.01" in report
    assert "Seconds per stage: model 0, data 2, tune 300, dpo 120, evaluation 150." in report


def test_align_report_states_regressions_per_split(tmp_path: Path):
    ones, zeros = figure([1, 1, 1, 1]).as_dict(), figure([0, 0, 0, 0]).as_dict()
    results = {
        "splits": {
            "heldout": {
                "base": {"agent_accuracy": zeros, "agent_brier": figure([0.1] * 4).as_dict()},
                "sft": {"agent_accuracy": ones, "agent_brier": figure([0.1] * 4).as_dict()},
                "dpo": {"agent_accuracy": ones, "agent_brier": figure([0.3] * 4).as_dict()},
            },
            "indist": {"base": {"agent_accuracy": ones}, "sft": {"agent_accuracy": ones}},
        },
        "references": {"oracle_accuracy": ones},
    }
    summary = {"sft": {}, "trajectories": {}, "pairs": {}, "dpo": {}, "eval_table": eval_tables(results, {})}
    titles = {"heldout": "meetings, held-out"}
    report = write_align_report(tmp_path, "t", summary, results, ["agent_accuracy"], titles).read_text()
    head = report.index("## Regressions")
    assert report.index("### heldout") < head < report.index("## Run")
    assert (
        "On meetings, held-out:\n\n- DPO raised agent_brier from 0.10 to 0.30 compared with the SFT adapter "
        "(n=4, beyond its CI); lower is better.\n" in report
    )
    assert "On indist: no figure got worse" in report  # untitled splits by their name
    assert "oracle" not in report[head : report.index("## Run")]  # references are not models
