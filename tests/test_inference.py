"""Shared-prefix KV reuse in batched generation: the same tokens as left-padded batches and as one
conversation at a time, greedy and seeded sampling, on a tiny Llama whose output depends on its
context, and the same text on smollm2-135m tool_use prompts."""

from __future__ import annotations

import copy

import pytest
import torch

from posttrain.inference import (
    MIN_SHARED_PREFIX,
    PRUNE_EVERY,
    _empty_cache,
    _generate_in_cache,
    _generate_left_padded,
    generate_batch,
    render_prompts,
    shared_prefix_length,
)
from posttrain.models import load_for_inference

SYSTEM = {"role": "system", "content": "You are a careful assistant who answers in one line. " * 6}
USERS = ("hi", "what is two plus two, exactly?", "name a colour", "tell me about the weather in Paris today")
GREEDY = {"max_new_tokens": 12, "do_sample": False}


@pytest.fixture(scope="module")
def lively(tiny_spec):
    """tiny-random with weights wide enough that its argmax moves with position and context (as
    built, it emits the same token whatever it reads, which would make every check pass)."""
    model, tok = load_for_inference(tiny_spec)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.2, generator=gen)
    return model, tok


def _rows(tok, users=USERS) -> list[list[int]]:
    convs = [[SYSTEM, {"role": "user", "content": u}] for u in users]
    return tok(render_prompts(tok, convs), add_special_tokens=False)["input_ids"]


def _cached(model, tok, rows, shared=None) -> torch.Tensor:
    shared = shared_prefix_length(rows) if shared is None else shared
    return _generate_in_cache(model, tok, rows, shared, 1, _empty_cache(model), GREEDY)


def _plain(model, tok, rows) -> torch.Tensor:
    """One `generate` over left-padded rows (what generate_batch did before), widened with pads
    to max_new_tokens as the cached path returns it."""
    new = _generate_left_padded(model, tok, rows, 1, "cpu", GREEDY)
    return torch.nn.functional.pad(new, (0, GREEDY["max_new_tokens"] - new.shape[1]), value=tok.pad_token_id)


def test_shared_prefix_length_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0
    assert shared_prefix_length([[1, 2, 3]]) == 0


@torch.no_grad()
def test_prefix_path_gives_the_tokens_of_left_padding_and_of_one_at_a_time(lively):
    model, tok = lively
    rows = _rows(tok)
    shared = shared_prefix_length(rows)
    assert shared >= MIN_SHARED_PREFIX and len({len(r) for r in rows}) > 1  # padding in the middle
    cached = _cached(model, tok, rows)
    single = torch.cat([_plain(model, tok, [r]) for r in rows])
    assert torch.equal(cached, _plain(model, tok, rows)) and torch.equal(cached, single)
    assert torch.equal(_cached(model, tok, rows, shared=0), single)
    assert len(set(cached.flatten().tolist())) > 30  # varied tokens: the comparison can fail

    # The check is sensitive to the layout: a row padded in the middle as the prefix path lays it
    # out, but with an all-ones mask (pads read, suffix positions shifted), generates differently.
    row, pad = rows[0], tok.pad_token_id
    shifted = torch.tensor([row[:shared] + [pad] * 5 + row[shared:]])
    ones = torch.ones_like(shifted)
    wrong = model.generate(input_ids=shifted, attention_mask=ones, pad_token_id=pad, **GREEDY)
    assert not torch.equal(wrong[0, shifted.shape[1] :], cached[0])


@torch.no_grad()
def test_rows_of_equal_length_and_duplicates(lively):
    model, tok = lively
    rows = _rows(tok, ("same question", "same question", "same answer?"))
    cached = _cached(model, tok, rows)
    assert torch.equal(cached, _plain(model, tok, rows))
    assert torch.equal(cached[0], cached[1]) and not torch.equal(cached[0], cached[2])


def test_seeded_sampling_with_several_returns_matches_the_plain_path(lively):
    model, tok = lively
    convs = [[SYSTEM, {"role": "user", "content": u}] for u in USERS[:3]]
    kwargs = {"max_new_tokens": 10, "do_sample": True, "temperature": 0.9, "num_return_sequences": 2}
    torch.manual_seed(3)
    cached = generate_batch(model, tok, convs, **kwargs)
    torch.manual_seed(3)
    plain = generate_batch(model, tok, convs, prefix_cache=False, **kwargs)
    torch.manual_seed(4)
    other = generate_batch(model, tok, convs, **kwargs)
    assert len(cached) == 6 and cached == plain and cached != other
    assert len(set(cached)) == 6  # each return is its own sample


def test_generate_batch_runs_the_prefix_once_only_when_it_is_long(lively):
    model, tok = lively
    seen: list[tuple[int, int]] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        convs = [[SYSTEM, {"role": "user", "content": u}] for u in USERS]
        generate_batch(model, tok, convs, max_new_tokens=3)
        shared = shared_prefix_length(_rows(tok))
        assert seen[0] == (1, shared) and seen[1][0] == len(USERS)
        assert seen[1][1] == max(len(r) for r in _rows(tok)) - shared

        seen.clear()
        generate_batch(model, tok, [[{"role": "user", "content": u}] for u in USERS], max_new_tokens=3)
        assert seen[0][0] == len(USERS)  # a short shared prefix keeps the left-padded path
    finally:
        hook.remove()


