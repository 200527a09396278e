"""tool_use scoring: final answers against the gold answer, call arguments against the gold call."""

from __future__ import annotations

import pytest

from posttrain.tasks.tool_use import NO_CALL, OMITTED, answer_matches, arguments_match, score_call
from posttrain.tasks.tool_use.scoring import value_matches
from posttrain.toolcall import ToolCall

# ------------------------------------------------------------------ answers and arguments


def test_answer_matches() -> None:
    assert answer_matches("The tower is 312 meters tall.", "312 meters")
    assert answer_matches("It holds 48,000 books.", "48000")
    assert answer_matches("98.3 miles is 158.198 kilometers.", "158.1985")  # within 1e-3
    assert not answer_matches("It is 313 meters.", "312")
    assert answer_matches("It is the Ollen River.", "the Ollen River")
    assert answer_matches("Ollen River", "the Ollen River")
    assert not answer_matches("Sorry, I can't help with that.", "Cold")
    assert not answer_matches("I am unable to answer that.", "A")  # whole words only
    assert answer_matches("The letter A.", "The letter A")
    assert not answer_matches(None, "5")


def test_arguments_match() -> None:
    calc = {"name": "calculator", "args": {"expression": "8502 / 39"}}
    assert arguments_match(calc, ToolCall("calculator", {"expression": "218"}))
    assert not arguments_match(calc, ToolCall("calculator", {"expression": "8502 * 39"}))
    assert not arguments_match(calc, ToolCall("calculator", {"expression": "__import__('os')"}))
    assert not arguments_match(calc, ToolCall("search", {"query": "8502 / 39"}))
    srch = {"name": "search", "args": {"query": "Korrin Tower height"}, "doc_id": "kb-001"}
    assert arguments_match(srch, ToolCall("search", {"query": "how tall is the korrin tower"}))
    assert not arguments_match(srch, ToolCall("search", {"query": "Lake Omery"}))
    add = {"name": "calendar_free_slot", "args": {"date": "2025-03-05", "duration_minutes": 30}}
    assert arguments_match(
        add, ToolCall("calendar_free_slot", {"date": "2025-03-05", "duration_minutes": 30.0})
    )
    assert not arguments_match(
        add, ToolCall("calendar_free_slot", {"date": "2025-03-05", "duration_minutes": 45})
    )
    assert not arguments_match(add, ToolCall("calendar_free_slot", {"date": "2025-03-05"}))


# ------------------------------------------------------------------ BFCL possible answers

WEATHER = [{"get_weather": {"city": ["San Francisco, CA", "SF"], "unit": ["celsius", OMITTED]}}]


def test_score_call_takes_any_acceptable_value_and_normalises_strings_as_bfcl() -> None:
    assert score_call(ToolCall("get_weather", {"city": "San Francisco, CA", "unit": "celsius"}), WEATHER)
    assert score_call(ToolCall("get_weather", {"city": "san francisco ca"}), WEATHER)  # case, ",", " "
    assert score_call(ToolCall("get_weather", {"city": "sf", "unit": "Celsius"}), WEATHER)
    assert not score_call(ToolCall("get_weather", {"city": "Los Angeles"}), WEATHER)
    assert not score_call(ToolCall("get_forecast", {"city": "SF"}), WEATHER)  # wrong name


def test_score_call_optional_required_and_unexpected_arguments() -> None:
    # "" accepts leaving `unit` out, but never a written value that is not listed
    assert not score_call(ToolCall("get_weather", {"city": "SF", "unit": "fahrenheit"}), WEATHER)
    assert not score_call(ToolCall("get_weather", {"city": "SF", "unit": "kelvin", "days": 3}), WEATHER)
    assert not score_call(ToolCall("get_weather", {"city": "SF", "days": 3}), WEATHER)  # not in gold
    assert not score_call(ToolCall("get_weather", {"unit": "celsius"}), WEATHER)  # city is required


def test_score_call_numbers_lists_objects_and_several_acceptable_calls() -> None:
    gold = [
        {"area": {"base": [10], "height": [5.0], "unit": ["cm", OMITTED]}},
        {"area_of": {"dims": [[10, 5]]}},
    ]
    assert score_call(ToolCall("area", {"base": 10.0, "height": 5}), gold)  # numerically
    assert not score_call(ToolCall("area", {"base": 10.001, "height": 5}), gold)
    ones = [{"area": {"base": [1], "height": [5]}}]
    assert not score_call(ToolCall("area", {"base": True, "height": 5}), ones)  # a bool is not 1
    assert score_call(ToolCall("area_of", {"dims": [10.0, 5]}), gold)  # the second acceptable call
    assert not score_call(ToolCall("area_of", {"dims": [5, 10]}), gold)  # order matters in a list
    nested = [{"book": {"trip": [{"from": ["NYC", "New York"], "to": ["Boston"], "seat": ["aisle", ""]}]}}]
    assert score_call(ToolCall("book", {"trip": {"from": "new york", "to": "boston"}}), nested)
    assert not score_call(ToolCall("book", {"trip": {"from": "NYC", "to": "Boston", "pet": 1}}), nested)
    assert value_matches("April 1, 2024", "april 1 2024") and not value_matches("5", 5)


def test_score_call_no_call_gold() -> None:
    assert score_call(None, NO_CALL)
    assert not score_call(ToolCall("get_weather", {"city": "SF"}), NO_CALL)
    assert not score_call(None, WEATHER)
    with pytest.raises(ValueError, match="no_call"):
        score_call(None, "none")
