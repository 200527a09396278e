"""posttrain/train/reward_model.py on tiny-random: RewardTrainer on score-difference pairs trains
(loss goes down on the pairs it sees), the saved model reloads, and scores are finite and normalised.

A random 2-layer model cannot be expected to rank held-out answers better than chance; that check
runs on smollm2-135m in bench/rlhf_quality.py (rm_heldout_accuracy).
"""

from __future__ import annotations

import json
import math
import statistics

import pytest

from posttrain.errors import CheckpointError
from posttrain.tasks.conversations import read_scored_conversations, sample_path, score_pairs, to_sft_rows
from posttrain.train.args import RewardModelArgs
from posttrain.train.reward_model import (
    META_FILE,
    ExternalRewardModel,
    render_for_reward,
    train_reward_model,
)


def test_reward_model_trains_reloads_and_normalises(tiny_spec, tiny_tokenizer, tmp_path):
    convs = read_scored_conversations(sample_path())
    pairs = score_pairs(convs, 1.0, fmt="standard")[:8]
    norm_rows = [(r["prompt"], r["completion"]) for r in to_sft_rows(convs[:24], "standard")]
    hp = RewardModelArgs(
        learning_rate=3e-3, batch_size=len(pairs), epochs=10, warmup_ratio=0.0, lora_r=8, lora_alpha=16
    )
    result = train_reward_model(
        tiny_spec,
        tiny_tokenizer,
        pairs,
        norm_rows,
        tmp_path / "rm",
        tmp_path / "ckpt",
        hp,
        metrics_path=tmp_path / "metrics.jsonl",
    )
    assert result.status == "completed" and result.steps == 10
    losses = [loss for _, loss in result.losses]
    # One batch holds every pair, so each step sees the same pairs: the loss must fall.
    assert statistics.fmean(losses[-3:]) < statistics.fmean(losses[:3]) - 0.05, losses
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 11))

    meta = json.loads((tmp_path / "rm" / META_FILE).read_text())
    assert meta["base_model"] == tiny_spec and meta["scale"] > 0
    rm = ExternalRewardModel.load(tmp_path / "rm", tiny_tokenizer)
    texts = [render_for_reward(tiny_tokenizer, p, c) for p, c in norm_rows]
    raw = rm.raw(texts)
    # center/scale are the mean/std of these very answers, so the reloaded model reproduces them.
    assert statistics.fmean(raw) == pytest.approx(meta["center"], abs=1e-4)
    assert statistics.pstdev(raw) == pytest.approx(meta["scale"], rel=1e-3)
    scores = rm.score(texts)
    assert all(math.isfinite(s) and 0.0 < s < 1.0 for s in scores)
    assert min(scores) < 0.5 < max(scores)
    # The pairs it trained on are now mostly ranked the right way round.
    chosen = rm.score_completions([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    rejected = rm.score_completions([p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
    assert sum(c > r for c, r in zip(chosen, rejected, strict=True)) > len(pairs) / 2


def test_render_matches_the_chat_template_and_closes_strings(tiny_tokenizer):
    prompt = [{"role": "user", "content": "Hi"}]
    text = render_for_reward(tiny_tokenizer, prompt, [{"role": "assistant", "content": "Hello"}])
    assert text.endswith("<|im_start|>assistant\nHello<|im_end|>\n")
    assert render_for_reward(tiny_tokenizer, "<|human|> Hi\n<|assistant|>", " Hello").endswith(
        " Hello" + tiny_tokenizer.eos_token
    )
    with pytest.raises(ValueError, match="both"):
        render_for_reward(tiny_tokenizer, prompt, " Hello")


def test_loading_a_directory_without_a_reward_model_names_it(tiny_tokenizer, tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        ExternalRewardModel.load(tmp_path, tiny_tokenizer)
