"""Bad training data: every file error names the file (and line and field where there is one),
exits 2 before a model loads, and leaves no run folder."""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import ALPACA, PAIRS, TEST, refused, write_rows

# (file name, bytes, what the message must name besides the file)
BAD_SFT_FILES = [
    ("empty.jsonl", b"", "no rows"),
    ("blank.jsonl", b"\n\n\n", "no rows"),
    ("latin1.jsonl", b'{"instruction": "caf\xe9", "output": "x"}\n', "UTF-8"),
    ("broken.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": \n', ":2"),
    ("array.jsonl", b"[1, 2]\n", "JSON object"),
    ("number.jsonl", b"5\n", "JSON object"),
    ("no_output.jsonl", b'{"instruction": "a"}\n', "output"),
    ("null_output.jsonl", b'{"instruction": "a", "output": null}\n', "output"),
    ("int_output.jsonl", b'{"instruction": "a", "output": 5}\n', "output"),
    ("pairs.jsonl", json.dumps(PAIRS[0]).encode() + b"\n", "preference"),
    ("unknown.jsonl", b'{"question": "a", "answer": "b"}\n', "unknown.jsonl"),
    ("messages.jsonl", b'{"messages": "hi"}\n', "messages"),
    ("bad_role.jsonl", b'{"messages": [{"role": "wizard", "content": "x"}]}\n', "role"),
    ("doc.json", b'{"rows": 5}', "doc.json"),
    ("trailing.json", b'[{"instruction": "a", "output": "b"},]', "invalid JSON"),
    ("header.csv", b"question,answer\na,b\n", "header.csv"),
    ("empty.csv", b"", "empty.csv"),
    ("binary.jsonl", bytes(range(256)), "binary.jsonl"),
]


@pytest.mark.parametrize(("name", "data", "needle"), BAD_SFT_FILES, ids=[n for n, _, _ in BAD_SFT_FILES])
def test_sft_names_the_bad_file(cli, tmp_path, name, data, needle):
    (tmp_path / name).write_bytes(data)
    refused(cli("sft", *TEST, "--data", name, "--name", "x"), name, needle, root=tmp_path)
    assert not (tmp_path / "runs" / "x").exists()


BAD_DPO_ROWS = [
    ({"prompt": "a", "chosen": "b"}, "rejected"),
    ({"prompt": "a", "rejected": "b"}, "chosen"),
    ({"chosen": "a", "rejected": "b"}, "prompt"),
    ({"prompt": "a", "chosen": 1, "rejected": "b"}, "chosen"),
    ({"instruction": "a", "output": "b"}, "pairs.jsonl"),
]


@pytest.mark.parametrize(("row", "needle"), BAD_DPO_ROWS)
def test_dpo_names_the_bad_row(cli, tmp_path, row, needle):
    write_rows(tmp_path / "pairs.jsonl", [*PAIRS[:2], row])
    refused(cli("dpo", *TEST, "--data", "pairs.jsonl"), "pairs.jsonl", needle, root=tmp_path)


@pytest.mark.parametrize("command", ["sft", "dpo"])
def test_a_missing_data_file(cli, tmp_path, command):
    refused(cli(command, *TEST, "--data", "nope.jsonl"), "nope.jsonl", root=tmp_path)


def test_a_data_path_that_is_a_folder_of_nothing(cli, tmp_path):
    (tmp_path / "folder").mkdir()
    refused(cli("sft", *TEST, "--data", "folder"), "folder", root=tmp_path)


def test_a_missing_validation_file(cli, tmp_path):
    write_rows(tmp_path / "rows.jsonl", ALPACA)
    refused(
        cli("sft", *TEST, "--data", "rows.jsonl", "--set", "data.val_path=val.jsonl"),
        "val.jsonl",
        root=tmp_path,
    )


def test_tune_names_a_bad_data_file(cli, tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"instruction": "a"}\n')
    refused(
        cli("tune", "--preset", "tune_test", "--data", "rows.jsonl"), "rows.jsonl", "output", root=tmp_path
    )


def test_the_eighth_line_is_named(cli, tmp_path):
    rows = [json.dumps(r) for r in ALPACA[:7]] + ['{"instruction": "a", "outptu": "b"}']
    (tmp_path / "rows.jsonl").write_text("\n".join(rows) + "\n")
    refused(cli("sft", *TEST, "--data", "rows.jsonl"), "rows.jsonl:8", root=tmp_path)
