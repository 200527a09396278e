"""tool_use data: deterministic episodes, compliant chosen turns, one detectable defect per rejected
turn, and gold turns that solve their episodes when replayed through the ReAct loop."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from posttrain.errors import DataError
from posttrain.tasks.tool_use import (
    DEFECTS,
    TRAIN_TOOLS,
    answer_matches,
    arguments_match,
    build_registry,
    generate_tool_use_data,
    read_tool_use_data,
    write_tool_use_data,
)
from posttrain.toolcall import ToolCall, parse_response, run_react

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
