"""The tool_use task: calculator / search / calendar tools, held-out tools, and SFT + preference data.

Tools (split "train"): `calculator`, `search` (BM25 over the bundled knowledge base) and the
calendar as three tools, `calendar_list`, `calendar_add`, `calendar_free_slot`: one function per
action keeps each schema small and lets argument accuracy be judged per action (BFCL style), where
one tool with an `action` enum would make every argument conditional. Split "heldout" adds
`unit_converter` and `weather` (over the bundled `weather.csv`), with their own prompt templates.

Calendar state: `build_registry` seeds a new calendar file with `SEED_EVENTS` (dates
2025-03-01..14). Generated prompts only add events on 2025-03-17 or later, so episodes can run in
any order against one registry and still see the state their gold answers were computed on.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import datetime
import functools
import json
import math
import operator
import random
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from posttrain.agents.toolcall import (
    Tool,
    ToolCall,
    ToolRegistry,
    format_call,
    format_final,
    format_system_prompt,
    validate_args,
)
from posttrain.errors import DataError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
KB_PATH = DATA_DIR / "tool_use_kb.jsonl"
WEATHER_PATH = DATA_DIR / "weather.csv"

Split = Literal["train", "heldout"]
TRAIN_TOOLS = ("calculator", "search", "calendar_list", "calendar_add", "calendar_free_slot")
HELDOUT_TOOLS = ("unit_converter", "weather")
DEFECTS = (
    "malformed_json",
    "missing_thought",
    "hallucinated_tool",
    "wrong_tool",
    "schema_violation",
    "refusal",
    "no_tool_when_needed",
    "tool_when_not_needed",
)

# --------------------------------------------------------------------------- calculator

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e100


class CalculatorError(ValueError):
    """The expression is not allowed or cannot be computed; the message says why."""


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name: (fn, min args, max args)
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (round, 1, 2),
    "min": (min, 2, 10),
    "max": (max, 2, 10),
}
_CONSTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic safely: numbers, + - * / // % **, unary +/-, parentheses, pi, e and
    sqrt/abs/round/min/max. Never `eval`. Raises `CalculatorError` beyond 200 characters, for an
    exponent above 100 in magnitude, or for any intermediate result above 1e100 in magnitude.
    Integral results come back as `int`; others keep 10 significant digits.
    """
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be a string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise CalculatorError(f"not an arithmetic expression: {expression!r}") from err
    return _tidy(_eval(tree.body))


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"only numbers are allowed, not {node.value!r}")
        return _bounded(node.value)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        fn = _BINOPS.get(type(node.op))
        if fn is None:
            raise CalculatorError(f"operator {type(node.op).__name__} is not allowed")
        if right == 0 and isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod):
            raise CalculatorError("division by zero")
        return _bounded(fn(left, right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        fn, lo, hi = _FUNCS[node.func.id]
        if node.keywords or not lo <= len(node.args) <= hi:
            raise CalculatorError(f"{node.func.id} takes {lo}..{hi} positional arguments")
        args = [_eval(a) for a in node.args]
        if node.func.id == "sqrt" and args[0] < 0:
            raise CalculatorError("sqrt of a negative number")
        if (
            node.func.id == "round"
            and len(args) == 2
            and not (isinstance(args[1], int) and 0 <= args[1] <= 15)
        ):
            raise CalculatorError("round digits must be an integer in 0..15")
        return _bounded(fn(*args))
    what = {ast.Name: "names", ast.Attribute: "attribute access", ast.Call: "this function call"}
    raise CalculatorError(f"{what.get(type(node), type(node).__name__)} not allowed in the calculator")


def _power(base: int | float, exp: int | float) -> int | float:
    if abs(exp) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exp} is larger than {MAX_EXPONENT}")
    if base == 0 and exp < 0:
        raise CalculatorError("division by zero")
    if base != 0 and exp > 0 and exp * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise CalculatorError(f"result is larger than {MAX_MAGNITUDE:g}")
    result = base**exp
    if isinstance(result, complex):
        raise CalculatorError("fractional power of a negative number")
    return _bounded(result)


def _bounded(value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError(f"result is larger than {MAX_MAGNITUDE:g}")
    return value


def _tidy(value: int | float) -> int | float:
    if isinstance(value, int):
        return value
    value = float(f"{value:.10g}")
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


# --------------------------------------------------------------------------- search (BM25)

_STOPWORDS_TEXT = """a an and are as at be by did do does for from has have how in is it its many
much of on or the to was were what when where which who whom why with"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def _tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOPWORDS]


class BM25Index:
    """Okapi BM25 over short documents (k1=1.5, b=0.75), dense numpy: the KB is ~100 documents."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        docs = [_tokens(t) for t in texts]
        self.vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
        tf = np.zeros((len(docs), len(self.vocab)))
        for row, doc in enumerate(docs):
            for w in doc:
                tf[row, self.vocab[w]] += 1
        lengths = tf.sum(axis=1, keepdims=True)
        df = (tf > 0).sum(axis=0)
        idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        self.weights = idf * tf * (k1 + 1) / (tf + norm)  # per (doc, term) BM25 contribution

    def top(self, query: str, k: int) -> list[int]:
        """Indices of the k best documents with a positive score, best first."""
        cols = [self.vocab[w] for w in _tokens(query) if w in self.vocab]
        if not cols:
            return []
        scores = self.weights[:, cols].sum(axis=1)
        order = np.argsort(-scores, kind="stable")[:k]
        return [int(i) for i in order if scores[i] > 0]


@functools.lru_cache(maxsize=4)
def load_kb(path: Path = KB_PATH) -> tuple[dict[str, Any], ...]:
    """The knowledge base rows: id, title, text, qa [{question, answer, query}], number?."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(str(path), line_no, None, f"invalid JSON ({err.msg})") from err
    return tuple(rows)


@functools.lru_cache(maxsize=4)
def _kb_index(path: Path = KB_PATH) -> BM25Index:
    return BM25Index([f"{d['title']} {d['text']}" for d in load_kb(path)])


def search(query: str, k: int = 3) -> list[dict[str, str]]:
    """The top-k knowledge-base documents for `query` as {title, text}; empty when nothing matches."""
    kb = load_kb()
    return [{"title": kb[i]["title"], "text": kb[i]["text"]} for i in _kb_index().top(query, k)]


def search_ids(query: str, k: int = 3) -> list[str]:
    kb = load_kb()
    return [kb[i]["id"] for i in _kb_index().top(query, k)]


# --------------------------------------------------------------------------- calendar (SQLite)

DAY_START, DAY_END = "09:00", "17:00"
_DATE_RE, _TIME_RE = r"^\d{4}-\d{2}-\d{2}$", r"^\d{2}:\d{2}$"

SEED_EVENTS: tuple[tuple[str, str, str, str], ...] = (  # (title, date, start, end)
    ("Gym", "2025-03-02", "10:00", "11:00"),
    ("Team standup", "2025-03-03", "09:00", "09:30"),
    ("Design review", "2025-03-03", "10:00", "11:30"),
    ("Lunch with Sam", "2025-03-03", "12:00", "13:00"),
    ("Team standup", "2025-03-04", "09:00", "09:30"),
    ("Client call", "2025-03-04", "14:00", "15:00"),
    ("Budget meeting", "2025-03-05", "09:00", "10:30"),
    ("Project sync", "2025-03-05", "11:00", "12:00"),
    ("Dentist", "2025-03-05", "15:00", "16:00"),
    ("Team standup", "2025-03-06", "09:00", "09:30"),
    ("Workshop", "2025-03-06", "09:30", "12:30"),
    ("1:1 with manager", "2025-03-06", "13:00", "13:30"),
    ("Code review", "2025-03-06", "13:30", "15:00"),
    ("Brunch with Ana", "2025-03-09", "11:00", "12:30"),
    ("Team standup", "2025-03-10", "09:00", "09:30"),
    ("Planning", "2025-03-10", "09:30", "11:00"),
    ("Interview", "2025-03-10", "11:00", "12:00"),
    ("Lunch with Sam", "2025-03-10", "12:00", "13:00"),
    ("All hands", "2025-03-10", "13:00", "14:00"),
    ("Training", "2025-03-10", "14:00", "17:00"),
    ("Team standup", "2025-03-11", "09:00", "09:30"),
    ("Doctor", "2025-03-11", "16:00", "17:00"),
    ("Project sync", "2025-03-12", "10:00", "11:00"),
    ("Vendor demo", "2025-03-12", "10:30", "11:30"),
    ("Design review", "2025-03-12", "13:00", "14:30"),
    ("Team standup", "2025-03-13", "09:00", "09:30"),
    ("Offsite", "2025-03-13", "09:30", "16:30"),
    ("Client call", "2025-03-14", "11:00", "11:30"),
    ("Team lunch", "2025-03-14", "12:30", "14:00"),
)
QUERY_DATES = tuple(f"2025-03-{d:02d}" for d in range(1, 15))
ADD_DATES = tuple(f"2025-03-{d:02d}" for d in range(17, 32))


class CalendarError(ValueError):
    """A calendar request with a bad date, time or range; the message names the field."""


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _check_date(date: str) -> str:
    try:
        if not re.match(_DATE_RE, date):
            raise ValueError
        datetime.date.fromisoformat(date)
    except ValueError as err:
        raise CalendarError(f"date {date!r} is not a YYYY-MM-DD date") from err
    return date


def _check_time(name: str, value: str) -> int:
    if (
        not re.match(_TIME_RE, value)
        or int(value[:2]) > 24
        or int(value[3:]) > 59
        or _minutes(value) > 24 * 60
    ):
        raise CalendarError(f"{name} {value!r} is not an HH:MM time")
    return _minutes(value)


class Calendar:
    """Events in a SQLite file. Every call opens its own connection, so instances are cheap and
    several processes may share one file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, title TEXT NOT NULL,"
                " date TEXT NOT NULL, start TEXT NOT NULL, end TEXT NOT NULL)"
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path)
        try:
            with db:  # commits or rolls back
                yield db
        finally:
            db.close()

    def list_events(self, date: str) -> list[dict[str, str]]:
        """Events on `date`, by start time."""
        _check_date(date)
        with self._connect() as db:
            rows = db.execute(
                "SELECT title, start, end FROM events WHERE date = ? ORDER BY start, end, id", (date,)
            ).fetchall()
        return [{"title": t, "start": s, "end": e} for t, s, e in rows]

    def add_event(self, title: str, date: str, start: str, end: str) -> dict[str, Any]:
        """Add an event; overlapping events are allowed (as in real calendars) and listed back."""
        title = title.strip()
        if not title or len(title) > 100:
            raise CalendarError("title must have 1..100 characters")
        _check_date(date)
        lo, hi = _check_time("start", start), _check_time("end", end)
        if hi <= lo:
            raise CalendarError(f"end {end} is not after start {start}")
        overlaps = [
            e["title"]
            for e in self.list_events(date)
            if _minutes(e["start"]) < hi and lo < _minutes(e["end"])
        ]
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (title, date, start, end) VALUES (?, ?, ?, ?)", (title, date, start, end)
            )
        return {"added": {"title": title, "date": date, "start": start, "end": end}, "overlaps": overlaps}

    def find_free_slot(
        self, date: str, duration_minutes: int, day_start: str = DAY_START, day_end: str = DAY_END
    ) -> dict[str, str] | None:
        """The earliest `duration_minutes` gap between `day_start` and `day_end`; None when none fits.
        Overlapping events are merged first."""
        _check_date(date)
        if not 1 <= duration_minutes <= 24 * 60:
            raise CalendarError("duration_minutes must be in 1..1440")
        cursor, end_of_day = _check_time("day_start", day_start), _check_time("day_end", day_end)
        for event in self.list_events(date):  # sorted by start
            lo, hi = _minutes(event["start"]), _minutes(event["end"])
            if lo - cursor >= duration_minutes and cursor + duration_minutes <= end_of_day:
                break
            cursor = max(cursor, hi)
        if cursor + duration_minutes > end_of_day:
            return None
        return {"date": date, "start": _hhmm(cursor), "end": _hhmm(cursor + duration_minutes)}

    def seed(self, events: Sequence[tuple[str, str, str, str]] = SEED_EVENTS) -> None:
        with self._connect() as db:
            db.executemany("INSERT INTO events (title, date, start, end) VALUES (?, ?, ?, ?)", events)


