"""tool_use scoring: final answers against the gold answer, call arguments against the gold call."""

from __future__ import annotations

from posttrain.tasks.tool_use import answer_matches, arguments_match
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
