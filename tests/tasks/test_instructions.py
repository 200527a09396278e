"""Tests for posttrain/tasks/instructions.py and the bundled sample data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posttrain.errors import DataError
from posttrain.tasks.instructions import load_preference_dataset, load_sft_dataset, sample_path

REPO = Path(__file__).resolve().parents[2]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def numbered(n: int) -> list[dict]:
    return [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(n)]


def ids(rows: list[dict]) -> list[int]:
    return [int(r["prompt"][0]["content"].split()[1]) for r in rows]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# --------------------------------------------------------------------------- conversion


def test_alpaca_becomes_conversational_prompt_completion(tmp_path):
    rows = [
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
        {"instruction": "Name a prime.", "input": "", "output": "Seven."},
        {"instruction": "Say hi.", "input": "  ", "output": "Hi."},
    ]
    train, val = load_sft_dataset(write_jsonl(tmp_path / "a.jsonl", rows), val_fraction=0.0)
    by_answer = {r["completion"][0]["content"]: r for r in train}
    assert by_answer["Bonjour"] == {
        "prompt": [user("Translate to French.\n\nGood morning")],
        "completion": [assistant("Bonjour")],
    }
    assert by_answer["Seven."]["prompt"] == [user("Name a prime.")]
    assert by_answer["Hi."]["prompt"] == [user("Say hi.")]
    assert val == []


def test_chat_prompt_is_every_turn_before_the_last_answer(tmp_path):
    chat = [
        {"role": "system", "content": "Be brief."},
        user("2+2?"),
        assistant("4"),
        user("And 3+3?"),
        assistant("6"),
    ]
    train, _ = load_sft_dataset(write_jsonl(tmp_path / "c.jsonl", [{"messages": chat}]))
    assert train == [{"prompt": chat[:4], "completion": [assistant("6")]}]


def test_prompt_completion_strings_and_lists(tmp_path):
    rows = [
        {"prompt": "Capital of Peru?", "completion": "Lima."},
        {"prompt": [user("Capital of Chile?")], "completion": [assistant("Santiago.")]},
    ]
    train, _ = load_sft_dataset(write_jsonl(tmp_path / "pc.jsonl", rows), val_fraction=0.0)
    assert sorted(train, key=lambda r: r["completion"][0]["content"]) == [
        {"prompt": [user("Capital of Peru?")], "completion": [assistant("Lima.")]},
        {"prompt": [user("Capital of Chile?")], "completion": [assistant("Santiago.")]},
    ]


def test_preference_strings_become_turns(tmp_path):
    rows = [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
        {
            "prompt": [{"role": "system", "content": "Be kind."}, user("Hi")],
            "chosen": [assistant("Hello!")],
            "rejected": "go away",
        },
    ]
    train, _ = load_preference_dataset(write_jsonl(tmp_path / "p.jsonl", rows), val_fraction=0.0)
    assert sorted(train, key=lambda r: len(r["prompt"])) == [
        {"prompt": [user("2+2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]},
        {
            "prompt": [{"role": "system", "content": "Be kind."}, user("Hi")],
            "chosen": [assistant("Hello!")],
            "rejected": [assistant("go away")],
        },
    ]


def test_rows_are_what_trl_and_datasets_accept(tmp_path):
    from datasets import Dataset
    from trl.data_utils import is_conversational

    train, val = load_sft_dataset(sample_path("alpaca"), max_train=20, max_val=5)
    assert all(is_conversational(r) for r in train + val)
    assert Dataset.from_list(train).column_names == ["prompt", "completion"]
    pref, _ = load_preference_dataset(sample_path("preference"), max_train=20)
    assert all(is_conversational(r) for r in pref)
    assert Dataset.from_list(pref).column_names == ["prompt", "chosen", "rejected"]


def test_wrong_shape_for_the_stage(tmp_path):
    pref = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    with pytest.raises(DataError) as info:
        load_sft_dataset(pref)
    assert (
        str(info.value) == f"{pref}: holds preference rows (prompt, chosen, rejected); SFT needs Alpaca rows"
    )
    alpaca = write_jsonl(tmp_path / "a.jsonl", numbered(2))
    with pytest.raises(DataError) as info:
        load_preference_dataset(alpaca)
    assert (
        str(info.value) == f"{alpaca}: holds alpaca rows; DPO needs preference rows: prompt, chosen, rejected"
    )


def test_every_row_is_validated_even_past_the_caps(tmp_path):
    rows = [*numbered(50), {"instruction": "last", "output": 3}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_sft_dataset(path, max_train=2, max_val=1)
    assert str(info.value) == f'{path}:51: field "output" must be a string, got int'


# --------------------------------------------------------------------------- split


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", numbered(100))
    train, val = load_sft_dataset(path, val_fraction=0.2, seed=3)
    again_train, again_val = load_sft_dataset(path, val_fraction=0.2, seed=3)
    other_train, other_val = load_sft_dataset(path, val_fraction=0.2, seed=4)
    assert (len(train), len(val)) == (80, 20)
    assert (ids(train), ids(val)) == (ids(again_train), ids(again_val))
    assert set(ids(val)) != set(ids(other_val))
    assert set(ids(train)).isdisjoint(ids(val))
    assert sorted(ids(train) + ids(val)) == list(range(100))
    assert ids(train) != sorted(ids(train))  # shuffled, not file order


def test_caps_cut_after_shuffling(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", numbered(100))
    full_train, full_val = load_sft_dataset(path, val_fraction=0.3, seed=1)
    train, val = load_sft_dataset(path, val_fraction=0.3, seed=1, max_train=10, max_val=4)
    assert (len(train), len(val)) == (10, 4)
    assert ids(train) == ids(full_train)[:10]
    assert ids(val) == ids(full_val)[:4]
    assert ids(train) != list(range(10))


def test_val_path_keeps_the_callers_held_out_rows(tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", numbered(30))
    val_file = write_jsonl(
        tmp_path / "val.jsonl",
        [{"instruction": f"Task {100 + i}", "input": "", "output": "x"} for i in range(10)],
    )
    train, val = load_sft_dataset(train_file, val_fraction=0.5, seed=2, max_val=4, val_path=val_file)
    assert sorted(ids(train)) == list(range(30))  # every row of `path` trains; val_fraction unused
    assert len(val) == 4 and set(ids(val)) <= set(range(100, 110))
    _, again = load_sft_dataset(train_file, seed=2, max_val=4, val_path=val_file)
    assert ids(again) == ids(val)  # seeded shuffle, then the cap
    pref = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    with pytest.raises(DataError, match=str(pref)):  # the validation file is checked like `path`
        load_sft_dataset(train_file, val_path=pref)
    ptrain, pval = load_preference_dataset(pref, val_path=pref)
    assert len(ptrain) == len(pval) == 1


@pytest.mark.parametrize(
    ("n", "fraction", "expected_val"),
    [(1, 0.1, 0), (2, 0.1, 1), (5, 0.1, 1), (10, 0.5, 5), (3, 0.9, 2), (30, 0.0, 0)],
)
def test_validation_size(tmp_path, n, fraction, expected_val):
    train, val = load_sft_dataset(write_jsonl(tmp_path / "a.jsonl", numbered(n)), val_fraction=fraction)
    assert (len(train), len(val)) == (n - expected_val, expected_val)


@pytest.mark.parametrize(
    "kwargs", [{"val_fraction": 1.0}, {"val_fraction": -0.1}, {"max_train": 0}, {"max_val": -1}]
)
def test_bad_split_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        load_sft_dataset(write_jsonl(tmp_path / "a.jsonl", numbered(4)), **kwargs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(min_value=1, max_value=40),
    fraction=st.floats(min_value=0.0, max_value=0.95),
    seed=st.integers(min_value=0, max_value=2**32),
    max_train=st.integers(min_value=1, max_value=50),
    max_val=st.integers(min_value=0, max_value=50),
)
def test_split_properties(tmp_path, n, fraction, seed, max_train, max_val):
    path = write_jsonl(tmp_path / "a.jsonl", numbered(n))
    train, val = load_sft_dataset(
        path, val_fraction=fraction, seed=seed, max_train=max_train, max_val=max_val
    )
    assert set(ids(train)).isdisjoint(ids(val))
    assert len(set(ids(train))) == len(train) <= max_train
    assert len(val) <= max_val
    assert train  # never empty: validation takes at most n - 1 rows
    if n >= 2 and fraction > 0 and max_val > 0:
        assert val
    if max_train >= n and max_val >= n:
        assert sorted(ids(train) + ids(val)) == list(range(n))


# --------------------------------------------------------------------------- bundled samples


def test_sample_path():
    assert sample_path("alpaca").name == "sample_alpaca.jsonl"
    assert sample_path("preference").is_file()
    with pytest.raises(ValueError):
        sample_path("squad")  # type: ignore[arg-type]


def test_bundled_alpaca_sample():
    train, val = load_sft_dataset(sample_path("alpaca"), val_fraction=0.1)
    rows = train + val
    assert len(rows) >= 320
    assert len(val) == round(len(rows) * 0.1)
    raw = [json.loads(line) for line in sample_path("alpaca").read_text(encoding="utf-8").splitlines()]
    assert all(list(r) == ["instruction", "input", "output"] for r in raw)
    assert len({(r["instruction"], r["input"]) for r in raw}) == len(raw)  # no duplicate questions
    # Many templates, not one repeated: count distinct instruction openings.
    assert len({r["instruction"].split()[0] for r in raw}) >= 10
    words = [len(r["output"].split()) for r in raw]
    assert min(words) >= 5 and max(words) <= 120
    for row in raw:
        if "JSON" in row["instruction"]:
            assert isinstance(json.loads(row["output"]), dict)


def test_bundled_samples_answers_spot_check():
    raw = [json.loads(line) for line in sample_path("alpaca").read_text(encoding="utf-8").splitlines()]
    reversals = [r for r in raw if r["instruction"] == "Reverse the letters of this word."]
    assert reversals
    for r in reversals:
        assert r["output"] == f'The word "{r["input"]}" reversed is "{r["input"][::-1]}".'
    sorts = [r for r in raw if r["instruction"] == "Sort these numbers from smallest to largest."]
    assert sorts
    for r in sorts:
        assert r["output"] == ", ".join(map(str, sorted(int(x) for x in r["input"].split(", "))))


def test_bundled_preference_sample():
    train, val = load_preference_dataset(sample_path("preference"), val_fraction=0.1, seed=0)
    assert len(train) + len(val) >= 150
    raw = [json.loads(line) for line in sample_path("preference").read_text(encoding="utf-8").splitlines()]
    assert all(r["chosen"] != r["rejected"] for r in raw)
    assert len({r["prompt"] for r in raw}) == len(raw)


def test_sample_generator_is_deterministic_and_matches_bundled_files(tmp_path):
    script = REPO / "bench" / "make_sample_data.py"
    subprocess.run([sys.executable, str(script), "--out-dir", str(tmp_path)], check=True, capture_output=True)
    for name in ("alpaca", "preference"):
        generated = (tmp_path / sample_path(name).name).read_bytes()
        assert generated == sample_path(name).read_bytes(), f"rerun bench/make_sample_data.py ({name})"
