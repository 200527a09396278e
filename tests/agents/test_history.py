"""History (posttrain.agents.history): how finished episodes reach the roles, as summaries and JSON."""

from __future__ import annotations

import json
import math

from posttrain.agents.history import (
    DIVERGED_IMPROVEMENT,
    EpisodeSummary,
    as_history,
    best_episode,
    history_context,
    jsonable,
    seal_improvement,
)

BASE = {"lr": 1e-4, "batch_size": 4}


def test_episode_summary_reads_the_seed_metrics_shape() -> None:
    (h,) = as_history([{"episode": 2, "kind": "train", "hparams": BASE, "metrics": {"eval_loss": 1.5}}])
    assert isinstance(h, EpisodeSummary) and h.eval_loss == 1.5 and h.loss == 1.5
    assert as_history([{"episode": 0, "eval_loss": math.nan}])[0].loss is None


def test_history_is_ordered_and_strict_json_with_diverged_losses_as_null() -> None:
    raw = [{"episode": 1, "eval_loss": math.inf}, {"episode": 0, "eval_loss": 1.23456789, "qa_score": 0.5}]
    assert [h.episode for h in as_history(raw)] == [0, 1]
    ctx = history_context(raw)
    assert ctx == [
        {"episode": 0, "hparams": {}, "eval_loss": 1.23456789, "qa_score": 0.5, "decisions": {}},
        {"episode": 1, "hparams": {}, "eval_loss": None, "decisions": {}},
    ]
    json.dumps(ctx, allow_nan=False)  # a NaN here would be invalid JSON for an LLM endpoint


def test_jsonable_rounds_to_significant_digits_and_dumps_models_by_alias() -> None:
    summary = EpisodeSummary(episode=0, eval_loss=1.23456)
    assert jsonable({"x": (0.000123456, math.nan), "s": summary}, digits=3) == {
        "x": [0.000123, None],
        "s": {**summary.model_dump(by_alias=True), "eval_loss": 1.23},
    }


def test_best_episode_skips_diverged_and_keeps_the_earlier_on_a_tie() -> None:
    losses = [2.0, math.nan, 2.0]
    h = as_history([{"episode": i, "eval_loss": loss} for i, loss in enumerate(losses)])
    assert best_episode(h).episode == 0
    assert best_episode(as_history([{"episode": 0, "eval_loss": math.nan}])) is None


def test_seal_improvement_against_its_own_base_episode() -> None:
    h = as_history(
        [
            {"episode": 0, "eval_loss": 2.0},
            {"episode": 1, "eval_loss": 2.5, "seal_eval_loss": 1.9, "seal_base_episode": 0},
            {"episode": 2, "eval_loss": 2.5, "seal_delta": 0.25},
            {"episode": 3, "eval_loss": 2.5, "seal_eval_loss": math.nan},
            {"episode": 4, "eval_loss": 2.5, "seal_eval_loss": 1.0, "seal_base_episode": 9},
        ]
    )
    assert [seal_improvement(e, h) for e in h] == [0.0, 2.0 - 1.9, -0.25, DIVERGED_IMPROVEMENT, 0.0]
