from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import pytest

from posttrain.agents.toolcall import ToolCall, parse_response, run_react
from posttrain.errors import DataError
from posttrain.tasks import tool_use as tu
from posttrain.tasks.tool_use import (
    DEFECTS,
    HELDOUT_TOOLS,
    SEED_EVENTS,
    TRAIN_TOOLS,
    BM25Index,
    CalculatorError,
    Calendar,
    CalendarError,
    answer_matches,
    arguments_match,
    build_registry,
    calculate,
    convert_units,
    generate_tool_use_data,
    load_kb,
    read_tool_use_data,
    search,
    search_ids,
    weather,
    write_tool_use_data,
)

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
        words = [w for w in tu._tokens(doc["text"]) if len(w) >= 5]
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
    assert len(tu.load_weather()) == 8 * 14


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


# ------------------------------------------------------------------ data generator


@pytest.fixture(scope="module")
def train_rows() -> list[dict]:
    return generate_tool_use_data(1500, seed=42)


@pytest.fixture(scope="module")
def heldout_rows() -> list[dict]:
    return generate_tool_use_data(400, seed=42, split="heldout")


@pytest.fixture(scope="module")
def registries(tmp_path_factory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("reg")
    return {s: build_registry(s, base / s) for s in ("train", "heldout")}


def test_generator_is_deterministic(train_rows: list[dict]) -> None:
    assert generate_tool_use_data(1500, seed=42) == train_rows
    other = generate_tool_use_data(1500, seed=43)
    assert other != train_rows and len(other) == 1500
    assert len({r["id"] for r in train_rows}) == 1500
    assert generate_tool_use_data(0, seed=1) == []


def test_generator_covers_tasks_steps_and_defects(train_rows: list[dict]) -> None:
    tasks = Counter(r["task"] for r in train_rows)
    single = {"calculator", "search", "calendar_list", "calendar_add", "calendar_free_slot", "no_tool"}
    assert set(tasks) == single | {"search+calculator", "calculator+calendar", "calendar+calculator"}
    assert tasks["no_tool"] >= 100
    assert max(r["step"] for r in train_rows) == 2
    kinds = Counter(r["kind"] for r in train_rows)
    assert 0.4 < kinds["preference"] / len(train_rows) < 0.6
    defects = Counter(r["defect"] for r in train_rows if r["kind"] == "preference")
    assert set(defects) == set(DEFECTS) and min(defects.values()) >= 30, defects
    assert len({r["template"] for r in train_rows}) >= 25
    system = train_rows[0]["prompt"][0]["content"]
    assert len(system) < 1000 and all(f"- {name}(" in system for name in TRAIN_TOOLS)


def _check_chosen(row: dict, registry) -> None:
    r = parse_response(row["completion"], registry)
    if row["gold"] is None:
        assert r.kind == "final" and r.has_thought, row["completion"]
        assert answer_matches(r.final_answer, row["gold_answer"]), (r.final_answer, row["gold_answer"])
    else:
        assert r.kind == "call" and r.compliant, (r.kind, r.error)
        assert r.call == ToolCall(row["gold"]["name"], row["gold"]["args"])
        assert arguments_match(row["gold"], r.call)


def _check_rejected(row: dict, registry) -> None:
    """The declared defect is what the parser reports, or what comparing with the gold shows."""
    r, gold, defect = parse_response(row["rejected"], registry), row["gold"], row["defect"]
    gold_call = ToolCall(gold["name"], gold["args"]) if gold else None
    right_answer = answer_matches(r.final_answer, row["gold_answer"])
    wrong_final = r.kind == "final" and (gold is not None or not right_answer)
    if defect == "malformed_json":
        assert r.kind == "invalid_json" and r.has_thought
    elif defect == "missing_thought":
        assert r.kind == "no_thought" and r.json_valid and r.call == gold_call
    elif defect == "hallucinated_tool":
        assert r.kind == "unknown_tool" and gold and r.call.args == gold["args"]
    elif defect == "schema_violation":
        assert r.kind == "schema_violation" and gold and r.call.name == gold["name"]
    elif defect == "wrong_tool":
        assert r.kind == "call" and gold and r.call.name != gold["name"]
    elif defect == "no_tool_when_needed":
        assert gold and wrong_final
    elif defect == "tool_when_not_needed":
        assert r.kind == "call" and gold is None
    else:
        assert defect == "refusal" and (r.kind == "no_action" or wrong_final), row["rejected"]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_chosen_complies_and_every_rejected_shows_its_defect(
    split: str, train_rows: list[dict], heldout_rows: list[dict], registries: dict
) -> None:
    rows, registry = (train_rows if split == "train" else heldout_rows), registries[split]
    for row in rows:
        assert [s["function"]["name"] for s in row["tools"]] == list(registry)
        assert row["prompt"][0]["role"] == "system" and row["prompt"][1]["role"] == "user"
        _check_chosen(row, registry)
        if row["kind"] == "preference":
            assert row["chosen"] == row["completion"] and row["rejected"] != row["chosen"]
            assert row["defect"] in DEFECTS
            _check_rejected(row, registry)
        else:
            assert "rejected" not in row


def test_multi_step_prompts_replay_real_observations(train_rows: list[dict], registries: dict) -> None:
    """Later steps carry the earlier turns; replaying them on a fresh registry, in reverse order,
    gives the same observations, so evaluation can run episodes in any order."""
    registry = registries["train"]
    checked = 0
    for row in reversed(train_rows):
        history = row["prompt"][2:]
        assert len(history) == 2 * row["step"]
        for turn, obs in zip(history[::2], history[1::2], strict=True):
            call = parse_response(turn["content"], registry).call
            assert obs["role"] == "user" and obs["content"].startswith("Observation: ")
            if call.name != "calendar_add":  # adds report overlaps with earlier adds
                assert obs["content"] == "Observation: " + registry.execute(call)
                checked += 1
    assert checked >= 300


def test_heldout_tools_never_appear_in_train_rows(train_rows: list[dict], heldout_rows: list[dict]) -> None:
    for row in train_rows:
        text = json.dumps(row).lower()
        assert "unit_converter" not in text and "weather" not in text
    heldout_calls = Counter(r["gold"]["name"] for r in heldout_rows if r["gold"])
    assert heldout_calls["unit_converter"] + heldout_calls["weather"] >= 0.5 * sum(heldout_calls.values())
    train_users = {r["prompt"][1]["content"] for r in generate_tool_use_data(3000, seed=7)}
    heldout_users = {r["prompt"][1]["content"] for r in heldout_rows}
    assert not train_users & heldout_users  # held-out prompt templates are new too
    assert {r["template"].split("/")[0] for r in heldout_rows} == {"heldout"}


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    path = write_tool_use_data(tmp_path / "sub" / "data.jsonl", n=50, seed=3)
    rows = read_tool_use_data(path)
    assert rows == generate_tool_use_data(50, seed=3)
    lines = path.read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["gold_answer"]
    lines[1] = json.dumps(broken)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r'data.jsonl:2: field "gold_answer" is missing'):
        read_tool_use_data(path)
    path.write_text(lines[0] + "\n{oops\n")
    with pytest.raises(DataError, match=r"data.jsonl:2: invalid JSON"):
        read_tool_use_data(path)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_replaying_the_gold_turns_through_react_solves_every_episode(
    split: str, train_rows: list[dict], heldout_rows: list[dict], tmp_path: Path
) -> None:
    """The data and the loop agree: an oracle that writes the chosen turns, run live against a
    fresh registry, ends every episode with a Final Answer that carries the gold answer."""
    rows = train_rows if split == "train" else heldout_rows
    episodes: dict[int, list[dict]] = {}
    for row in rows:
        episodes.setdefault(row["episode"], []).append(row)
    complete = [e for e in episodes.values() if e[-1]["gold"] is None and len(e) == e[-1]["step"] + 1]
    assert len(complete) >= 0.9 * len(episodes)
    script = {e[0]["prompt"][1]["content"]: [r["completion"] for r in e] for e in complete}
    batches: list[int] = []

    def oracle(conversations: list[list[dict[str, str]]]) -> list[str]:
        batches.append(len(conversations))
        return [script[c[1]["content"]][sum(m["role"] == "assistant" for m in c)] for c in conversations]

    unique = {e[0]["prompt"][1]["content"]: e for e in complete}.values()  # the oracle is keyed by prompt
    registry = build_registry(split, tmp_path)
    results = run_react([e[0]["prompt"] for e in unique], registry, oracle, max_steps=4)
    assert all(ep.status == "final" and ep.failures == [] for ep in results)
    solved = [
        answer_matches(ep.final_answer, e[0]["gold_answer"]) for ep, e in zip(results, unique, strict=True)
    ]
    assert sum(solved) == len(solved)
    longest = max(len(e) for e in unique)
    assert len(batches) == longest == 3 and batches[0] == len(solved)
