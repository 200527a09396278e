"""Whether a final answer carries the gold answer, and whether a call's arguments match the gold."""

from __future__ import annotations

import math
import re
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


def arguments_match(gold: dict[str, Any], call: ToolCall) -> bool:
    """BFCL-style argument check of a predicted call against a row's `gold`.

    Right name and, per tool: `calculator` expressions must evaluate to the same value; a `search`
    query must retrieve the gold document (`gold["doc_id"]`) in its top 3; every other tool needs
    the same argument names with equal values (strings case-insensitive, numbers numerically).
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
    if set(call.args) != set(gold["args"]):
        return False
    return all(_same_value(call.args[k], v) for k, v in gold["args"].items())
