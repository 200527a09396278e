"""Combining components into the ADLF reward, and normalising external scores; the bundled
sample ranked by the text-only components."""

from __future__ import annotations

import math
import statistics

import pytest

from posttrain.tasks.conversations import read_scored_conversations, sample_path
from posttrain.train.rewards import (
    adlf_reward,
    coherence,
    internal_components,
    internal_reward,
    normalize_external,
    reward_breakdown,
)

EGG = "How do I boil an egg so the yolk stays soft?"
EGG_ANSWER = "Put the egg in boiling water for six minutes, then cool it in cold water; the yolk stays soft."


def test_internal_reward_weighted_mean_plus_penalty():
    components = {
        "coherence": [0.5, 1.0],
        "faithfulness": [1.0, 0.0],
        "length": [0.0, -0.5],
        "fluency": [9, 9],
    }
    weights = {"coherence": 1.0, "faithfulness": 3.0, "length": 0.5}
    assert internal_reward(components, weights) == pytest.approx([(0.5 + 3.0) / 4, 1.0 / 4 - 0.25])
    assert internal_reward({"length": [-0.4]}, {"length": 1.0}) == [pytest.approx(-0.4)]


def test_internal_reward_rejects_bad_weights():
    with pytest.raises(ValueError, match="weight 'quality' is set but there is no 'quality' component"):
        internal_reward({"coherence": [1.0]}, {"quality": 0.4})
    with pytest.raises(ValueError, match=">= 0"):
        internal_reward({"coherence": [1.0]}, {"coherence": -1})
    with pytest.raises(ValueError, match="different lengths"):
        internal_reward({"coherence": [1.0], "fluency": [1.0, 0.5]}, {"coherence": 1})


def test_adlf_reward_arithmetic():
    assert adlf_reward([1.0, 0.0, 0.6], [0.0, 1.0, 0.2], alpha=0.3) == pytest.approx([0.7, 0.3, 0.48])
    assert adlf_reward([0.8], [0.1], alpha=0.0) == [0.8]
    assert adlf_reward([0.8], [0.1], alpha=1.0) == [0.1]
    with pytest.raises(ValueError, match="alpha"):
        adlf_reward([1.0], [1.0], alpha=1.5)


def test_reward_breakdown_logs_every_component():
    rows = reward_breakdown(
        {"coherence": [0.4], "length": [-0.2]}, {"coherence": 1, "length": 1}, [0.9], alpha=0.5
    )
    assert rows == [
        {
            "coherence": 0.4,
            "length": -0.2,
            "internal": pytest.approx(0.2),
            "external": 0.9,
            "reward": pytest.approx(0.55),
        }
    ]


def test_normalize_external():
    assert normalize_external([0.0, 2.0], center=2.0) == pytest.approx([1 / (1 + math.e**2), 0.5])
    assert normalize_external([1.0, 3.0], "zscore") == pytest.approx([-1.0, 1.0])
    assert normalize_external([1.0, 3.0, 2.0], "minmax") == pytest.approx([0.0, 1.0, 0.5])
    assert normalize_external([4.0, 4.0], "minmax") == [0.5, 0.5]
    assert normalize_external([1e6]) == [pytest.approx(1.0)]


def test_internal_components_dispatch(tiny_model, tiny_tokenizer):
    out = internal_components(
        [EGG],
        [EGG_ANSWER],
        ["coherence", "length", "faithfulness", "fluency"],
        model=tiny_model,
        tokenizer=tiny_tokenizer,
    )
    assert sorted(out) == ["coherence", "faithfulness", "fluency", "length"]
    assert out["coherence"] == coherence([EGG], [EGG_ANSWER])
    with pytest.raises(ValueError, match="needs the reference model"):
        internal_components([EGG], [EGG_ANSWER], ["fluency"])
    with pytest.raises(ValueError, match="unknown internal component 'style'"):
        internal_components([EGG], [EGG_ANSWER], ["style"])


def test_internal_reward_ranks_the_bundled_sample():
    """The sample's scores are earned by the text, so the text-only components agree with them."""
    convs = read_scored_conversations(sample_path())
    contexts = ["\n\n".join(t["content"] for t in c.prompt_turns) for c in convs]
    responses = [c.response for c in convs]
    comps = internal_components(contexts, responses, ["coherence", "length", "faithfulness"])
    internal = internal_reward(comps, {"coherence": 1.0, "faithfulness": 1.0, "length": 0.5})

    def mean_where(values, keep):
        return statistics.mean(v for v, c in zip(values, convs, strict=True) if keep(c.score))

    for name in ("coherence", "faithfulness"):
        assert mean_where(comps[name], lambda s: s >= 4) > mean_where(comps[name], lambda s: s <= 1) + 0.1, (
            name
        )
    assert mean_where(internal, lambda s: s >= 4) > mean_where(internal, lambda s: s <= 1) + 0.2
    assert mean_where(comps["coherence"], lambda s: s == 0) < 0.05  # off-topic answers
    assert mean_where(comps["length"], lambda s: s == 2.5) < -0.2  # rambling answers
