"""Argument reranking: which edits of a call are candidates, that the channel's favourite wins and
the rest of a reply is kept, and the reranked pool evaluation end to end on a real (tiny) model."""

from __future__ import annotations

import json

import pytest

from posttrain.toolcall import Tool, format_call, format_final, parse_response
from posttrain.toolcall.rerank import (
    UNGROUNDED_PENALTY,
    argument_edits,
    call_prefix,
    misformatted,
    name_replacements,
    optional_additions,
    request_names,
    request_numbers,
    request_span,
    rerank_replies,
    ungrounded,
)

BOOK = Tool(
    "book_rooms",
    "Book hotel rooms.",
    {
        "type": "object",
        "properties": {
            "nights": {"type": "integer", "description": "Nights to stay."},
            "arrival": {"type": "string", "description": "Check-in date."},
            "departure": {"type": "string", "description": "Check-out date."},
            "room": {"type": "string", "enum": ["single", "double", "suite"]},
            "note": {"type": "string", "description": "Anything else."},
        },
        "required": ["nights", "arrival", "departure", "room"],
    },
)
REQUEST = "Book a double room for 3 nights, 1,200 dollars at most, from 2026-05-01 to 2026-05-04."
CALL = {"nights": 4, "arrival": "2026-05-04", "departure": "2026-05-01", "room": "double", "note": "x"}
GROUNDED = {"nights": 3, "arrival": "2026-05-01", "departure": "2026-05-04", "room": "double"}


def test_request_numbers_are_read_once_each_in_order():
    assert request_numbers(REQUEST) == [3, 1200, 2026, 5, 1, 4]  # a date's "-05" is 5, not -5
    assert request_numbers("from -4.5 to 7") == [-4.5, 7]
    assert request_numbers("3.0 kg, then 2.5 and 3") == [3, 2.5]


def test_edits_are_single_schema_valid_changes_and_the_call_itself_first():
    edits = argument_edits(BOOK, CALL, REQUEST)
    assert edits[0] == CALL
    changed = [{k for k in CALL.keys() | e.keys() if CALL.get(k) != e.get(k)} for e in edits[1:]]
    assert {"note"} in changed  # the optional argument dropped
    assert CALL | {"nights": 3} in edits and CALL | {"nights": 1200} in edits  # numbers of the request
    assert CALL | {"room": "suite"} in edits and CALL | {"room": "single"} in edits  # other enum values
    assert CALL | {"arrival": "2026-05-01", "departure": "2026-05-04"} in edits  # two strings swapped
    assert all(len(c) in (1, 2) for c in changed)
    # no required argument is ever dropped, and no enum gets a value outside it
    assert all(set(BOOK.parameters["required"]) <= e.keys() for e in edits)
    assert all(e["room"] in ("single", "double", "suite") for e in edits)
    assert len(edits) == len({json.dumps(e, sort_keys=True) for e in edits})


def test_the_candidate_the_channel_prefers_replaces_the_call_and_keeps_the_thought():
    without_note = {k: v for k, v in CALL.items() if k != "note"}
    wanted = call_prefix(BOOK, without_note)
    calls: list[tuple[list[str], list[str]]] = []

    def channel(prefixes, targets):
        calls.append((list(prefixes), list(targets)))
        return [1.0 if p == wanted else 0.0 for p in prefixes]

    reply = format_call("I should book.", "book_rooms", CALL)
    final = format_final("No tool needed.", "Hello!")
    out, counts = rerank_replies(channel, [reply, final, "garbage"], [REQUEST] * 3, [[BOOK]] * 3)
    assert len(calls) == 1 and set(calls[0][1]) == {REQUEST}  # one batched channel call
    assert out[1:] == [final, "garbage"] and counts[1:] == [0, 0]
    assert counts[0] == len(argument_edits(BOOK, CALL, REQUEST))
    parsed = parse_response(out[0], {"book_rooms": BOOK})
    assert parsed.kind == "call" and parsed.thought == "I should book." and parsed.call.args == without_note


def test_values_the_request_does_not_name_are_counted():
    assert ungrounded(BOOK, GROUNDED, REQUEST) == 0
    assert ungrounded(BOOK, GROUNDED | {"room": "suite"}, REQUEST) == 0  # an enum value is not spelt out
    assert ungrounded(BOOK, GROUNDED | {"nights": 7}, REQUEST) == 1  # no 7 in the request
    assert ungrounded(BOOK, GROUNDED | {"note": "quiet floor"}, REQUEST) == 1
    assert ungrounded(BOOK, GROUNDED | {"note": "DOUBLE ROOM"}, REQUEST) == 0  # case does not matter
    # one request value in two slots: the second use counts
    assert ungrounded(BOOK, GROUNDED | {"departure": "2026-05-01"}, REQUEST) == 1


