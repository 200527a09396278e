"""The tools of each split as one `ToolRegistry` (schemas + functions)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from posttrain.tasks.tool_use.tools.calculator import MAX_EXPRESSION_CHARS, calculate
from posttrain.tasks.tool_use.tools.calendar import DATE_PATTERN, DAY_END, DAY_START, TIME_PATTERN, Calendar
from posttrain.tasks.tool_use.tools.search import search
from posttrain.tasks.tool_use.tools.unit_converter import UNITS, convert_units
from posttrain.tasks.tool_use.tools.weather import weather
from posttrain.toolcall import Tool, ToolRegistry

Split = Literal["train", "heldout"]
TRAIN_TOOLS = ("calculator", "search", "calendar_list", "calendar_add", "calendar_free_slot")
HELDOUT_TOOLS = ("unit_converter", "weather")


def _obj(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_DATE = {"type": "string", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD"}
_TIME = {"type": "string", "pattern": TIME_PATTERN, "description": "HH:MM, 24-hour"}


def _free_slot_text(cal: Calendar, date: str, duration_minutes: int) -> dict[str, str] | str:
    slot = cal.find_free_slot(date, duration_minutes)
    return slot or f"No free {duration_minutes}-minute slot on {date} between {DAY_START} and {DAY_END}."


def build_registry(split: Split, workdir: Path) -> ToolRegistry:
    """The tools of a split. "heldout" = the train tools plus `unit_converter` and `weather`.

    The calendar lives in `workdir/calendar.sqlite`; a new file is seeded with `SEED_EVENTS`,
    an existing one is reused as it is.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f'split must be "train" or "heldout", got {split!r}')
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "calendar.sqlite"
    is_new = not path.exists()
    cal = Calendar(path)
    if is_new:
        cal.seed()
    tools = [
        Tool(
            "calculator",
            "Evaluate an arithmetic expression.",
            _obj(
                {"expression": {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION_CHARS}},
                ["expression"],
            ),
            calculate,
        ),
        Tool(
            "search",
            "Search the knowledge base; returns the best documents.",
            _obj(
                {
                    "query": {"type": "string", "minLength": 1, "maxLength": 200},
                    "k": {"type": "integer", "minimum": 1, "maximum": 5},
                },
                ["query"],
            ),
            search,
        ),
        Tool(
            "calendar_list",
            "List my calendar events on a date.",
            _obj({"date": _DATE}, ["date"]),
            cal.list_events,
        ),
        Tool(
            "calendar_add",
            "Add an event to my calendar.",
            _obj(
                {
                    "title": {"type": "string", "minLength": 1, "maxLength": 100},
                    "date": _DATE,
                    "start": _TIME,
                    "end": _TIME,
                },
                ["title", "date", "start", "end"],
            ),
            cal.add_event,
        ),
        Tool(
            "calendar_free_slot",
            "Find my first free slot of a given length (09:00-17:00) on a date.",
            _obj(
                {"date": _DATE, "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480}},
                ["date", "duration_minutes"],
            ),
            functools.partial(_free_slot_text, cal),
        ),
    ]
    if split == "heldout":
        unit = {"type": "string", "enum": list(UNITS)}
        tools += [
            Tool(
                "unit_converter",
                "Convert a value between units.",
                _obj(
                    {"value": {"type": "number"}, "from_unit": unit, "to_unit": unit},
                    ["value", "from_unit", "to_unit"],
                ),
                convert_units,
            ),
            Tool(
                "weather",
                "Weather for a city on a date.",
                _obj({"city": {"type": "string", "minLength": 1}, "date": _DATE}, ["city", "date"]),
                weather,
            ),
        ]
    return ToolRegistry(tools)
