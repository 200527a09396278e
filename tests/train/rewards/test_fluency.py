"""Fluency against the reference model's own NLL."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.train.rewards import fluency


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