def test_a_misspelt_string_is_snapped_to_the_request_words_most_like_it():
    assert request_span("Nurship Cam", "Show the Nursery Cam from 8 minutes ago.") == "Nursery Cam"
    assert request_span("living_room", "Vacuum the living room, please") == "living room"
    assert request_span("RS4821", "Cancel booking RSV-4821 tonight") == "RSV-4821"
    assert request_span("Nursery Cam", "Show the Nursery Cam") is None  # already there
    assert request_span("Paris", "Book a table for two at eight") is None  # nothing alike
    call = GROUNDED | {"note": "dubble room"}
    assert call | {"note": "double room"} in argument_edits(BOOK, call, REQUEST)


def test_an_ungrounded_value_loses_a_close_call_but_not_a_clear_one():
    """Equal channel scores: the call without the invented note wins. A channel that prefers the
    note by more than the penalty keeps it (a normalised value the request words differently)."""
    reply = format_call("Book.", "book_rooms", GROUNDED | {"note": "quiet floor"})
    out, _ = rerank_replies(lambda p, t: [0.0] * len(p), [reply], [REQUEST], [[BOOK]])
    assert parse_response(out[0], {"book_rooms": BOOK}).call.args == GROUNDED
    own = call_prefix(BOOK, GROUNDED | {"note": "quiet floor"})
    out, _ = rerank_replies(
        lambda p, t: [2 * UNGROUNDED_PENALTY if x == own else 0.0 for x in p], [reply], [REQUEST], [[BOOK]]
    )
    assert out == [reply]


def test_ties_keep_the_models_own_reply_verbatim():
    reply = format_call("Book.", "book_rooms", GROUNDED) + "\ntrailing words"
    out, counts = rerank_replies(lambda p, t: [0.0] * len(p), [reply], [REQUEST], [[BOOK]])
    assert out == [reply] and counts[0] > 1


def test_reranked_pool_evaluation_records_what_it_changed(tiny_spec):
    """Gold turns as the replies (a random tiny model seldom finishes a call), scored by the real
    tiny model's channel: every call is reranked, a changed one keeps its reply before."""
    from functools import partial

    from posttrain.inference import channel_logprobs
    from posttrain.models import load_for_inference
    from posttrain.tasks.tool_use.pool_align import evaluate_pool
    from posttrain.tasks.tool_use.pool_pairs import pool_item
    from posttrain.tasks.tool_use.pool_rows import pool_rows
    from posttrain.tasks.tool_use.user_eval import gold_turn

    model, tok = load_for_inference(tiny_spec)
    rows = pool_rows(8, 5, "validation", irrelevance=0.25)
    gold = [gold_turn(pool_item(r, i)) for i, r in enumerate(rows)]

    def generate(prompts, grammars=None):
        return gold[: len(prompts)]

    generate.channel = partial(channel_logprobs, model, tok)  # type: ignore[attr-defined]
    plain, _ = evaluate_pool(generate, rows)
    figs, records = evaluate_pool(generate, rows, rerank=True)
    assert plain["ast_accuracy"].value == 1.0 and figs["format_validity"].value == 1.0
    for row, text, record in zip(rows, gold, records, strict=True):
        if row["gold"] == "no_call":
            assert record["rerank_candidates"] == 0 and record["reply"] == text
        else:
            assert record["rerank_candidates"] >= 1
            assert record.get("reply_before_rerank", text) == text
            assert (record["reply"] != text) == ("reply_before_rerank" in record)
    assert any(r["rerank_candidates"] > 1 for r in records)
    # the same channel as the base scorer's: the same records, the model's own never asked
    generate.base_channel = generate.channel  # type: ignore[attr-defined]
    generate.channel = None  # type: ignore[attr-defined]
    assert evaluate_pool(generate, rows, rerank=True, rerank_scorer="base")[1] == records


def test_reranking_a_chat_template_format_is_refused():
    from posttrain.errors import ConfigError
    from posttrain.tasks.align import align_task

    with pytest.raises(ConfigError, match="rerank_arguments applies to --task tool_use"):
        align_task("meetings", rerank=True)
    assert align_task("tool_use", rerank=True).rerank is True


def test_one_candidate_drops_every_optional_argument_the_request_does_not_name():
    tool = Tool(
        "find_rooms",
        "Find hotel rooms.",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "max_price": {"type": "integer"},
                "view": {"type": "string"},
                "floor": {"type": "integer"},
            },
            "required": ["city"],
        },
    )
    request = "Rooms in Leeds under 415 a night?"
    call = {"city": "Leeds", "max_price": 415, "view": "sea", "floor": 3}
    edits = argument_edits(tool, call, request)
    assert {"city": "Leeds", "max_price": 415} in edits  # both invented optionals gone at once
    assert ungrounded(tool, {"city": "Leeds", "max_price": 415}, request) == 0


