"""Read training data files into rows that remember where they came from.

Every task reads user data through `read_records`, so a bad row anywhere is reported the
same way: `data.jsonl:718: field "output" is missing (expected Alpaca rows: instruction, input?, output)`.
Reading and validating are separate steps: `read_records` only parses the container
(JSONL, JSON, CSV, a saved Hugging Face dataset); `detect_shape` and `validate_rows` check
the row contents against one of the shapes SFT and DPO understand.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from posttrain.errors import DataError

Shape = Literal["alpaca", "messages", "prompt_completion", "preference"]

ROLES = ("system", "user", "assistant")

EXPECTED = {
    "alpaca": "expected Alpaca rows: instruction, input?, output",
    "messages": "expected chat rows: messages = [{role, content}, ...]",
    "prompt_completion": "expected prompt-completion rows: prompt, completion",
    "preference": "expected preference rows: prompt, chosen, rejected",
}

# CSV columns that may hold a JSON list of {role, content} turns instead of plain text.
_MESSAGE_COLUMNS = ("messages", "prompt", "completion", "chosen", "rejected")

# Python's csv module refuses cells over 128 KiB by default; long answers are normal here.
_CSV_FIELD_LIMIT = 2**31 - 1


class _RowError(DataError):
    """A DataError about a row of a saved dataset, which has row numbers rather than lines."""

    def __init__(self, path: str, row: int, field: str | None, message: str) -> None:
        super().__init__(path, row, field, message)
        what = f'field "{field}" ' if field else ""
        self.args = (f"{self.path}: row {row}: {what}{message}",)


@dataclass(frozen=True, slots=True)
class Record:
    """One row of a data file.

    `line` is 1-based: the physical line for JSONL/JSON/CSV, the row index + 1 for a saved
    Hugging Face dataset (then `unit` is "row" and error messages say "row N").
    """

    data: dict[str, Any]
    line: int
    source: str
    unit: Literal["line", "row"] = "line"

    def error(self, field: str | None, message: str) -> DataError:
        """A DataError pointing at this row (and `field`, if given); the caller raises it."""
        if self.unit == "row":
            return _RowError(self.source, self.line, field, message)
        return DataError(self.source, self.line, field, message)


# --------------------------------------------------------------------------- reading


def read_records(path: str | Path) -> list[Record]:
    """Parse a data file into records, choosing the format by extension.

    Accepts .jsonl/.ndjson, .json (an array of objects, an object with a "data" or "rows"
    list, or JSON lines as written by `Dataset.to_json`), .csv (UTF-8 with a header row;
    cells stay strings except JSON message lists, which are decoded) and a directory
    written by `datasets.Dataset.save_to_disk`. Raises DataError naming file and line for
    anything malformed, and for a file with no rows.
    """
    source = str(path)
    path = Path(path)
    if path.is_dir():
        records = _read_saved_dataset(path, source)
    elif not path.exists() and is_hub_dataset_id(source):
        records = _read_hub_dataset(source)
    elif not path.exists():
        raise DataError(source, None, None, "no such file or directory")
    else:
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            records = _read_jsonl(_read_text(path, source), source)
        elif suffix == ".json":
            records = _read_json(_read_text(path, source), source)
        elif suffix == ".csv":
            records = _read_csv(_read_text(path, source), source)
        else:
            shown = suffix or path.name
            raise DataError(
                source,
                None,
                None,
                f"unknown format '{shown}' (expected .jsonl, .json, .csv or a saved HF dataset directory)",
            )
    if not records:
        raise DataError(source, None, None, "no rows")
    return records


def _read_text(path: Path, source: str) -> str:
    raw = path.read_bytes()
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet exports put in front.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - raw.rfind(b"\n", 0, err.start)
        raise DataError(source, line, None, f"is not valid UTF-8 (bad byte at column {column})") from None


def _row_object(value: Any, source: str, line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(source, line, None, f"row must be a JSON object, got {_kind(value)}")
    return value


def _read_jsonl(text: str, source: str) -> list[Record]:
    records = []
    # Split on "\n" only: str.splitlines() would also split on U+2028 and friends,
    # which json.dumps(ensure_ascii=False) leaves raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(source, number, None, f"invalid JSON ({err.msg} at column {err.colno})") from None
        records.append(Record(_row_object(value, source, number), number, source))
    return records


def _read_json(text: str, source: str) -> list[Record]:
    if not text.strip():
        return []
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            # `Dataset.to_json("x.json")` writes JSON lines; read it as such.
            return _read_jsonl(text, source)
        raise DataError(source, err.lineno, None, f"invalid JSON ({err.msg} at column {err.colno})") from None
    if isinstance(document, list):
        start = _skip_ws(text, 0)
    elif isinstance(document, dict):
        key = next((k for k in ("data", "rows") if isinstance(document.get(k), list)), None)
        if key is None:
            keys = ", ".join(sorted(document)[:8])
            raise DataError(
                source,
                1,
                None,
                'expected a JSON array of rows or an object with a "data" or "rows" list, '
                f"got an object with keys [{keys}]",
            )
        start = _value_offset(text, key)
        document = document[key]
    else:
        raise DataError(source, 1, None, f"expected a JSON array of rows, got {_kind(document)}")
    lines = _element_lines(text, start)
    return [Record(_row_object(v, source, n), n, source) for v, n in zip(document, lines, strict=True)]


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def _value_offset(text: str, wanted: str) -> int:
    """Offset of the value of top-level key `wanted` in a JSON object (last one wins, as in json.loads)."""
    decoder = json.JSONDecoder()
    found = -1
    i = _skip_ws(text, 0) + 1  # past "{"
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            return found
        key, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, _skip_ws(text, i) + 1)  # past ":"
        if key == wanted:
            found = i
        _, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1


def _element_lines(text: str, start: int) -> list[int]:
    """1-based line on which each element of the JSON array at `start` begins.

    The text already parsed as a whole, so this walk cannot fail; it only re-decodes each
    element to find where the next one starts.
    """
    decoder = json.JSONDecoder()
    lines = []
    line, counted = 1, 0
    i = start + 1  # past "["
    while True:
        i = _skip_ws(text, i)
        if text[i] == "]":
            return lines
        line += text.count("\n", counted, i)
        counted = i
        lines.append(line)
        _, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1


def _read_csv(text: str, source: str) -> list[Record]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    records = []
    try:
        while True:
            start = reader.line_num + 1  # a cell may span lines; report the line the row starts on
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = _csv_header(cells, source, start)
                continue
            if len(cells) != len(header):
                raise DataError(
                    source, start, None, f"row has {len(cells)} cells but the header has {len(header)}"
                )
            row = {name: cell for name, cell in zip(header, cells, strict=True) if name}
            records.append(Record(_decode_message_cells(row, source, start), start, source))
    except csv.Error as err:
        raise DataError(source, reader.line_num, None, f"malformed CSV ({err})") from None
    return records


def _csv_header(cells: list[str], source: str, line: int) -> list[str]:
    # An unnamed column is the index pandas writes by default; it is dropped, not an error.
    names = [c.strip() for c in cells]
    seen = set()
    for name in names:
        if name and name in seen:
            raise DataError(source, line, name, "appears twice in the CSV header")
        seen.add(name)
    return names


def _decode_message_cells(row: dict[str, Any], source: str, line: int) -> dict[str, Any]:
    for name in _MESSAGE_COLUMNS:
        cell = row.get(name)
        if not isinstance(cell, str) or not cell.lstrip().startswith("["):
            continue
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as err:
            if name == "messages":
                raise DataError(
                    source, line, name, f"is not valid JSON ({err.msg} at column {err.colno})"
                ) from None
            continue  # a prompt that merely starts with "[" is plain text
        if name == "messages" or (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            row[name] = value
    return row


def is_hub_dataset_id(name: str) -> bool:
    """`owner/name` with no file suffix (`tatsu-lab/alpaca`): what a user names to mean a
    Hugging Face hub dataset when no such local path exists."""
    owner, _, rest = name.partition("/")
    plain = all(part and part[0].isalnum() and "/" not in part for part in (owner, rest))
    return plain and Path(rest).suffix.lower() not in (".jsonl", ".ndjson", ".json", ".csv")


def _read_hub_dataset(source: str) -> list[Record]:
    """The `train` split of a hub dataset the user named (a download, as with a hub model id)."""
    import datasets

    try:
        loaded = datasets.load_dataset(source, split="train")
    except Exception as exc:  # offline, unknown id, gated, no train split: all one line to the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            source,
            None,
            None,
            f"no such local file, and loading it as a Hugging Face hub dataset failed: {first}",
        ) from None
    return [Record(dict(row), i + 1, source, "row") for i, row in enumerate(loaded)]


def _read_saved_dataset(path: Path, source: str) -> list[Record]:
    import datasets  # slow to import; only saved-dataset users pay for it

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError(
            source,
            None,
            None,
            "is a directory but not a saved Hugging Face dataset "
            "(expected the output of Dataset.save_to_disk)",
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            loaded = loaded["train"]
        elif len(splits) == 1:
            loaded = loaded[splits[0]]
        else:
            raise DataError(source, None, None, f"holds splits {splits} and none is named 'train'")
    return [Record(row, index + 1, source, "row") for index, row in enumerate(loaded.to_list())]


# --------------------------------------------------------------------------- shapes


def detect_shape(records: list[Record]) -> Shape:
    """Tell the row shape from the keys of the first row.

    Only the first row decides; `validate_rows` then holds every other row to that shape,
    so a stray row is reported on its own line instead of changing the guess.
    """
    if not records:
        raise ValueError("detect_shape needs at least one record")
    first = records[0]
    keys = set(first.data)
    if keys & {"chosen", "rejected"}:
        return "preference"
    if "messages" in keys:
        return "messages"
    if keys & {"instruction", "output"}:
        return "alpaca"
    if keys & {"prompt", "completion"}:
        return "prompt_completion"
    shown = ", ".join(sorted(keys)[:8]) or "none"
    raise first.error(
        None,
        f"cannot tell the row shape from its keys [{shown}] (expected Alpaca: instruction, input?, output; "
        "chat: messages; prompt, completion; or preference: prompt, chosen, rejected)",
    )


def validate_rows(records: list[Record], shape: Shape, *, final_assistant: bool = True) -> list[dict]:
    """Check every record against `shape` and return the rows normalised.

    Normalised means: Alpaca `input` is always a string ("" when absent or null); message
    lists keep only `role` and `content`; string-or-messages fields stay as given.
    `final_assistant` requires chat rows to end with an assistant turn (what SFT trains on).
    Raises DataError on the first bad row, naming its line and field.
    """
    check = {
        "alpaca": _alpaca_row,
        "messages": lambda r: _messages_row(r, final_assistant),
        "prompt_completion": _prompt_completion_row,
        "preference": _preference_row,
    }[shape]
    return [check(record) for record in records]


def _alpaca_row(record: Record) -> dict:
    expected = EXPECTED["alpaca"]
    instruction = _text(record, "instruction", expected)
    output = _text(record, "output", expected)
    value = record.data.get("input")
    if value is None:
        value = ""
    elif not isinstance(value, str):
        raise record.error("input", f"must be a string, got {_kind(value)}")
    return {"instruction": instruction, "input": value, "output": output}


def _messages_row(record: Record, final_assistant: bool) -> dict:
    messages = _turns(record, "messages", EXPECTED["messages"])
    if final_assistant:
        last = messages[-1]["role"]
        if last != "assistant":
            raise record.error("messages", f'must end with an assistant turn for SFT, got "{last}"')
        if len(messages) < 2 or messages[-2]["role"] != "user":
            raise record.error("messages", "needs a user turn right before the final assistant turn")
    return {"messages": messages}


def _prompt_completion_row(record: Record) -> dict:
    expected = EXPECTED["prompt_completion"]
    return {
        "prompt": _prompt(record, "prompt", expected),
        "completion": _answer(record, "completion", expected),
    }


def _preference_row(record: Record) -> dict:
    expected = EXPECTED["preference"]
    row = {
        "prompt": _prompt(record, "prompt", expected),
        "chosen": _answer(record, "chosen", expected),
        "rejected": _answer(record, "rejected", expected),
    }
    if row["chosen"] == row["rejected"]:
        raise record.error("rejected", 'is identical to "chosen", so the pair teaches nothing; drop the row')
    return row


def _require(record: Record, field: str, expected: str) -> Any:
    if field not in record.data:
        raise record.error(field, f"is missing ({expected})")
    return record.data[field]


def _text(record: Record, field: str, expected: str) -> str:
    value = _require(record, field, expected)
    if not isinstance(value, str):
        raise record.error(field, f"must be a string, got {_kind(value)}")
    if not value.strip():
        raise record.error(field, "is empty")
    return value


def _turns(record: Record, field: str, expected: str) -> list[dict]:
    value = _require(record, field, expected)
    if not isinstance(value, list):
        raise record.error(field, f"must be a list of {{role, content}}, got {_kind(value)}")
    return _check_turns(record, field, value)


def _check_turns(record: Record, field: str, value: list) -> list[dict]:
    if not value:
        raise record.error(field, "is empty")
    turns = []
    for index, turn in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(turn, dict):
            raise record.error(where, f"must be an object {{role, content}}, got {_kind(turn)}")
        role = turn.get("role")
        if role not in ROLES:
            got = f'"{role}"' if isinstance(role, str) else _kind(role)
            raise record.error(f"{where}.role", f"must be one of system, user, assistant, got {got}")
        if "content" not in turn:
            raise record.error(f"{where}.content", "is missing")
        content = turn["content"]
        if not isinstance(content, str):
            raise record.error(f"{where}.content", f"must be a string, got {_kind(content)}")
        # An empty system prompt is a common placeholder; an empty user or assistant turn is a bug.
        if role != "system" and not content.strip():
            raise record.error(f"{where}.content", "is empty")
        turns.append({"role": role, "content": content})
    return turns


def _text_or_turns(record: Record, field: str, expected: str) -> str | list[dict]:
    value = _require(record, field, expected)
    if isinstance(value, str):
        if not value.strip():
            raise record.error(field, "is empty")
        return value
    if isinstance(value, list):
        return _check_turns(record, field, value)
    raise record.error(field, f"must be a string or a list of {{role, content}}, got {_kind(value)}")


def _prompt(record: Record, field: str, expected: str) -> str | list[dict]:
    value = _text_or_turns(record, field, expected)
    if isinstance(value, list) and value[-1]["role"] != "user":
        raise record.error(field, f'must end with a user turn, got "{value[-1]["role"]}"')
    return value


def _answer(record: Record, field: str, expected: str) -> str | list[dict]:
    value = _text_or_turns(record, field, expected)
    if isinstance(value, list):
        for index, turn in enumerate(value):
            if turn["role"] != "assistant":
                raise record.error(
                    f"{field}[{index}].role",
                    f'must be "assistant" ({field} holds only the answer; put the conversation '
                    f'in "prompt"), got "{turn["role"]}"',
                )
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