@pytest.mark.slow
def test_smollm2_tool_use_text_is_unchanged_by_the_prefix_cache():
    from posttrain.tasks.tool_use import tool_use_first_turns

    model, tok = load_for_inference("smollm2-135m")
    prompts = [r["prompt"] for r in tool_use_first_turns("train", 1, 4, compact=True)]
    cached = generate_batch(model, tok, prompts, max_new_tokens=32)
    plain = generate_batch(model, tok, prompts, max_new_tokens=32, prefix_cache=False)
    single = [generate_batch(model, tok, [p], max_new_tokens=32)[0] for p in prompts]
    assert cached == plain == single
    assert len(set(cached)) == len(prompts)


@torch.no_grad()
def test_a_peft_model_takes_the_prefix_path_with_the_same_tokens(lively):
    from peft import LoraConfig, get_peft_model

    base, tok = lively
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(copy.deepcopy(base), lora)
    rows = _rows(tok)
    cached = _cached(model, tok, rows)
    assert torch.equal(cached, _plain(model, tok, rows))
    assert not torch.equal(cached, _plain(base, tok, rows))


@torch.no_grad()
def test_rows_that_end_leave_the_batch_and_the_rest_read_on_unchanged(lively):
    base, tok = lively
    model = copy.deepcopy(base)
    rows = _rows(tok)
    free = _cached(model, tok, rows)
    stop = int(free[1, 2])  # a token row 1 makes early: declared an end-of-sequence token below
    model.generation_config.eos_token_id = [tok.eos_token_id, stop]
    ended = [bool((r == stop).any()) for r in free]
    pruned = [bool((r[:PRUNE_EVERY] == stop).any()) for r in free]  # before the last `generate`
    assert pruned[1] and not all(ended) and GREEDY["max_new_tokens"] > PRUNE_EVERY

    batches: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: batches.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        cached = _cached(model, tok, rows)
    finally:
        hook.remove()
    assert torch.equal(cached, _plain(model, tok, rows))
    assert batches[-1] == len(rows) - sum(pruned)  # the rows that ended stopped costing decode steps
    for got, want, end in zip(cached, free, ended, strict=True):
        cut = int((want == stop).nonzero()[0, 0]) + 1 if end else len(want)
        assert torch.equal(got[:cut], want[:cut]) and set(got[cut:].tolist()) <= {tok.pad_token_id}


def _tool_rows():
    """Four requests, each with its own tool list (a different schema per row)."""
    from posttrain.tasks.tool_use.pool_pairs import pool_item
    from posttrain.tasks.tool_use.pool_rows import pool_prompt, pool_rows

    rows = [r for r in pool_rows(12, 5, "validation") if r["gold"] != "no_call"][:4]
    return [pool_prompt(r) for r in rows], [pool_item(r).tools for r in rows]


def test_grammar_masked_rows_match_one_at_a_time_constrained_sampling(lively):
    """Each row keeps its own grammar through the shared prefix, the batch and the pruning of rows
    that end: the batch gives what `constrained.sample` gives one conversation at a time, and a
    row without a grammar what it gives free."""
    from posttrain.constrained import chat_prompt_ids, grammar_tokenizer, sample
    from posttrain.toolcall import tool_turn_grammar

    model, tok = lively
    prompts, tools = _tool_rows()
    lltok = grammar_tokenizer(tok)
    grammars = [tool_turn_grammar(t) for t in tools[:3]] + [None]
    batched = generate_batch(model, tok, prompts, max_new_tokens=40, batch_size=4, grammars=grammars)
    singly = generate_batch(
        model, tok, prompts, max_new_tokens=40, batch_size=1, grammars=grammars, lltok=lltok
    )
    one_by_one = [
        sample(model, tok, chat_prompt_ids(tok, p), max_new_tokens=40, grammar=g, lltok=lltok).text.strip()
        for p, g in zip(prompts[:3], grammars, strict=False)
    ]
    assert batched == singly and batched[:3] == one_by_one
    assert batched[3] == generate_batch(model, tok, prompts[3:], max_new_tokens=40)[0]
    assert all(text.startswith("Thought: ") for text in batched[:3]) and len(set(batched)) == 4


def test_smollm2_forced_tool_turns_are_calls_of_the_rows_own_tools():
    from posttrain.toolcall import ToolRegistry, parse_response, tool_turn_grammar

    model, tok = load_for_inference("smollm2-135m")
    prompts, tools = _tool_rows()
    grammars = [tool_turn_grammar(t, answer=False) for t in tools]
    texts = generate_batch(model, tok, prompts, max_new_tokens=160, batch_size=4, grammars=grammars)
    for text, offered in zip(texts, tools, strict=True):
        parsed = parse_response(text, ToolRegistry(offered))
        assert parsed.kind == "call" and parsed.compliant, text