def test_request_names_are_the_dates_times_addresses_and_capitalised_runs():
    request = (
        "Lisbon trip: a hotel in Cape Town on 2026-03-04 at 10:30. Is The Linden House ok? Mail ana@x.com."
    )
    assert request_names(request) == [
        "Cape Town",  # not "Lisbon": a lone word opening a sentence is mostly a verb
        "2026-03-04",
        "10:30",
        "The Linden House",  # without the "Is" that opens the sentence
        "ana@x.com",
    ]
    assert request_names("HX-10394 cancelled, how much do I get back?") == ["HX-10394"]  # an id opens
    assert request_names("What is the weather? Find it.") == []


def test_a_free_string_can_take_another_name_of_the_request_that_no_other_argument_holds():
    tool = Tool(
        "checkout",
        "Late checkout.",
        {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Booking code."},
                "time": {"type": "string", "description": "New time, HH:MM."},
                "plan": {"type": "string", "enum": ["Basic", "Gold"]},
            },
            "required": ["code", "time"],
        },
    )
    request = "Late checkout at 13:00 for HX-10394 in Leeds, Gold plan."
    call = {"code": "13:00", "time": "Leeds", "plan": "Basic"}
    replaced = name_replacements(tool, call, request)
    assert call | {"code": "HX-10394"} in replaced
    assert call | {"time": "HX-10394"} in replaced and call | {"time": "13:00"} not in replaced  # held
    assert all(r["plan"] == "Basic" for r in replaced)  # an enum is not a free string
    assert all(r in argument_edits(tool, call, request) for r in replaced)


def test_a_misshapen_string_and_an_unnamed_optional_choice_are_counted_as_ungrounded():
    tool = Tool(
        "reviews",
        "Hotel reviews.",
        {
            "type": "object",
            "properties": {
                "hotel": {"type": "string"},
                "on": {"type": "string", "description": "Stay date, YYYY-MM-DD."},
                "contact": {"type": "string", "format": "email"},
                "aspect": {"type": "string", "enum": ["noise", "value"]},
                "sort": {"type": "string", "enum": ["new", "old"]},
            },
            "required": ["hotel", "sort"],
        },
    )
    request = "Reviews of Casa Albero on 2026-04-01 for ana@x.com, sorted by newest"
    good = {"hotel": "Casa Albero", "on": "2026-04-01", "contact": "ana@x.com", "sort": "new"}
    assert ungrounded(tool, good, request) == 0  # a required enum need not be spelt out
    assert ungrounded(tool, good | {"on": "Casa Albero", "hotel": "2026-04-01"}, request) == 1
    assert ungrounded(tool, good | {"contact": "Casa Albero", "hotel": "ana@x.com"}, request) == 1
    assert ungrounded(tool, good | {"aspect": "noise"}, request) == 1  # optional, never mentioned
    assert ungrounded(tool, good | {"aspect": "value"}, request + " and value") == 0
    assert misformatted({"description": "Start, HH:MM."}, "9:30") is False
    assert misformatted({"description": "Anything."}, "9:30") is False


def test_an_optional_argument_the_request_names_is_added_once_per_value():
    tool = Tool(
        "find_rooms",
        "Find hotel rooms.",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "max_price": {"type": "integer"},
                "view": {"type": "string", "enum": ["sea", "garden"]},
                "breakfast": {"type": "boolean"},
                "near": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city"],
        },
    )
    request = "Find rooms in Leeds with a garden view under 415 a night near Kirkstall Abbey, breakfast in."
    call = {"city": "Leeds"}
    added = optional_additions(tool, call, request)
    assert added == [
        call | {"max_price": 415},
        call | {"view": "garden"},  # only the enum value the request spells out
        call | {"breakfast": True},
        call | {"near": "Kirkstall Abbey"},  # not "Leeds": another argument holds it
    ]
    edits = argument_edits(tool, call, request)
    assert all(a in edits for a in added)
    assert optional_additions(tool, call | {"max_price": 415, "view": "sea"}, request)[0] == call | {
        "max_price": 415,
        "view": "sea",
        "breakfast": True,
    }  # arguments the call has are not added again


