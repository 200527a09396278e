"""Coherence on hand-made cases with a known ordering."""

from __future__ import annotations

import math

import pytest

from posttrain.tasks.conversations import format_prompt
from posttrain.train.rewards import coherence

EGG = "How do I boil an egg so the yolk stays soft?"
EGG_ANSWER = "Put the egg in boiling water for six minutes, then cool it in cold water; the yolk stays soft."
OCEAN = "The Pacific Ocean is the largest ocean on Earth."


def test_off_topic_answer_scores_lower_on_coherence():
    on, off = coherence([EGG, EGG], [EGG_ANSWER, OCEAN])
    assert on > 0.3 and off == 0.0


def test_coherence_range_identity_and_fixed_corpus():
    same, empty = coherence([EGG, EGG], [EGG, "the of and"])  # stopwords only: nothing to compare
    assert same == pytest.approx(1.0) and empty == 0.0
    corpus = [EGG, EGG_ANSWER, OCEAN]
    plain = coherence([EGG], [EGG_ANSWER], idf_corpus=corpus)
    marked = coherence(
        [format_prompt([{"role": "human", "content": EGG}], "turn_markers")], [EGG_ANSWER], idf_corpus=corpus
    )
    assert marked == pytest.approx(plain)  # markers are stripped before scoring


def test_coherence_with_model_embeddings_is_bounded(tiny_model, tiny_tokenizer):
    values = coherence([EGG, EGG], [EGG, OCEAN], model=tiny_model, tokenizer=tiny_tokenizer)
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= values[1] <= 1.0 and math.isfinite(values[1])
