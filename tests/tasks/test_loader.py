"""Tests for posttrain/tasks/loader.py: every container format, every bad-input message."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posttrain.errors import DataError
from posttrain.tasks.loader import Record, detect_shape, read_records, validate_rows

ALPACA = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "2 + 3 = 5."},
    {"instruction": "Reverse the word.", "input": "cat", "output": "tac"},
    {"instruction": "Name a colour.", "output": "Blue."},
]


def write_jsonl(path: Path, rows: list, blank_after: int | None = None) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict], header: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def load(path: Path, final_assistant: bool = True) -> list[dict]:
    records = read_records(path)
    return validate_rows(records, detect_shape(records), final_assistant=final_assistant)


def error_of(path: Path, final_assistant: bool = True) -> DataError:
    with pytest.raises(DataError) as info:
        load(path, final_assistant)
    return info.value


# --------------------------------------------------------------------------- good files


def test_jsonl_lines_count_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", ALPACA, blank_after=1)
    records = read_records(path)
    assert [r.line for r in records] == [1, 3, 4]
    assert [r.data for r in records] == ALPACA
    assert records[0].source == str(path)


def test_ndjson_crlf_and_bom(tmp_path):
    path = tmp_path / "data.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(r).encode() for r in ALPACA) + b"\r\n")
    assert [r.line for r in read_records(path)] == [1, 2, 3]
    assert load(path)[2] == {"instruction": "Name a colour.", "input": "", "output": "Blue."}


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path):
    # U+2028 is a line break for str.splitlines() but not for JSONL.
    row = {"instruction": "Say\u2028hi", "output": "hi\u2029there\x0b"}
    path = write_jsonl(tmp_path / "data.jsonl", [row, row])
    assert [r.line for r in read_records(path)] == [1, 2]
    assert read_records(path)[1].data == row


def test_json_array_reports_the_line_each_object_starts_on(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ALPACA, indent=2))
    records = read_records(path)
    text_lines = path.read_text().split("\n")
    starts = [i + 1 for i, line in enumerate(text_lines) if line == "  {"]
    assert [r.line for r in records] == starts == [2, 7, 12]
    assert [r.data for r in records] == ALPACA


@pytest.mark.parametrize("key", ["data", "rows"])
def test_json_object_with_rows_list(tmp_path, key):
    path = tmp_path / "data.json"
    # A decoy "rows"/"data" string key before the real list must not confuse the line walk.
    path.write_text(
        '{"name": "x", "meta": {"rows": [1]},\n "' + key + '": [\n\n' + json.dumps(ALPACA[0]) + "]}"
    )
    records = read_records(path)
    assert len(records) == 1
    assert records[0].line == 4
    assert records[0].data == ALPACA[0]


def test_json_file_holding_json_lines(tmp_path):
    # `Dataset.to_json("x.json")` writes JSON lines under a .json name.
    path = write_jsonl(tmp_path / "data.json", ALPACA)
    assert [r.line for r in read_records(path)] == [1, 2, 3]


def test_csv_lines_with_multiline_cell_and_pandas_index(tmp_path):
    path = tmp_path / "data.csv"
    rows = [
        {"": "0", "instruction": "Write two lines.", "input": "", "output": "one\ntwo"},
        {"": "1", "instruction": "Say hi.", "input": "politely", "output": "Hello there."},
    ]
    write_csv(path, rows, ["", "instruction", "input", "output"])
    records = read_records(path)
    assert [r.line for r in records] == [2, 4]
    assert records[0].data == {"instruction": "Write two lines.", "input": "", "output": "one\ntwo"}
    assert load(path)[1] == {"instruction": "Say hi.", "input": "politely", "output": "Hello there."}


def test_csv_messages_column_holds_json(tmp_path):
    messages = [{"role": "user", "content": "Hi, [1, 2]?"}, {"role": "assistant", "content": "Hello."}]
    path = write_csv(tmp_path / "chat.csv", [{"messages": json.dumps(messages)}], ["messages"])
    assert detect_shape(read_records(path)) == "messages"
    assert load(path) == [{"messages": messages}]


def test_csv_preference_cells_decode_only_message_lists(tmp_path):
    turns = [{"role": "user", "content": "Sort 3, 1."}]
    rows = [{"prompt": json.dumps(turns), "chosen": "[1, 3]", "rejected": "[3, 1"}]
    path = write_csv(tmp_path / "pref.csv", rows, ["prompt", "chosen", "rejected"])
    assert load(path) == [{"prompt": turns, "chosen": "[1, 3]", "rejected": "[3, 1"}]


def test_saved_dataset_directory(tmp_path):
    import datasets

    rows = [*ALPACA[:2], {"instruction": "Bad row.", "input": "", "output": ""}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    records = read_records(tmp_path / "ds")
    assert [r.line for r in records] == [1, 2, 3]
    assert records[1].data == ALPACA[1]
    err = error_of(tmp_path / "ds")
    assert str(err) == f'{tmp_path / "ds"}: row 3: field "output" is empty'
    assert (err.line, err.field) == (3, "output")


def test_saved_dataset_dict_uses_train_split(tmp_path):
    import datasets

    train = datasets.Dataset.from_list(ALPACA[:2])
    test = datasets.Dataset.from_list(ALPACA[2:])
    datasets.DatasetDict({"test": test, "train": train}).save_to_disk(str(tmp_path / "dd"))
    assert [r.data["output"] for r in read_records(tmp_path / "dd")] == ["2 + 3 = 5.", "tac"]


# --------------------------------------------------------------------------- bad files


def test_malformed_json_line_names_line_and_column(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n\n" + '{"instruction": "x", "output": }\n')
    err = error_of(path)
    assert str(err) == f"{path}:3: invalid JSON (Expecting value at column 32)"
    assert err.line == 3


def test_malformed_json_array_names_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]')
    assert str(error_of(path)) == f"{path}:3: invalid JSON (Expecting ',' delimiter at column 23)"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.jsonl", "", "no rows"),
        ("data.jsonl", "\n  \n", "no rows"),
        ("data.json", "", "no rows"),
        ("data.json", "[]", "no rows"),
        ("data.csv", "", "no rows"),
        ("data.csv", "instruction,output\n", "no rows"),
        ("data.jsonl", '{"a": 1}\n[1, 2]\n', ":2: row must be a JSON object, got list"),
        ("data.json", '[{"a": 1},\n "text"]', ":2: row must be a JSON object, got str"),
        ("data.json", "42", ":1: expected a JSON array of rows, got int"),
        ("data.json", '[{"a": 1}]\n{"b": 2}', ":2: invalid JSON (Extra data at column 1)"),
        (
            "data.json",
            '{"items": []}',
            ':1: expected a JSON array of rows or an object with a "data" or "rows"',
        ),
        ("data.csv", "instruction,output\na,b,c\n", ":2: row has 3 cells but the header has 2"),
        ("data.csv", "instruction,output,instruction\n", ':1: field "instruction" appears twice'),
        (
            "data.csv",
            'messages\n"[{""role"": ""user"", ""content"": 1"\n',
            ':2: field "messages" is not valid JSON',
        ),
        (
            "data.txt",
            "hello",
            "unknown format '.txt' (expected .jsonl, .json, .csv or a saved HF dataset directory)",
        ),
        ("data.parquet", "PAR1", "unknown format '.parquet'"),
    ],
)
def test_bad_container(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_records(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(json.dumps(ALPACA[0]).encode() + b'\n{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == f"{path}:2: is not valid UTF-8 (bad byte at column 21)"


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as info:
        read_records(tmp_path / "nope.jsonl")
    assert str(info.value) == f"{tmp_path / 'nope.jsonl'}: no such file or directory"


def test_plain_directory_is_not_a_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        read_records(tmp_path / "empty")
    assert "not a saved Hugging Face dataset" in str(info.value)


# --------------------------------------------------------------------------- row shapes


@pytest.mark.parametrize(
    ("row", "shape"),
    [
        ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
        ({"output": "b", "text": "t"}, "alpaca"),
        ({"messages": []}, "messages"),
        ({"prompt": "p", "completion": "c"}, "prompt_completion"),
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "preference"),
        ({"prompt": "p", "rejected": "b"}, "preference"),
    ],
)
def test_detect_shape(row, shape):
    assert detect_shape([Record(row, 1, "x.jsonl")]) == shape


def test_detect_shape_unknown_keys():
    with pytest.raises(DataError) as info:
        detect_shape([Record({"question": "q", "answer": "a"}, 5, "x.jsonl")])
    assert str(info.value).startswith("x.jsonl:5: cannot tell the row shape from its keys [answer, question]")


ALPACA_OK = {"instruction": "a", "input": "", "output": "b"}
CHAT_OK = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
PREF_OK = {"prompt": "p", "chosen": "good", "rejected": "bad"}


@pytest.mark.parametrize(
    ("first", "bad", "expected"),
    [
        (
            ALPACA_OK,
            {"instruction": "a"},
            'field "output" is missing (expected Alpaca rows: instruction, input?, output)',
        ),
        (ALPACA_OK, {"output": "b"}, 'field "instruction" is missing (expected Alpaca rows'),
        (ALPACA_OK, {"instruction": "a", "output": 3}, 'field "output" must be a string, got int'),
        (ALPACA_OK, {"instruction": "a", "output": None}, 'field "output" must be a string, got null'),
        (ALPACA_OK, {"instruction": "  ", "output": "b"}, 'field "instruction" is empty'),
        (
            ALPACA_OK,
            {"instruction": "a", "input": ["x"], "output": "b"},
            'field "input" must be a string, got list',
        ),
        (CHAT_OK, {"messages": "hi"}, 'field "messages" must be a list of {role, content}, got str'),
        (CHAT_OK, {"messages": []}, 'field "messages" is empty'),
        (CHAT_OK, {"messages": ["hi"]}, 'field "messages[0]" must be an object {role, content}, got str'),
        (
            CHAT_OK,
            {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]},
            'field "messages[1].role" must be one of system, user, assistant, got "bot"',
        ),
        (
            CHAT_OK,
            {"messages": [{"content": "a"}]},
            'field "messages[0].role" must be one of system, user, assistant, got null',
        ),
        (CHAT_OK, {"messages": [{"role": "user"}]}, 'field "messages[0].content" is missing'),
        (
            CHAT_OK,
            {"messages": [{"role": "user", "content": 5}]},
            'field "messages[0].content" must be a string, got int',
        ),
        (CHAT_OK, {"messages": [{"role": "user", "content": ""}]}, 'field "messages[0].content" is empty'),
        (
            CHAT_OK,
            {"messages": [{"role": "user", "content": "a"}]},
            'field "messages" must end with an assistant turn for SFT, got "user"',
        ),
        (
            CHAT_OK,
            {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
            'field "messages" needs a user turn right before the final assistant turn',
        ),
        (
            PREF_OK,
            {"prompt": "p", "chosen": "good"},
            'field "rejected" is missing (expected preference rows: prompt, chosen, rejected)',
        ),
        (
            PREF_OK,
            {"prompt": "p", "chosen": 1, "rejected": "b"},
            'field "chosen" must be a string or a list of {role, content}, got int',
        ),
        (
            PREF_OK,
            {"prompt": "p", "chosen": "same", "rejected": "same"},
            'field "rejected" is identical to "chosen"',
        ),
        (
            PREF_OK,
            {"prompt": "p", "chosen": [{"role": "user", "content": "x"}], "rejected": "b"},
            'field "chosen[0].role" must be "assistant"',
        ),
        (
            PREF_OK,
            {
                "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                "chosen": "g",
                "rejected": "b",
            },
            'field "prompt" must end with a user turn, got "assistant"',
        ),
        (
            {"prompt": "p", "completion": "c"},
            {"prompt": "p", "completion": ""},
            'field "completion" is empty',
        ),
    ],
)
def test_bad_row_names_its_line_and_field(tmp_path, first, bad, expected):
    path = write_jsonl(tmp_path / "data.jsonl", [first, first, first, bad, first], blank_after=2)
    err = error_of(path)
    assert str(err).startswith(f"{path}:5: {expected}")
    assert err.line == 5


def test_chat_without_final_assistant_is_fine_when_not_required(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    assert load(path, final_assistant=False) == [{"messages": [{"role": "user", "content": "hi"}]}]


def test_normalisation_drops_extra_turn_keys_and_fills_input(tmp_path):
    rows = [
        {"instruction": "a", "input": None, "output": "b", "id": 7},
        {"messages": [{"role": "system", "content": "", "name": "x"}]},
    ]
    write_jsonl(tmp_path / "a.jsonl", rows[:1])
    assert load(tmp_path / "a.jsonl") == [{"instruction": "a", "input": "", "output": "b"}]
    chat = [*rows[1]["messages"], {"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]
    write_jsonl(tmp_path / "c.jsonl", [{"messages": chat}])
    assert load(tmp_path / "c.jsonl")[0]["messages"][0] == {"role": "system", "content": ""}


# --------------------------------------------------------------------------- properties

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
KEYS = st.sampled_from(
    ["instruction", "input", "output", "messages", "prompt", "completion", "chosen", "rejected"]
)
ROW_LIKE = st.dictionaries(KEYS | st.text(max_size=5), JSON_VALUES | st.text(min_size=1), max_size=5)
LINES = st.lists(
    ROW_LIKE.map(json.dumps)
    | JSON_VALUES.map(json.dumps)
    | st.text(max_size=20).filter(lambda s: "\n" not in s),
    max_size=6,
)
FIXTURE_OK = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FIXTURE_OK
@given(lines=LINES, suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_arbitrary_input_parses_or_raises_data_error(tmp_path, lines, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        records = read_records(path)
        for final_assistant in (True, False):
            rows = validate_rows(records, detect_shape(records), final_assistant=final_assistant)
            assert len(rows) == len(records)
    except DataError as err:
        assert str(err).startswith(str(path))


TEXT = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())
ALPACA_ROWS = st.lists(
    st.fixed_dictionaries({"instruction": TEXT, "input": st.text(max_size=20), "output": TEXT}),
    min_size=1,
    max_size=8,
)


@FIXTURE_OK
@given(rows=ALPACA_ROWS, fmt=st.sampled_from(["jsonl", "json", "csv"]))
def test_valid_alpaca_rows_round_trip(tmp_path, rows, fmt):
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "json":
        path.write_text(json.dumps({"data": rows}, indent=1, ensure_ascii=False), encoding="utf-8")
    else:
        write_csv(path, rows, ["instruction", "input", "output"])
    assert load(path) == rows


@FIXTURE_OK
@given(
    rows=ALPACA_ROWS,
    position=st.integers(min_value=0, max_value=8),
    blanks=st.lists(st.integers(min_value=0, max_value=8), max_size=3),
    bad=st.sampled_from(
        ['{"instruction": "x", "output": ', '{"instruction": "x"}', "[1]", "nul", '{"output": 1}']
    ),
)
def test_reported_line_of_an_injected_bad_line(tmp_path, rows, position, blanks, bad):
    lines = [json.dumps(r) for r in rows]
    position = min(position, len(lines))
    lines.insert(position, bad)
    for blank in sorted(blanks, reverse=True):
        # a blank line before the bad one pushes it down
        lines.insert(min(blank, len(lines)), "   ")
    expected = lines.index(bad) + 1
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load(path)
    assert info.value.line == expected
    assert str(info.value).startswith(f"{path}:{expected}: ")


@FIXTURE_OK
@given(
    rows=ALPACA_ROWS, bad_index=st.integers(min_value=0, max_value=7), indent=st.sampled_from([None, 0, 2, 4])
)
def test_json_array_line_of_a_bad_row(tmp_path, rows, bad_index, indent):
    bad_index = min(bad_index, len(rows) - 1)
    rows = [*rows[:bad_index], {"instruction": "x", "input": ""}, *rows[bad_index + 1 :]]
    # Build the array by hand so the expected start line is known independently of the reader.
    parts, line, expected = [], 2, None
    for i, row in enumerate(rows):
        text = json.dumps(row, indent=indent)
        if i == bad_index:
            expected = line
        parts.append(text)
        line += text.count("\n") + 2  # the row's own newlines, then ",\n\n" between rows
    path = tmp_path / "data.json"
    path.write_text("[\n" + ",\n\n".join(parts) + "\n]", encoding="utf-8")
    err = error_of(path)
    assert err.line == expected
    assert str(err).startswith(f'{path}:{expected}: field "output" is missing')


def test_a_hub_dataset_id_is_told_apart_from_a_missing_file():
    from posttrain.tasks.loader import is_hub_dataset_id

    assert is_hub_dataset_id("tatsu-lab/alpaca") and is_hub_dataset_id("HuggingFaceH4/ultrachat_200k")
    for local in ("train.jsonl", "data/train.jsonl", "./x/y", "/abs/path", "a/b/c", "a/", "/b"):
        assert not is_hub_dataset_id(local), local


def test_a_hub_dataset_offline_is_one_line_exit_2_before_any_model_loads(tmp_path):
    from tests.conftest import run_cli

    out = run_cli(
        "sft", "--preset", "test", "--data", "tatsu-lab/alpaca", "--name", "h", "--output-dir", "runs",
        cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tatsu-lab/alpaca: no such local file")
    assert "hub dataset" in lines[0] and not (tmp_path / "runs" / ".h.partial").exists()
