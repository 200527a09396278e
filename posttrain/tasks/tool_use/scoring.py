"""Whether a final answer carries the gold answer, and whether a call matches the gold (BFCL's AST check).

Gold calls come in BFCL's possible-answer shape: a list of acceptable calls, each
`{"<function name>": {"<argument>": [acceptable values, ...]}}`, where the value `OMITTED` ("")
among an argument's acceptable values means the argument may be left out; or the string
`NO_CALL` ("no_call") when no offered function fits the request (BFCL's irrelevance rows).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from posttrain.tasks.tool_use.tools.calculator import CalculatorError, calculate
from posttrain.tasks.tool_use.tools.search import search_ids
from posttrain.toolcall import ToolCall

NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _numbers(text: str) -> list[float]:
    return [float(x) for x in NUM_RE.findall(re.sub(r"(?<=\d),(?=\d{3})", "", text))]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s:.-]", " ", text.lower())).strip(" .")


def answer_matches(answer: str | None, gold: str) -> bool:
    """Whether a final answer carries the gold answer.

    A purely numeric gold matches any number in the answer (relative tolerance 1e-3, thousands
    separators ignored); other golds must appear in the answer as whole words, case- and
    punctuation-insensitive, with a leading "the " optional.
    """
    if answer is None:
        return False
    if NUM_RE.fullmatch(gold.strip().replace(",", "")):
        target = float(gold.replace(",", ""))
        return any(math.isclose(x, target, rel_tol=1e-3, abs_tol=1e-6) for x in _numbers(answer))
    g = _norm(gold)
    g = g[4:] if g.startswith("the ") else g
    return bool(g) and re.search(rf"(?<!\w){re.escape(g)}(?!\w)", _norm(answer)) is not None


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool | str):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    return a == b


OMITTED = ""
"""Among an argument's acceptable values: the call may leave the argument out (BFCL's convention)."""
NO_CALL = "no_call"
"""The gold of a row where no offered function fits: the right answer makes no call."""

GoldCall = Mapping[str, Mapping[str, Sequence[Any]]]
Gold = Sequence[GoldCall] | str

# BFCL's standardize_string: "April 1, 2024" == "april 1 2024" == "April 1,2024".
_BFCL_STRIP = re.compile(r"[ ,./\-_*^]")


def _bfcl_string(text: str) -> str:
    return _BFCL_STRIP.sub("", text).lower().replace("'", '"')


def value_matches(value: Any, expected: Any) -> bool:
    """Whether one argument value equals one acceptable gold value, as BFCL compares them.

    Numbers numerically (5 == 5.0, relative tolerance 1e-6; a bool is not a number); strings after
    BFCL's normalisation (case, spaces and `,./-_*^` ignored); lists element by element; objects
    key by key, where a nested gold value that is a list is read as that key's acceptable values
    (BFCL's nested possible answers) unless the value itself is that list.
    """
    if isinstance(expected, bool) or isinstance(value, bool):
        return type(value) is type(expected) and value == expected
    if isinstance(expected, int | float) and isinstance(value, int | float):
        return math.isclose(float(value), float(expected), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(expected, str) and isinstance(value, str):
        return _bfcl_string(value) == _bfcl_string(expected)
    if isinstance(expected, list) and isinstance(value, list):
        return len(value) == len(expected) and all(map(value_matches, value, expected))
    if isinstance(expected, dict) and isinstance(value, dict):
        if not set(value) <= set(expected):
            return False
        return all(_argument_ok(value, key, allowed, nested=True) for key, allowed in expected.items())
    return value == expected


def _argument_ok(args: Mapping[str, Any], name: str, allowed: Any, nested: bool = False) -> bool:
    """`args[name]` is one of `allowed` (a list of acceptable values), or absent where that is allowed."""
    options = allowed if isinstance(allowed, list) else [allowed]
    if name not in args:
        return OMITTED in options
    value = args[name]
    if nested and isinstance(allowed, list) and isinstance(value, list) and value_matches(value, allowed):
        return True  # inside an object a gold list may be the value itself, not its alternatives
    return any(value_matches(value, option) for option in options if not _is_omitted(option, value))


def _is_omitted(option: Any, value: Any) -> bool:
    # "" stands for "leave it out", so it never accepts a written value (except a written "").
    return isinstance(option, str) and option == OMITTED and value != OMITTED


def score_call(call: ToolCall | None, gold: Gold) -> bool:
    """BFCL's AST match of one predicted call (None: the turn made no call) against a row's gold.

    True when `gold` is `NO_CALL` and there is no call, or when some acceptable gold call has the
    call's name, every gold argument is present with an acceptable value (or absent where `OMITTED`
    is acceptable), and the call has no argument the gold does not name. Types against the schema
    are the parser's job (`parse_response` reports `schema_violation`), not this function's.
    """
    if isinstance(gold, str):
        if gold != NO_CALL:
            raise ValueError(f"gold must be a list of acceptable calls or {NO_CALL!r}, got {gold!r}")
        return call is None
    if call is None:
        return False
    for option in gold:
        for name, args in option.items():
            if name != call.name or not set(call.args) <= set(args):
                continue
            if all(_argument_ok(call.args, arg, allowed) for arg, allowed in args.items()):
                return True
    return False


def arguments_match(gold: dict[str, Any], call: ToolCall) -> bool:
    """BFCL-style argument check of a predicted call against a built-in row's `gold`
    (`{"name", "args", "doc_id"?}`, one value per argument).

    Right name and, per tool: `calculator` expressions must evaluate to the same value; a `search`
    query must retrieve the gold document (`gold["doc_id"]`) in its top 3; every other tool goes
    through `score_call` with each gold value as the one acceptable value (every argument required).
    """
    if call.name != gold["name"]:
        return False
    if call.name == "calculator":
        try:
            return _same_value(
                calculate(call.args.get("expression", "")), calculate(gold["args"]["expression"])
            )
        except CalculatorError:
            return False
    if call.name == "search" and "doc_id" in gold:
        query = call.args.get("query")
        return isinstance(query, str) and gold["doc_id"] in search_ids(query, 3)
    return score_call(call, [{gold["name"]: {k: [v] for k, v in gold["args"].items()}}])
