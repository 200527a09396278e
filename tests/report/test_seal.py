"""SEAL's summary and report.md say in words when the reward accepts every self-edit (the tiny
test preset's `success` at score 0), so its "success 100%" is not read as self-edits that helped."""

from __future__ import annotations

from posttrain.config import SEALConfig, load_config
from posttrain.report.seal import seal_summary, write_seal_report
from posttrain.tasks.seal import build_domain, make_reward_model
from posttrain.train.restem import SelfEditSample, reward_stats


def _history(domain) -> list[dict]:
    """One outer iteration of two self-edits that changed nothing (score 0 before and after)."""
    samples = [
        SelfEditSample(0, "c0", i, [], "edit", 0, score_before=0.0, score_after=0.0, kept=i == 0)
        for i in range(2)
    ]
    for s in samples:
        s.reward = domain.reward_model.compute_reward(s.score_before, s.score_after, None)
    return [
        {
            "iteration": 0,
            "m_step": "trained",
            "mstep_loss_last": 1.0,
            "elapsed_s": 1.0,
            **reward_stats(samples),
        }
    ]


def _report(cfg: SEALConfig, tmp_path) -> tuple[dict, str]:
    reward = make_reward_model(cfg.reward.kind, cfg.reward.margin, cfg.reward.success_at)
    domain = build_domain(cfg.domain, cfg.data_config, reward)
    history = _history(domain)
    summary = seal_summary(cfg, domain, "cpu", history, {}, [1, 2, 3], [4, 5])
    path = write_seal_report(tmp_path, "posttrain seal: t", summary, history, {}, domain)
    return summary, path.read_text()


def test_the_test_presets_always_accepting_reward_is_said_in_words(tmp_path):
    cfg = load_config(SEALConfig, preset="seal_test")
    summary, report = _report(cfg, tmp_path)
    assert summary["success_rate_last"] == 1.0  # nothing improved, yet every self-edit "succeeded"
    assert summary["reward"] == "success: 1 when the score after the update is at least 0"
    assert "say nothing about the self-edits" in summary["reward_note"]
    note = report.index("**Note:** the reward is `success` at a score of 0")
    assert note < report.index("## Summary")  # read before the numbers it qualifies


def test_a_reward_that_must_be_earned_gets_no_note(tmp_path):
    cfg = load_config(SEALConfig, preset="seal_test", overrides=["reward.kind=binary"])
    summary, report = _report(cfg, tmp_path)
    assert summary["success_rate_last"] == 0.0 and "reward_note" not in summary
    assert summary["reward"] == "binary: 1 when the update improves the score by more than 0"
    assert "**Note:**" not in report