def test_the_policy_judges_values_and_swaps_and_the_channel_alone_what_is_added_or_dropped():
    """With a policy, a candidate that keeps the call's arguments scores channel + weight x the
    policy's likelihood, one that adds or drops an argument the call's own likelihood: so the
    policy can turn a swap around but never adds an optional argument by itself."""
    call = {"nights": 3, "arrival": "2026-05-04", "departure": "2026-05-01", "room": "double", "note": "x"}
    reply = format_call("Book.", "book_rooms", call)
    candidates = argument_edits(BOOK, call, REQUEST)
    swapped = dict(call, arrival="2026-05-01", departure="2026-05-04")
    assert swapped in candidates and any(c.keys() != call.keys() for c in candidates)
    asked = []

    def policy(calls):  # likes the swap, and would like every added or dropped argument more
        asked.extend(calls)
        return [[5.0 if c == swapped else 0.0 for c in cands] for _, _, _, cands in calls]

    def flat(prefixes, targets):
        return [0.0] * len(prefixes)

    (out,), _ = rerank_replies(flat, [reply], [REQUEST], [[BOOK]], policy, 0.5)
    assert parse_response(out, {"book_rooms": BOOK}).call.args == swapped
    ((index, tool, thought, judged),) = asked
    assert (index, tool.name, thought) == (0, "book_rooms", "Book.")
    assert judged[0] == call and all(c.keys() == call.keys() for c in judged)
    assert len(judged) < len(candidates)  # the added / dropped ones were not asked about
    # at weight 0 the policy is read but weighs nothing: the rerank is the channel's alone
    alone = rerank_replies(flat, [reply], [REQUEST], [[BOOK]])
    assert rerank_replies(flat, [reply], [REQUEST], [[BOOK]], policy, 0.0) == alone
    assert parse_response(alone[0][0], {"book_rooms": BOOK}).call.args != swapped


def test_a_call_with_no_other_candidate_of_its_arguments_is_not_put_to_the_policy():
    """Its candidates would all get the call's own likelihood, which moves nothing."""
    weather = Tool(
        "weather",
        "Current weather.",
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "metric": {"type": "boolean"}},
            "required": ["city"],
        },
    )
    request = "Weather in Oslo, in metric units please."
    reply = format_call("Weather.", "weather", {"city": "Oslo"})
    candidates = argument_edits(weather, {"city": "Oslo"}, request)
    assert [c.keys() for c in candidates] == [{"city"}, {"city", "metric"}]

    def policy(calls):
        raise AssertionError(f"asked about {calls}")

    def flat(prefixes, targets):
        return [0.0] * len(prefixes)

    assert rerank_replies(flat, [reply], [request], [[weather]], policy, 0.5) == rerank_replies(
        flat, [reply], [request], [[weather]]
    )


def test_the_policy_scorer_reads_each_candidate_after_the_one_tool_prompt(tiny_spec):
    """`policy_scorer` scores each candidate's arguments as the reply writes them, after the
    conversation with only the called tool offered and the reply's Thought, by the model's own
    channel; the pool evaluation with rerank_policy reranks through it and records the change."""
    from posttrain.inference import channel_logprobs, generator
    from posttrain.models import load_for_inference
    from posttrain.tasks.tool_use.pool_align import evaluate_pool
    from posttrain.tasks.tool_use.pool_pairs import pool_item
    from posttrain.tasks.tool_use.pool_rows import pool_rows
    from posttrain.tasks.tool_use.user_eval import gold_turn, policy_scorer
    from posttrain.toolcall import format_system_prompt

    model, tok = load_for_inference(tiny_spec)
    generate = generator(model, tok, 8, 4)
    conversation = [{"role": "user", "content": REQUEST}]
    score = policy_scorer(generate.render, generate.channel, [conversation])
    (found,) = score([(0, BOOK, " Book. ", [GROUNDED, CALL])])
    system = {"role": "system", "content": format_system_prompt([BOOK], detail="full")}
    prompt = (
        generate.render([[system, *conversation]])[0]
        + 'Thought: Book.\nAction: ```json\n{"tool":"book_rooms","args":'
    )
    targets = [json.dumps(a, separators=(",", ":")) + "}\n```" for a in (GROUNDED, CALL)]
    assert found == pytest.approx(channel_logprobs(model, tok, [prompt, prompt], targets), abs=1e-6)

    rows = pool_rows(6, 5, "validation", irrelevance=0.0)
    gold = [gold_turn(pool_item(r, i)) for i, r in enumerate(rows)]

    def replies(prompts, grammars=None):
        return gold[: len(prompts)]

    replies.__dict__.update(generate.__dict__)  # the real tiny model's channels and renderer
    _, records = evaluate_pool(replies, rows, rerank=True, rerank_policy=0.5)
    assert all(r["rerank_candidates"] >= 1 for r in records)
    assert all(
        (r["reply"] != text) == ("reply_before_rerank" in r) for r, text in zip(records, gold, strict=True)
    )


def test_a_policy_weight_without_the_rerank_is_refused(tmp_path):
    from posttrain.errors import ConfigError
    from posttrain.tasks.align import align_task

    with pytest.raises(ConfigError, match="rerank_policy_weight weighs the argument rerank"):
        align_task("tool_use", rerank_policy=0.5)
    assert align_task("tool_use", rerank=True, rerank_policy=0.5).rerank_policy == 0.5
