"""The tool_use tools on real files: calculator, BM25 search, the SQLite calendar, held-out tools."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from posttrain.tasks.tool_use import (
    HELDOUT_TOOLS,
    SEED_EVENTS,
    TRAIN_TOOLS,
    BM25Index,
    CalculatorError,
    Calendar,
    CalendarError,
    build_registry,
    calculate,
    convert_units,
    load_kb,
    load_weather,
    search,
    search_ids,
    weather,
)
from posttrain.tasks.tool_use.tools.search import _tokens
from posttrain.toolcall import ToolCall

# ------------------------------------------------------------------ calculator


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("10 % 3", 1),
        ("-3 ** 2", -9),
        ("2 ** -1", 0.5),
        ("2 ** 100", 2**100),
        ("sqrt(144)", 12),
        ("round(2.567, 2)", 2.57),
        ("max(3, 9, 4) - min(1, 2)", 8),
        ("abs(-2.5)", 2.5),
        ("0.1 + 0.2", 0.3),
        ("1e3 * 2", 2000),
        ("19824 / 84", 236),
        ("  +5  ", 5),
        ("2 * pi", 6.283185307),
    ],
)
def test_calculator_computes(expr: str, value: float) -> None:
    result = calculate(expr)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("__import__('os')", "this function call not allowed"),
        ("__import__('os').system('ls')", "this function call not allowed"),
        ("sqrt.__self__", "attribute access not allowed"),
        ("().__class__", "attribute access not allowed"),
        ("(1).real", "attribute access not allowed"),
        ("open('f')", "this function call not allowed"),
        ("x + 1", "names not allowed"),
        ("'a' * 3", "only numbers are allowed"),
        ("True + 1", "only numbers are allowed"),
        ("lambda: 1", "Lambda not allowed"),
        ("[1, 2][0]", "Subscript not allowed"),
        ("1 if 1 else 2", "IfExp not allowed"),
        ("1 < 2", "Compare not allowed"),
        ("9**9**9", "exponent 387420489 is larger than 100"),
        ("10 ** 101", "exponent 101 is larger than 100"),
        ("999999 ** 50", "result is larger than 1e+100"),
        ("1e99 * 1e99", "result is larger than 1e+100"),
        ("1" * 201, "longer than 200 characters"),
        ("1 / 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "sqrt of a negative number"),
        ("(-8) ** 0.5", "fractional power of a negative number"),
        ("abs(x=1)", "abs takes 1..1 positional arguments"),
        ("round(2.5, 99)", "round digits must be an integer"),
        ("2 +", "not an arithmetic expression"),
        ("import os", "not an arithmetic expression"),
    ],
)
def test_calculator_refuses(expr: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(CalculatorError, match=message.replace("(", r"\(").replace("+", r"\+")):
        calculate(expr)
    assert time.perf_counter() - start < 5.0  # refused before computing it (which would never end)


def test_calculator_errors_are_observations(tmp_path: Path) -> None:
    registry = build_registry("train", tmp_path)
    assert registry.execute(ToolCall("calculator", {"expression": "6 * 7"})) == "42"
    obs = registry.execute(ToolCall("calculator", {"expression": "__import__('os')"}))
    assert obs == "Error: this function call not allowed in the calculator"


# ------------------------------------------------------------------ search


def test_bm25_matches_the_formula_by_hand() -> None:
    index = BM25Index(["red apple pie", "green apple", "blue sky over the sea", "apple apple apple tart"])
    # "apple": N=4, df=3 -> idf = ln(1 + 1.5/3.5); doc 1 has tf=1, length 2, mean length 13/4
    idf = math.log(1 + 1.5 / 3.5)
    norm = 1.5 * (0.25 + 0.75 * 2 / 3.25)
    assert index.weights[1, index.vocab["apple"]] == pytest.approx(idf * 2.5 / (1 + norm))
    assert index.top("apple", 4) == [3, 1, 0]  # tf saturates: 3x "apple" beats the shortest doc
    assert index.top("green apple", 4) == [1, 3, 0]
    assert index.top("sky", 3) == [2]  # only positive scores
    assert index.top("purple", 3) == [] and index.top("the of", 3) == []


def test_search_finds_the_doc_a_query_was_built_from() -> None:
    kb = load_kb()
    assert 60 <= len(kb) <= 120
    index = BM25Index([f"{d['title']} {d['text']}" for d in kb])
    hits = 0
    for i, doc in enumerate(kb):
        words = [w for w in _tokens(doc["text"]) if len(w) >= 5]
        query = " ".join(sorted(set(words), key=words.index)[:4])  # the first four long words of the doc
        hits += index.top(query, 1) == [i]
    assert hits / len(kb) >= 0.9, hits
    for doc in kb:  # every gold query of the data generator retrieves its document first
        for qa in doc["qa"]:
            assert search_ids(qa["query"], 3)[0] == doc["id"], qa["query"]
            assert doc["id"] in search_ids(qa["question"], 3), qa["question"]


def test_search_tool_output() -> None:
    results = search("Korrin Tower height", k=3)  # only documents sharing a word come back
    assert len(results) == 1 and results[0]["title"] == "Korrin Tower"
    assert "312 meters" in results[0]["text"]
    assert len(search("Veldmark", k=2)) == 2 and len(search("Veldmark", k=5)) == 5
    assert search("zzzz qqqq") == []


# ------------------------------------------------------------------ calendar


def test_calendar_on_a_real_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.sqlite"
    cal = Calendar(path)
    assert cal.list_events("2025-04-01") == []
    assert cal.find_free_slot("2025-04-01", 60) == {"date": "2025-04-01", "start": "09:00", "end": "10:00"}
    cal.add_event("Review", "2025-04-01", "10:00", "11:00")
    cal.add_event("Standup", "2025-04-01", "09:00", "09:30")
    added = cal.add_event("Sync", "2025-04-01", "10:30", "12:00")  # overlaps Review
    assert added == {
        "added": {"title": "Sync", "date": "2025-04-01", "start": "10:30", "end": "12:00"},
        "overlaps": ["Review"],
    }
    assert path.stat().st_size > 0
    reopened = Calendar(path)  # state lives in the file
    assert [e["title"] for e in reopened.list_events("2025-04-01")] == ["Standup", "Review", "Sync"]
    assert reopened.list_events("2025-04-02") == []
    # gaps: 09:30-10:00 (30 min); Review and Sync merge into 10:00-12:00; then 12:00-17:00
    assert reopened.find_free_slot("2025-04-01", 30)["start"] == "09:30"
    assert reopened.find_free_slot("2025-04-01", 45) == {
        "date": "2025-04-01",
        "start": "12:00",
        "end": "12:45",
    }
    reopened.add_event("Offsite", "2025-04-01", "12:00", "17:00")
    assert reopened.find_free_slot("2025-04-01", 45) is None
    assert reopened.find_free_slot("2025-04-01", 30)["start"] == "09:30"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("T", "2025-02-30", "10:00", "11:00"), "not a YYYY-MM-DD date"),
        (("T", "April 1", "10:00", "11:00"), "not a YYYY-MM-DD date"),
        (("T", "2025-04-01", "25:00", "26:00"), "start '25:00' is not an HH:MM time"),
        (("T", "2025-04-01", "11:00", "10:00"), "end 10:00 is not after start 11:00"),
        (("  ", "2025-04-01", "10:00", "11:00"), "title must have"),
    ],
)
def test_calendar_rejects_bad_input(tmp_path: Path, args: tuple, message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        Calendar(tmp_path / "c.sqlite").add_event(*args)


def test_registry_seeds_the_calendar_once(tmp_path: Path) -> None:
    registry = build_registry("train", tmp_path)
    assert list(registry) == list(TRAIN_TOOLS)
    march3 = json.loads(registry.execute(ToolCall("calendar_list", {"date": "2025-03-03"})))
    assert [e["title"] for e in march3] == ["Team standup", "Design review", "Lunch with Sam"]
    registry.execute(
        ToolCall("calendar_add", {"title": "X", "date": "2025-03-03", "start": "16:00", "end": "17:00"})
    )
    again = build_registry("heldout", tmp_path)  # reuses the file: no second seeding
    assert list(again) == list(TRAIN_TOOLS + HELDOUT_TOOLS)
    assert len(json.loads(again.execute(ToolCall("calendar_list", {"date": "2025-03-03"})))) == 4
    # 2025-03-12 has overlapping seeded events 10:00-11:00 and 10:30-11:30
    slot = json.loads(
        again.execute(ToolCall("calendar_free_slot", {"date": "2025-03-12", "duration_minutes": 90}))
    )
    assert slot == {"date": "2025-03-12", "start": "11:30", "end": "13:00"}
    full = again.execute(ToolCall("calendar_free_slot", {"date": "2025-03-10", "duration_minutes": 30}))
    assert full == "No free 30-minute slot on 2025-03-10 between 09:00 and 17:00."
    assert again.execute(ToolCall("calendar_list", {"date": "03/12"})).startswith("Error: invalid arguments")
    with pytest.raises(ValueError, match="split"):
        build_registry("test", tmp_path)  # type: ignore[arg-type]
    assert len(SEED_EVENTS) == 29


# ------------------------------------------------------------------ held-out tools


def test_unit_converter() -> None:
    assert convert_units(1, "mi", "km") == {"value": 1.6093, "unit": "km"}
    assert convert_units(100, "celsius", "fahrenheit") == {"value": 212, "unit": "fahrenheit"}
    assert convert_units(-40, "fahrenheit", "celsius") == {"value": -40, "unit": "celsius"}
    assert convert_units(10, "in", "cm") == {"value": 25.4, "unit": "cm"}
    assert convert_units(2, "lb", "kg")["value"] == 0.9072
    with pytest.raises(ValueError, match="cannot convert length"):
        convert_units(1, "km", "kg")
    with pytest.raises(ValueError, match="too large to represent"):  # never Infinity, which is not JSON
        convert_units(1e308, "mi", "cm")


def test_weather_reads_the_bundled_table(tmp_path: Path) -> None:
    assert weather("port amsel", "2025-03-01") == {
        "city": "Port Amsel",
        "date": "2025-03-01",
        "condition": "cloudy",
        "high_c": 10,
        "low_c": 3,
        "precip_mm": 0.0,
    }
    registry = build_registry("heldout", tmp_path)
    obs = registry.execute(ToolCall("weather", {"city": "Atlantis", "date": "2025-03-01"}))
    assert obs.startswith("Error: no weather for 'Atlantis' on 2025-03-01; cities: Brindle Bay")
    assert len(load_weather()) == 8 * 14
