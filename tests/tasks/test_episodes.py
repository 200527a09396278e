"""What both align tasks share: best-vs-worst pairing of scored trajectories, on-policy pairs
sharing their prompt, and the trajectory stats of a batch."""

from __future__ import annotations

import pytest

from posttrain.tasks.episodes import on_policy_pairs, pair_best_worst, trajectory_stats


def test_pair_best_worst_picks_extremes_and_respects_the_margin():
    group = [(0.2, "a"), (0.9, "b"), (0.5, "c"), (0.2, "d")]
    assert pair_best_worst(group, 0.5) == ("b", "d", pytest.approx(0.7))  # ties: the later one is worst
    assert pair_best_worst(group, 0.71) is None
    assert pair_best_worst([(0.9, "x"), (0.1, "y")], 0.1, key=len) is None  # same key: same trajectory
    assert pair_best_worst([(1.0, "only")], 0.0) is None


def _trace(prompt_id: str, reward: float, text: str) -> dict:
    prompt = [{"role": "system", "content": "tools"}, {"role": "user", "content": f"question {prompt_id}"}]
    return {
        "prompt_id": prompt_id,
        "prompt": prompt,
        "messages": [{"role": "assistant", "content": text}],
        "reward": {"total": reward},
    }


def test_on_policy_pairs_share_their_prompt_and_pair_best_with_worst():
    traces = [
        _trace("p1", 0.5, "middle"),
        _trace("p1", 1.0, "best"),
        _trace("p1", 0.0, "worst"),
        _trace("p2", 0.6, "close"),
        _trace("p2", 0.5, "closer"),
        _trace("p3", 0.9, "same"),
        _trace("p3", 0.1, "same"),
    ]
    pairs = on_policy_pairs(traces, min_margin=0.3, limit=10)
    assert len(pairs) == 1  # p2's gap is too small, p3's two texts are the same
    (pair,) = pairs
    assert pair["id"] == "p1" and pair["source"] == "on_policy"
    assert pair["prompt"] == traces[0]["prompt"]
    assert pair["chosen"][0]["content"] == "best" and pair["rejected"][0]["content"] == "worst"
    assert pair["margin"] == 1.0
    assert on_policy_pairs(traces, min_margin=0.3, limit=0) == []


def test_trajectory_stats_count_greedy_apart_and_calls_2_to_5_on_request():
    def trace(policy: str, correct: bool, calls: int) -> dict:
        status = "final" if correct else "max_steps"
        return {"policy": policy, "correct": correct, "num_tool_calls": calls, "status": status} | {
            "reward": {"total": 0.5}
        }

    greedy, sampled = "sft-greedy", "sft-sample(t=0.8)"
    traces = [trace(greedy, True, 2), trace(greedy, False, 0), trace(sampled, True, 6)]
    stats = trajectory_stats(traces, calls_2_to_5=True)
    assert stats["count"] == 3 and stats["final_answers"] == 2
    assert stats["greedy_accuracy"]["value"] == 0.5 and stats["greedy_accuracy"]["n"] == 2
    assert stats["accuracy"]["value"] == pytest.approx(2 / 3)
    assert stats["calls_2_to_5"]["value"] == pytest.approx(1 / 3)
    assert trajectory_stats(traces, calls_2_to_5=False)["calls_2_to_5"] is None
