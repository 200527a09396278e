"""The tool_use tools' functions, one module per tool (the calendar's three tools share one backend).

Their schemas and names live in `registry.py`; these modules are plain Python with no tool format.
"""

from posttrain.tasks.tool_use.tools.calculator import MAX_EXPRESSION_CHARS, CalculatorError, calculate
from posttrain.tasks.tool_use.tools.calendar import SEED_EVENTS, Calendar, CalendarError
from posttrain.tasks.tool_use.tools.search import KB_PATH, BM25Index, load_kb, search, search_ids
from posttrain.tasks.tool_use.tools.unit_converter import UNITS, convert_units
from posttrain.tasks.tool_use.tools.weather import WEATHER_PATH, load_weather, weather

__all__ = [
    "KB_PATH",
    "MAX_EXPRESSION_CHARS",
    "SEED_EVENTS",
    "UNITS",
    "WEATHER_PATH",
    "BM25Index",
    "CalculatorError",
    "Calendar",
    "CalendarError",
    "calculate",
    "convert_units",
    "load_kb",
    "load_weather",
    "search",
    "search_ids",
    "weather",
]