# --------------------------------------------------------------------------- held-out tools

_UNITS: dict[str, tuple[str, float, str]] = {  # code: (dimension, factor to its base unit, name)
    "m": ("length", 1.0, "meters"),
    "km": ("length", 1000.0, "kilometers"),
    "cm": ("length", 0.01, "centimeters"),
    "mi": ("length", 1609.344, "miles"),
    "ft": ("length", 0.3048, "feet"),
    "in": ("length", 0.0254, "inches"),
    "kg": ("mass", 1.0, "kilograms"),
    "g": ("mass", 0.001, "grams"),
    "lb": ("mass", 0.45359237, "pounds"),
    "l": ("volume", 1.0, "liters"),
    "gal": ("volume", 3.785411784, "gallons"),
    "celsius": ("temperature", 1.0, "degrees Celsius"),
    "fahrenheit": ("temperature", 1.0, "degrees Fahrenheit"),
}


def convert_units(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    """Convert between units of one dimension; the result keeps 4 decimals."""
    if from_unit not in _UNITS or to_unit not in _UNITS:
        raise ValueError(f"unknown unit; known: {', '.join(_UNITS)}")
    if _UNITS[from_unit][0] != _UNITS[to_unit][0]:
        raise ValueError(
            f"cannot convert {_UNITS[from_unit][0]} ({from_unit}) to {_UNITS[to_unit][0]} ({to_unit})"
        )
    if _UNITS[from_unit][0] == "temperature":  # affine, not a factor
        celsius = value if from_unit == "celsius" else (value - 32) * 5 / 9
        result = celsius if to_unit == "celsius" else celsius * 9 / 5 + 32
    else:
        result = value * _UNITS[from_unit][1] / _UNITS[to_unit][1]
    return {"value": _tidy(round(result, 4)), "unit": to_unit}


@functools.lru_cache(maxsize=4)
def load_weather(path: Path = WEATHER_PATH) -> dict[tuple[str, str], dict[str, Any]]:
    """The bundled weather table keyed by (lower-case city, date)."""
    table = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            table[(row["city"].lower(), row["date"])] = {
                "city": row["city"],
                "date": row["date"],
                "condition": row["condition"],
                "high_c": int(row["high_c"]),
                "low_c": int(row["low_c"]),
                "precip_mm": float(row["precip_mm"]),
            }
    return table


def weather(city: str, date: str) -> dict[str, Any]:
    table = load_weather()
    row = table.get((city.strip().lower(), date))
    if row is None:
        cities = sorted({r["city"] for r in table.values()})
        dates = sorted({d for _, d in table})
        raise ValueError(
            f"no weather for {city!r} on {date}; cities: {', '.join(cities)}; dates {dates[0]}..{dates[-1]}"
        )
    return row


# --------------------------------------------------------------------------- registry


def _obj(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_DATE = {"type": "string", "pattern": _DATE_RE, "description": "YYYY-MM-DD"}
_TIME = {"type": "string", "pattern": _TIME_RE, "description": "HH:MM, 24-hour"}


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
        unit = {"type": "string", "enum": list(_UNITS)}
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


# --------------------------------------------------------------------------- answers and arguments

_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _numbers(text: str) -> list[float]:
    return [float(x) for x in _NUM_RE.findall(re.sub(r"(?<=\d),(?=\d{3})", "", text))]


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
    if _NUM_RE.fullmatch(gold.strip().replace(",", "")):
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


# --------------------------------------------------------------------------- data: episode plans


@dataclass
class _Call:
    name: str
    args: dict[str, Any]
    thought: str
    doc_id: str | None = None


@dataclass
class _Plan:
    task: str
    template: str
    user: str
    calls: list[_Call]
    final_thought: str
    answer: str
    gold_answer: str


def _pick(rng: random.Random, templates: Sequence[str], prefix: str) -> tuple[str, str]:
    i = rng.randrange(len(templates))
    return f"{prefix}/{i}", templates[i]


def _num(x: int | float) -> str:
    return str(_tidy(x))


_CALC_TEMPLATES = {
    "train": (
        "What is {expr}?",
        "Calculate {expr}.",
        "Compute {expr} for me.",
        "Please evaluate {expr}.",
        "How much is {expr}?",
        "Work out {expr}.",
    ),
    "heldout": (
        "Quick math: {expr}",
        "Could you tell me the result of {expr}?",
        "I need the value of {expr}.",
    ),
}
_CALC_WORD = {  # (template, expression builder from a, b)
    "train": (
        ("I have {a} apples and buy {b} more. How many apples do I have?", "{a} + {b}"),
        ("A box holds {a} pens. How many pens are in {b} boxes?", "{a} * {b}"),
        ("Split {a} dollars equally among {b} people. How much does each get?", "{a} / {b}"),
        ("What is {b}% of {a}?", "{a} * {b} / 100"),
        ("I had {a} dollars and spent {b}. How much is left?", "{a} - {b}"),
    ),
    "heldout": (
        ("A recipe needs {a} grams of flour per cake. How much flour for {b} cakes?", "{a} * {b}"),
        ("A tank holds {a} liters and {b} liters leak out. How much remains?", "{a} - {b}"),
    ),
}


def _expression(rng: random.Random) -> str:
    a, b, c = rng.randint(2, 999), rng.randint(2, 99), rng.randint(2, 20)
    shapes = (
        f"{a} + {b}",
        f"{a} - {b}",
        f"{a} * {b}",
        f"{a * b} / {b}",
        f"{a} / {c}",
        f"({a} + {b}) * {c}",
        f"{b} ** 2",
        f"{a} % {c}",
        f"sqrt({b * b})",
        f"{a} * {b} - {c}",
        f"{a}.{rng.randint(1, 9)} * {c}",
    )
    return rng.choice(shapes)


def _plan_calculator(rng: random.Random, split: Split, env: _Env) -> _Plan:
    if rng.random() < 0.6:
        tid, tpl = _pick(rng, _CALC_TEMPLATES[split], f"{split}/calc")
        expr = _expression(rng)
        user = tpl.format(expr=expr)
    else:
        i = rng.randrange(len(_CALC_WORD[split]))
        tid, (tpl, shape) = f"{split}/calc_word/{i}", _CALC_WORD[split][i]
        a, b = rng.randint(12, 500), rng.randint(2, 40)
        user, expr = tpl.format(a=a, b=b), shape.format(a=a, b=b)
    value = _num(calculate(expr))
    thought = rng.choice(
        ("I need to calculate this, so I will use the calculator.", f"I will compute {expr}.")
    )
    return _Plan(
        "calculator",
        tid,
        user,
        [_Call("calculator", {"expression": expr}, thought)],
        f"The calculator returned {value}.",
        value,
        value,
    )


_SEARCH_TEMPLATES = {
    "train": (
        "{q}",
        "Search the knowledge base: {q}",
        "I need a fact. {q}",
        "Quick question: {q}",
        "Tell me: {q}",
    ),
    "heldout": ("Please check the knowledge base and answer this. {q}", "Do you happen to know? {q}"),
}


def _plan_search(rng: random.Random, split: Split, env: _Env) -> _Plan:
    doc = rng.choice(load_kb())
    qa = rng.choice(doc["qa"])
    tid, tpl = _pick(rng, _SEARCH_TEMPLATES[split], f"{split}/search")
    thought = rng.choice(("I should search the knowledge base for this.", f"I will look up {qa['query']}."))
    call = _Call("search", {"query": qa["query"]}, thought, doc_id=doc["id"])
    return _Plan(
        "search",
        tid,
        tpl.format(q=qa["question"]),
        [call],
        "The search results answer the question.",
        qa["answer"],
        qa["answer"],
    )


_LIST_TEMPLATES = (
    "What's on my calendar on {date}?",
    "Do I have any meetings on {date}?",
    "List my events for {date}.",
    "Show my schedule for {date}.",
)
_ADD_TEMPLATES = (
    "Add {title} to my calendar on {date} from {start} to {end}.",
    "Schedule {title} on {date}, {start}-{end}.",
    "Put {title} in my calendar for {date} from {start} until {end}.",
    "Book {title} on {date} from {start} to {end}.",
)
_FREE_TEMPLATES = (
    "Find a free {d}-minute slot on {date}.",
    "When am I free for {d} minutes on {date}?",
    "I need {d} minutes on {date}. When is my first free slot?",
    "Find time for a {d} minute meeting on {date}.",
)
_NEW_TITLES = (
    "Dentist",
    "Team dinner",
    "Yoga class",
    "Call with Mia",
    "Budget review",
    "Haircut",
    "Book club",
    "Car service",
    "Piano lesson",
    "Sprint demo",
    "Coffee with Leo",
)


def _events_text(events: list[dict[str, str]]) -> str:
    return ", ".join(f"{e['title']} {e['start']}-{e['end']}" for e in events)


def _plan_calendar(rng: random.Random, split: Split, env: _Env) -> _Plan:
    kind = rng.choice(("list", "add", "free"))
    if kind == "list":
        date = rng.choice(QUERY_DATES)
        tid, tpl = _pick(rng, _LIST_TEMPLATES, "train/cal_list")
        events = env.calendar.list_events(date)
        gold = _events_text(events) if events else "no events"
        answer = f"On {date} you have: {gold}." if events else f"You have no events on {date}."
        call = _Call("calendar_list", {"date": date}, "I need to check the calendar for that date.")
        return _Plan(
            "calendar_list", tid, tpl.format(date=date), [call], "I have the list of events.", answer, gold
        )
    if kind == "add":
        date, title = rng.choice(ADD_DATES), rng.choice(_NEW_TITLES)
        start = rng.randint(8, 17) * 60 + rng.choice((0, 30))
        end = start + rng.choice((30, 60, 90))
        args = {"title": title, "date": date, "start": _hhmm(start), "end": _hhmm(end)}
        tid, tpl = _pick(rng, _ADD_TEMPLATES, "train/cal_add")
        answer = f"Done: {title} is on your calendar on {date} from {args['start']} to {args['end']}."
        call = _Call("calendar_add", args, "I will add this event to the calendar.")
        return _Plan("calendar_add", tid, tpl.format(**args), [call], "The event was added.", answer, title)
    date, d = rng.choice(QUERY_DATES), rng.choice((15, 30, 45, 60, 90, 120))
    tid, tpl = _pick(rng, _FREE_TEMPLATES, "train/cal_free")
    slot = env.calendar.find_free_slot(date, d)
    gold = slot["start"] if slot else "no free slot"
    answer = (
        f"Your first free {d}-minute slot on {date} is {slot['start']}-{slot['end']}."
        if slot
        else f"There is no free slot of {d} minutes on {date}."
    )
    call = _Call("calendar_free_slot", {"date": date, "duration_minutes": d}, "I will look for a free slot.")
    return _Plan(
        "calendar_free_slot", tid, tpl.format(d=d, date=date), [call], "I found the result.", answer, gold
    )


_MULTI_SEARCH_CALC = (
    ("What is double the {what}?", "{v} * 2"),
    ("What is half the {what}?", "{v} / 2"),
    ("What is the {what} plus {x}?", "{v} + {x}"),
    ("What is the {what} minus {x}?", "{v} - {x}"),
    ("What is three times the {what}?", "{v} * 3"),
)


def _plan_multi(rng: random.Random, split: Split, env: _Env) -> _Plan:
    kind = rng.choice(("search_calc", "calc_free", "list_calc"))
    if kind == "search_calc":
        doc = rng.choice([d for d in load_kb() if "number" in d])
        num, qa = doc["number"], doc["qa"][0]
        i = rng.randrange(len(_MULTI_SEARCH_CALC))
        tpl, shape = _MULTI_SEARCH_CALC[i]
        x = rng.randint(5, 300)
        expr = shape.format(v=_num(num["value"]), x=x)
        value = _num(calculate(expr))
        calls = [
            _Call("search", {"query": qa["query"]}, f"First I need the {num['what']}.", doc_id=doc["id"]),
            _Call(
                "calculator",
                {"expression": expr},
                f"The value is {_num(num['value'])}. Now I compute {expr}.",
            ),
        ]
        answer = f"{value} {num['unit']}".strip()
        return _Plan(
            "search+calculator",
            f"train/multi_sc/{i}",
            tpl.format(what=num["what"], x=x),
            calls,
            f"The calculator returned {value}.",
            answer,
            value,
        )
    if kind == "calc_free":
        date, a, b = rng.choice(QUERY_DATES), rng.choice((20, 25, 30, 40, 45)), rng.choice((10, 15, 20, 30))
        slot = env.calendar.find_free_slot(date, a + b)
        user = (
            f"I need {a} minutes for a talk plus {b} minutes for questions. "
            f"Find a free slot on {date} for both."
        )
        calls = [
            _Call("calculator", {"expression": f"{a} + {b}"}, "First I add up the minutes."),
            _Call(
                "calendar_free_slot",
                {"date": date, "duration_minutes": a + b},
                f"I need {a + b} minutes. Now I look for a free slot.",
            ),
        ]
        gold = slot["start"] if slot else "no free slot"
        answer = (
            f"You are free on {date} from {slot['start']} to {slot['end']}."
            if slot
            else f"There is no free slot of {a + b} minutes on {date}."
        )
        return _Plan(
            "calculator+calendar", "train/multi_cf/0", user, calls, "I found the result.", answer, gold
        )
    dates = [d for d in QUERY_DATES if len(env.calendar.list_events(d)) >= 2]
    date = rng.choice(dates)
    events = env.calendar.list_events(date)
    expr = " + ".join(str(_minutes(e["end"]) - _minutes(e["start"])) for e in events)
    total = _num(calculate(expr))
    calls = [
        _Call("calendar_list", {"date": date}, "First I list the events on that date."),
        _Call("calculator", {"expression": expr}, "Now I add up their durations in minutes."),
    ]
    user = f"How many minutes of events do I have on {date} in total?"
    return _Plan(
        "calendar+calculator",
        "train/multi_lc/0",
        user,
        calls,
        f"The total is {total} minutes.",
        f"{total} minutes",
        total,
    )


_NO_TOOL = {
    "train": (
        ("Hi there!", "Hello! How can I help you today?"),
        ("Thanks for your help!", "You're welcome!"),
        ("What color is the sky on a clear day?", "Blue."),
        ("What day comes after Monday?", "Tuesday."),
        ("What is the opposite of hot?", "Cold."),
        ("Spell the word cat backwards.", "tac"),
        ("Say hello in French.", "Bonjour."),
        ("What is the plural of mouse?", "Mice."),
        ("Which month comes after March?", "April."),
        ("What do you call a baby cat?", "A kitten."),
        ("Give me a synonym for happy.", "Joyful."),
        ("What is the first letter of the alphabet?", "The letter A."),
        ("Is ice cold or hot?", "Cold."),
        ("What sound does a dog make?", "Woof."),
        ("Name a primary color.", "Red."),
        ("What is the capital of France?", "Paris."),
        ("How do you say thank you in Spanish?", "Gracias."),
        ("What is the past tense of run?", "Ran."),
        ("Good morning!", "Good morning! What can I do for you?"),
        ("What shape has three sides?", "A triangle."),
        ("Who wrote Romeo and Juliet?", "William Shakespeare."),
        ("What do bees make?", "Honey."),
        ("Which season comes after winter?", "Spring."),
        ("What is the opposite of up?", "Down."),
    ),
    "heldout": (
        ("Hey, how are you?", "I'm doing well, thanks! How can I help?"),
        ("What is the opposite of early?", "Late."),
        ("Which day comes before Friday?", "Thursday."),
        ("What do you call a baby dog?", "A puppy."),
        ("Say goodbye in Italian.", "Arrivederci."),
        ("What color are ripe bananas?", "Yellow."),
        ("What is the plural of child?", "Children."),
        ("Which animal says moo?", "A cow."),
    ),
}


def _plan_no_tool(rng: random.Random, split: Split, env: _Env) -> _Plan:
    i = rng.randrange(len(_NO_TOOL[split]))
    user, answer = _NO_TOOL[split][i]
    thought = rng.choice(("I can answer this directly.", "No tool is needed for this."))
    return _Plan("no_tool", f"{split}/no_tool/{i}", user, [], thought, answer, answer.rstrip("."))


_CONVERT_TEMPLATES = (
    "Convert {v} {f} to {t}.",
    "How many {t} is {v} {f}?",
    "What is {v} {f} in {t}?",
)
_CONVERSIONS = (
    ("km", "mi"),
    ("mi", "km"),
    ("kg", "lb"),
    ("lb", "kg"),
    ("ft", "m"),
    ("m", "ft"),
    ("cm", "in"),
    ("in", "cm"),
    ("l", "gal"),
    ("gal", "l"),
    ("kg", "g"),
    ("celsius", "fahrenheit"),
    ("fahrenheit", "celsius"),
    ("m", "cm"),
    ("mi", "ft"),
)
_WEATHER_TEMPLATES = (
    ("What's the weather in {city} on {date}?", "condition"),
    ("Will it rain in {city} on {date}?", "condition"),
    ("Give me the forecast for {city} on {date}.", "condition"),
    ("How warm will it be in {city} on {date}?", "high_c"),
)


def _plan_heldout_tool(rng: random.Random, split: Split, env: _Env) -> _Plan:
    kind = rng.choice(("convert", "weather", "weather_convert"))
    cities = sorted({r["city"] for r in load_weather().values()})
    if kind == "convert":
        f, t = rng.choice(_CONVERSIONS)
        v = rng.choice((rng.randint(1, 500), round(rng.uniform(0.5, 100), 1)))
        result = _num(convert_units(v, f, t)["value"])
        i = rng.randrange(len(_CONVERT_TEMPLATES))
        user = _CONVERT_TEMPLATES[i].format(v=v, f=_UNITS[f][2], t=_UNITS[t][2])
        call = _Call(
            "unit_converter", {"value": v, "from_unit": f, "to_unit": t}, "I will use the unit converter."
        )
        answer = f"{v} {_UNITS[f][2]} is {result} {_UNITS[t][2]}."
        return _Plan(
            "unit_converter",
            f"heldout/convert/{i}",
            user,
            [call],
            "I have the converted value.",
            answer,
            result,
        )
    city, date = rng.choice(cities), f"2025-03-{rng.randint(1, 14):02d}"
    row = weather(city, date)
    w_call = _Call("weather", {"city": city, "date": date}, "I need the weather for that city and date.")
    if kind == "weather":
        i = rng.randrange(len(_WEATHER_TEMPLATES))
        tpl, key = _WEATHER_TEMPLATES[i]
        answer = (
            f"On {date} {city} will be {row['condition']}, with a high of {row['high_c']} and a low of "
            f"{row['low_c']} degrees Celsius."
        )
        return _Plan(
            "weather",
            f"heldout/weather/{i}",
            tpl.format(city=city, date=date),
            [w_call],
            "I have the weather report.",
            answer,
            str(row[key]),
        )
    result = _num(convert_units(row["high_c"], "celsius", "fahrenheit")["value"])
    calls = [
        w_call,
        _Call(
            "unit_converter",
            {"value": row["high_c"], "from_unit": "celsius", "to_unit": "fahrenheit"},
            f"The high is {row['high_c']} degrees Celsius. Now I convert it to Fahrenheit.",
        ),
    ]
    user = f"What will the high temperature in {city} be on {date}, in Fahrenheit?"
    return _Plan(
        "weather+unit_converter",
        "heldout/weather_convert/0",
        user,
        calls,
        "I have the converted value.",
        f"{result} degrees Fahrenheit.",
        result,
    )


_MIX: dict[str, tuple[tuple[Callable[..., _Plan], float], ...]] = {
    "train": (
        (_plan_calculator, 0.24),
        (_plan_search, 0.22),
        (_plan_calendar, 0.2),
        (_plan_multi, 0.16),
        (_plan_no_tool, 0.18),
    ),
    "heldout": (
        (_plan_heldout_tool, 0.6),
        (_plan_calculator, 0.12),
        (_plan_search, 0.12),
        (_plan_no_tool, 0.16),
    ),
}


# --------------------------------------------------------------------------- data: rejected answers

_FAKE_TOOLS = (
    "calc",
    "math",
    "lookup",
    "web_search",
    "google",
    "wikipedia",
    "python",
    "browser",
    "schedule",
    "get_answer",
    "knowledge_base",
    "compute",
    "events",
)
_REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I cannot help with that request as I am an AI.",
    "As an AI language model, I am unable to do that.",
    "Thought: I am not able to do this.\nFinal Answer: Sorry, I can't help with that.",
    "Thought: This is not something I can do.\nFinal Answer: I am unable to answer that.",
)


def _plausible_args(name: str, user: str, rng: random.Random) -> dict[str, Any]:
    """Schema-valid arguments for `name` built from the prompt, for wrong-tool rejections."""
    date = (re.findall(r"\d{4}-\d{2}-\d{2}", user) or ["2025-03-05"])[0]
    numbers = re.findall(r"\d+", user)
    if name == "calculator":
        return {"expression": " + ".join(numbers[:2]) if len(numbers) >= 2 else "2 + 2"}
    if name == "search":
        return {"query": " ".join(user.split()[:8])[:200] or "help"}
    if name == "calendar_list":
        return {"date": date}
    if name == "calendar_add":
        return {"title": "Meeting", "date": date, "start": "10:00", "end": "11:00"}
    if name == "calendar_free_slot":
        return {"date": date, "duration_minutes": 30}
    if name == "unit_converter":
        return {"value": 1, "from_unit": "km", "to_unit": "mi"}
    if name == "weather":
        return {"city": "Port Amsel", "date": date}
    raise ValueError(f"no plausible arguments for {name!r}")


def _malformed(thought: str, name: str, args: dict[str, Any], rng: random.Random) -> str:
    good = format_call(thought, name, args)
    body = json.dumps({"tool": name, "args": args}, ensure_ascii=False)
    variants = (
        good.replace(body, body[:-1]),  # missing closing brace
        good.replace(body, body.replace('"', "'")),  # Python-style quotes
        good.replace(body, body[:-1] + ", }"),  # trailing comma
        good.replace(body, body.replace('"tool"', "tool", 1)),  # unquoted key
        good[: -len("```")].rstrip(),  # unclosed fence
        good.replace(
            body, json.dumps({"tool": name, "args": " ".join(str(v) for v in args.values())})
        ),  # seed-004 style
    )
    return rng.choice(variants)


def _violate(schema: dict[str, Any], args: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    options: list[dict[str, Any]] = []
    for key in schema.get("required", []):
        options.append({k: v for k, v in args.items() if k != key})  # missing required
    options.append({**args, rng.choice(("note", "verbose", "format")): "yes"})  # extra argument
    for key, value in args.items():  # wrong type
        options.append({**args, key: 42 if isinstance(value, str) else str(value)})
    rng.shuffle(options)
    return next(o for o in options if validate_args(schema, o))


def _wrong_answer(plan: _Plan, rng: random.Random) -> str:
    """A confident answer that `answer_matches` rejects (so the defect stays detectable)."""
    pool = [qa["answer"] for d in load_kb() for qa in d["qa"]]
    while True:
        if _NUM_RE.fullmatch(plan.gold_answer):
            guess = _num(round(float(plan.gold_answer) * rng.choice((1.5, 0.5, 2)) + rng.randint(3, 30)))
        else:
            guess = rng.choice(pool)
        answer = f"The answer is {guess}."
        if not answer_matches(answer, plan.gold_answer):
            return answer


def _rejected(
    defect: str, plan: _Plan, step: int, registry: ToolRegistry, rng: random.Random
) -> str:  # one defect, everything else as in the chosen answer
    if step < len(plan.calls):
        call = plan.calls[step]
        if defect == "malformed_json":
            return _malformed(call.thought, call.name, call.args, rng)
        if defect == "missing_thought":
            text = format_call(call.thought, call.name, call.args).split("\n", 1)[1]
            return rng.choice((text, f"{call.thought}\n{text}"))
        if defect == "hallucinated_tool":
            return format_call(call.thought, rng.choice(_FAKE_TOOLS), call.args)
        if defect == "wrong_tool":
            other = rng.choice([n for n in registry if n != call.name])
            return format_call(f"I will use the {other} tool.", other, _plausible_args(other, plan.user, rng))
        if defect == "schema_violation":
            return format_call(
                call.thought, call.name, _violate(registry[call.name].parameters, call.args, rng)
            )
        if defect == "no_tool_when_needed":
            return format_final("I know this without a tool.", _wrong_answer(plan, rng))
    elif defect == "tool_when_not_needed":
        if plan.calls:
            last = plan.calls[-1]
            return format_call("Let me check that again.", last.name, last.args)
        name = rng.choice([n for n in ("search", "calculator") if n in registry])
        return format_call(f"I will use the {name} tool.", name, _plausible_args(name, plan.user, rng))
    if defect == "refusal":
        return rng.choice(_REFUSALS)
    raise ValueError(f"defect {defect!r} does not apply to step {step} of a {plan.task} episode")


_CALL_DEFECTS = DEFECTS[:7]
_FINAL_DEFECTS = ("refusal", "tool_when_not_needed")


# --------------------------------------------------------------------------- data: rows


@dataclass
class _Env:
    registry: ToolRegistry
    calendar: Calendar


def generate_tool_use_data(
    n: int, seed: int, split: Split = "train", pref_fraction: float = 0.5
) -> list[dict]:
    """`n` rows of SFT and preference data for `split`, deterministic for a seed.

    Each episode (a prompt plus its gold tool calls, executed for real to get the observations)
    yields one row per assistant turn: turn i's `prompt` holds the system message, the user turn
    and the earlier turns with their `Observation:` replies, so SFT learns every step.
    Row fields: `id`, `split`, `kind` ("sft" | "preference"), `task`, `template`, `episode`,
    `step`, `tools` (schemas), `prompt` (messages), `completion` (the chosen turn), `gold`
    ({name, args[, doc_id]} of the expected call, None when the turn should be a Final Answer),
    `gold_answer` (what the episode's final answer must carry, see `answer_matches`); preference
    rows add `chosen` (= completion), `rejected` (exactly one defect) and `defect` (one of
    `DEFECTS`). A fraction `pref_fraction` of turns become preference rows.
    """
    if n < 0 or not 0 <= pref_fraction <= 1:
        raise ValueError("n must be >= 0 and pref_fraction in [0, 1]")
    rng = random.Random(f"tool_use/{split}/{seed}")
    planners, weights = zip(*_MIX[split], strict=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="posttrain-tool-use-") as tmp:
        registry = build_registry(split, Path(tmp))
        env = _Env(registry, Calendar(Path(tmp) / "calendar.sqlite"))
        schemas = registry.schemas()
        system = format_system_prompt(schemas)
        episode = 0
        while len(rows) < n:
            plan = rng.choices(planners, weights)[0](rng, split, env)
            rows += _episode_rows(plan, episode, env, rng, split, schemas, system, pref_fraction)
            episode += 1
    for i, row in enumerate(rows[:n]):
        row["id"] = f"tool_use-{split}-{seed}-{i:05d}"
    return rows[:n]


def _episode_rows(
    plan: _Plan,
    episode: int,
    env: _Env,
    rng: random.Random,
    split: Split,
    schemas: list[dict[str, Any]],
    system: str,
    pref_fraction: float,
) -> list[dict]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": plan.user}]
    rows = []
    for step in range(len(plan.calls) + 1):
        is_call = step < len(plan.calls)
        if is_call:
            call = plan.calls[step]
            chosen = format_call(call.thought, call.name, call.args)
            gold: dict[str, Any] | None = {"name": call.name, "args": call.args}
            if call.doc_id:
                gold["doc_id"] = call.doc_id
        else:
            chosen, gold = format_final(plan.final_thought, plan.answer), None
        row = {
            "id": "",
            "split": split,
            "kind": "sft",
            "task": plan.task,
            "template": plan.template,
            "episode": episode,
            "step": step,
            "tools": schemas,
            "prompt": [dict(m) for m in messages],
            "completion": chosen,
            "gold": gold,
            "gold_answer": plan.gold_answer,
        }
        if rng.random() < pref_fraction:
            defect = rng.choice(_CALL_DEFECTS if is_call else _FINAL_DEFECTS)
            rejected = _rejected(defect, plan, step, env.registry, rng)
            row.update(kind="preference", chosen=chosen, rejected=rejected, defect=defect)
        rows.append(row)
        if is_call:
            observation, ok = env.registry.execute_checked(ToolCall(call.name, call.args))
            if not ok:  # a generator bug, not a user error: gold calls must run
                raise RuntimeError(f"gold call {call} failed: {observation}")
            messages += [
                {"role": "assistant", "content": chosen},
                {"role": "user", "content": f"Observation: {observation}"},
            ]
    return rows


def write_tool_use_data(path: Path | str, n: int, seed: int, split: Split = "train") -> Path:
    """Write `generate_tool_use_data(n, seed, split)` as JSONL; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = generate_tool_use_data(n, seed, split)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


_REQUIRED = ("id", "split", "kind", "tools", "prompt", "completion", "gold", "gold_answer")


def read_tool_use_data(path: Path | str) -> list[dict]:
    """Read rows written by `write_tool_use_data`; raises `DataError` naming the line and field."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(str(path), line_no, None, f"invalid JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise DataError(str(path), line_no, None, "is not a JSON object (expected a tool_use row)")
        for key in _REQUIRED + (("chosen", "rejected", "defect") if row.get("kind") == "preference" else ()):
            if key not in row:
                raise DataError(
                    str(path), line_no, key, "is missing (expected a tool_use row, see write_tool_use_data)"
                )
        rows.append(row)
    return rows
