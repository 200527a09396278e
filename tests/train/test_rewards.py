"""ADLF reward components on hand-made cases with known ordering, and on the bundled sample."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from posttrain.tasks.conversations import format_prompt, read_scored_conversations, sample_path
from posttrain.train.rewards import (
    adlf_reward,
    coherence,
    extract_names,
    extract_numbers,
    faithfulness,
    fluency,
    internal_components,
    internal_reward,
    length_penalty,
    normalize_external,
    plain_text,
    repeated_ngram_fraction,
    reward_breakdown,
)

EGG = "How do I boil an egg so the yolk stays soft?"
EGG_ANSWER = "Put the egg in boiling water for six minutes, then cool it in cold water; the yolk stays soft."
OCEAN = "The Pacific Ocean is the largest ocean on Earth."


@pytest.fixture(scope="module")
def tiny_model(tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


# --------------------------------------------------------------------------- coherence


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


def test_plain_text_strips_chat_template_and_markers(tiny_tokenizer):
    prompt = format_prompt([{"role": "human", "content": "Hi there"}], "standard", tiny_tokenizer)
    assert plain_text(prompt).split() == ["Hi", "there"]  # system prompt, role headers and tokens gone
    assert plain_text("<score=5> <|human|> Hi\n<|assistant|>").split() == ["Hi"]
    assert plain_text([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]) == "Hi"


def test_coherence_with_model_embeddings_is_bounded(tiny_model, tiny_tokenizer):
    values = coherence([EGG, EGG], [EGG, OCEAN], model=tiny_model, tokenizer=tiny_tokenizer)
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= values[1] <= 1.0 and math.isfinite(values[1])


# --------------------------------------------------------------------------- length


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


# --------------------------------------------------------------------------- fluency


def test_fluency_is_the_response_nll_mapped_to_0_1(tiny_model, tiny_tokenizer):
    prompt, response = "The cat sat on the mat.", " It was a sunny day."
    p_ids = tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tiny_tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + r_ids])
    labels = ids.clone()
    labels[0, : len(p_ids)] = -100
    with torch.no_grad():
        nll = tiny_model(input_ids=ids, labels=labels).loss.item()
    (value,) = fluency(tiny_model, tiny_tokenizer, [prompt], [response], temperature=5.0)
    assert value == pytest.approx(math.exp(-nll / 5.0), rel=1e-5)


def test_fluency_batched_equals_unbatched_and_is_in_range(tiny_model, tiny_tokenizer):
    prompts = ["Hello", "Write a poem about the sea and the sky.", "Q"]
    responses = [" there", " The waves roll under a wide blue sky, and gulls call.", ""]
    tiny_model.train()
    batched = fluency(tiny_model, tiny_tokenizer, prompts, responses, batch_size=3)
    single = fluency(tiny_model, tiny_tokenizer, prompts, responses, batch_size=1)
    assert tiny_model.training  # mode restored
    tiny_model.eval()
    assert batched == pytest.approx(single, abs=1e-6)  # right padding does not leak into the scores
    assert all(0.0 < v <= 1.0 for v in batched[:2]) and batched[2] == 0.0  # empty response scores 0


def test_fluency_prefers_the_models_own_greedy_text_over_random_tokens(tiny_model, tiny_tokenizer):
    # A random tiny model cannot tell good English from bad, so "a real sentence beats
    # shuffled words" is not a fair test here. What it must rank is its own greedy
    # continuation (the most likely token at each step) above uniformly random tokens.
    prompt = "Once upon a time"
    ids = tiny_tokenizer(prompt, return_tensors="pt").input_ids
    greedy = tiny_model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    own = tiny_tokenizer.decode(greedy[0, ids.shape[1] :])
    noise = tiny_tokenizer.decode(
        torch.randint(0, len(tiny_tokenizer), (12,), generator=torch.Generator().manual_seed(0))
    )
    mine, random_tokens = fluency(tiny_model, tiny_tokenizer, [prompt, prompt], [own, noise])
    assert mine > random_tokens


# --------------------------------------------------------------------------- faithfulness

NOTE = "The Orion Library in Halden opened in 1998. It has 42,000 books and 15 librarians."


def test_repeating_prompt_numbers_beats_inventing_them():
    grounded, invented, vague = faithfulness(
        [NOTE] * 3,
        [
            "The Orion Library in Halden has 42,000 books and 15 librarians.",
            "The Orion Library in Berlin has about 10,000 books and 3 librarians.",
            "It is a library with many books.",
        ],
    )
    assert grounded == 1.0
    assert invented == pytest.approx(2 / 5)  # orion, library supported; berlin, 10000, 3 not
    assert vague == 0.5  # nothing checkable


def test_working_shown_in_any_order_is_supported():
    prompt = "Maya has 12 apples and buys 7 more. Then Liam takes 5 of them. How many does she have?"
    right, wrong, slip = faithfulness(
        [prompt] * 3,
        [
            "Maya has 14 apples now: 12 plus 7 is 19, and after Liam takes 5 there are 14 left.",
            "Maya has 24 apples now.",  # 12 + 7 + 5: two steps from the prompt, never shown
            "12 plus 7 is 20, minus 5 leaves 15.",
        ],
    )
    assert right == 1.0 and wrong == 0.0
    assert slip == pytest.approx(3 / 5)  # 12, 7, 5 supported; 20 and 15 are not


def test_times_percentages_and_decimals():
    assert faithfulness(
        ["My train leaves at 14:30 and it takes 45 minutes to get there."], ["Leave by 13:45."]
    ) == [1.0]
    assert faithfulness(["A $80 jacket is 25% off."], ["25% of $80 is $20, so it costs $60."]) == [1.0]
    assert faithfulness(["Split $7 between 3 people."], ["About $2.33 each."]) == [1.0]
    assert faithfulness(["Split $7 between 3 people."], ["About $2.50 each."]) == [0.0]


def test_no_facts_in_the_prompt_means_nothing_to_contradict():
    assert faithfulness(["how do I boil an egg?"], ["Boil it for 6 minutes in Paris."]) == [0.5]


def test_fact_extraction():
    assert extract_numbers("Pay $3.50 at 9:05 for 42,000 items, 25% off.\n2) next") == [
        (3.5, 0.005),
        (545, 0.5),
        (42000.0, 0.5),
        (25.0, 0.5),
    ]
    assert extract_names("The Orion Library is in Halden. Jane met Liam, I think.\nOK then") == [
        "orion",
        "library",
        "halden",
        "liam",
    ]


# --------------------------------------------------------------------------- combining


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
