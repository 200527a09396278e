"""A JSON data file whose errors name the file, the line and the JSON path (`data[3].paragraphs[0]`).

SQuAD and ARC files are hand-edited or converted by users; an error that says where to look
saves them a bisection. The SEAL readers (knowledge, arc) share it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from posttrain.errors import DataError


def json_path_line(text: str, parts: Sequence[str | int]) -> int | None:
    """1-based line where the value at JSON path `parts` starts in `text` (already valid JSON).

    When the path runs out (a missing key or index) the line of the deepest existing
    container is returned, which is where the user has to look. None if `text` is not the
    document `parts` refers to. Only called on errors, so it re-scans rather than indexing.
    """
    decoder = json.JSONDecoder()
    try:
        i = _skip_ws(text, 0)
        for part in parts:
            found = _child_offset(text, i, part, decoder)
            if found is None:
                break
            i = found
    except (ValueError, IndexError):
        return None
    return text.count("\n", 0, i) + 1


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def _child_offset(text: str, i: int, part: str | int, decoder: json.JSONDecoder) -> int | None:
    if isinstance(part, int):
        if text[i] != "[":
            return None
        i = _skip_ws(text, i + 1)
        index = 0
        while text[i] != "]":
            if index == part:
                return i
            _, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i = _skip_ws(text, i + 1)
            index += 1
        return None
    if text[i] != "{":
        return None
    found = None
    i = _skip_ws(text, i + 1)
    while text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, _skip_ws(text, i) + 1)  # past ":"
        if key == part:
            found = i  # keep scanning: with duplicate keys json.loads keeps the last
        _, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i = _skip_ws(text, i + 1)
    return found


def json_path_name(parts: Sequence[str | int]) -> str:
    """`["data", 3, "paragraphs", 0]` -> `data[3].paragraphs[0]`, as error messages show it."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class JsonDocument:
    """A parsed JSON file whose errors point at a JSON path and its line (raises DataError on read)."""

    def __init__(self, path: str | Path) -> None:
        self.source = str(path)
        p = Path(path)
        if not p.is_file():
            raise DataError(self.source, None, None, "no such file")
        raw = p.read_bytes()
        try:
            self.text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise DataError(self.source, line, None, "is not valid UTF-8") from None
        try:
            self.doc = json.loads(self.text)
        except json.JSONDecodeError as err:
            raise DataError(
                self.source, err.lineno, None, f"invalid JSON ({err.msg} at column {err.colno})"
            ) from None

    def error(self, parts: Sequence[str | int], message: str) -> DataError:
        name = json_path_name(parts) or None
        return DataError(self.source, json_path_line(self.text, parts), name, message)
