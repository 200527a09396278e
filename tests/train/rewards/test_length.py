"""The length penalty's arithmetic and its tokenizer counting."""

from __future__ import annotations

import pytest

from posttrain.train.rewards import length_penalty, repeated_ngram_fraction


def test_rambling_answer_gets_a_lower_length_score_than_a_concise_one():
    concise = "Leave by 13:45, which is 45 minutes before your train."
    rambling = " ".join(["As I said, leave by 13:45 because the train leaves at 14:30."] * 4)
    c, r = length_penalty([concise, rambling], target=(4, 40))
    assert c == 0.0
    assert r < -0.5  # within 40 words, but three quarters of its trigrams repeat


def test_length_penalty_arithmetic():
    words = " ".join(f"w{i}" for i in range(15))
    long, short, empty, repeat = length_penalty([words, "yes", "", "a b c a b c a b c"], target=(4, 10))
    assert long == pytest.approx(-0.5)  # (15 - 10) / 10
    assert short == pytest.approx(-0.75)  # (4 - 1) / 4
    assert empty == -1.0
    assert repeat == pytest.approx(-(1 - 3 / 7))  # 7 trigrams, 3 distinct; 9 words is inside the band
    assert repeated_ngram_fraction("a b c a b c a b c") == pytest.approx(4 / 7)
    assert length_penalty([words * 5], target=(4, 10)) == [-1.0]  # capped


def test_length_counts_tokenizer_tokens(tiny_tokenizer):
    text = "Tokenization splits words into pieces."
    n = len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert length_penalty([text], tiny_tokenizer, target=(n + 2, n + 10)) == [pytest.approx(-2 / (n + 2))]
    with pytest.raises(ValueError, match="min_tokens, max_tokens"):
        length_penalty([text], target=(5, 2))
