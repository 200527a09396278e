"""Episode plans: a user prompt, its gold tool calls and the final answer, per template family.

Each planner draws from `rng` only; the order of draws is part of the generated data, so a
change here changes every dataset a seed names.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.tasks.tool_use.registry import Split
from posttrain.tasks.tool_use.tools.calculator import calculate, tidy_number
from posttrain.tasks.tool_use.tools.calendar import ADD_DATES, QUERY_DATES, Calendar, format_hhmm, parse_hhmm
from posttrain.tasks.tool_use.tools.search import load_kb
from posttrain.tasks.tool_use.tools.unit_converter import UNITS, convert_units
from posttrain.tasks.tool_use.tools.weather import load_weather, weather
from posttrain.toolcall import ToolRegistry


@dataclass
class PlannedCall:
    """A gold call with the thought that precedes it; `doc_id` is the document a search must find."""

    name: str
    args: dict[str, Any]
    thought: str
    doc_id: str | None = None


@dataclass
class Env:
    """The tools one dataset runs against; planners read the calendar state their gold answers
    are computed on."""

    registry: ToolRegistry
    calendar: Calendar


@dataclass
class Plan:
    """One episode: the user prompt, the gold calls, the final turn and what its answer must carry."""

    task: str
    template: str
    user: str
    calls: list[PlannedCall]
    final_thought: str
    answer: str
    gold_answer: str


def _pick(rng: random.Random, templates: Sequence[str], prefix: str) -> tuple[str, str]:
    i = rng.randrange(len(templates))
    return f"{prefix}/{i}", templates[i]


def number_text(x: int | float) -> str:
    """A number as the calculator would print it."""
    return str(tidy_number(x))


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


def _plan_calculator(rng: random.Random, split: Split, env: Env) -> Plan:
    if rng.random() < 0.6:
        tid, tpl = _pick(rng, _CALC_TEMPLATES[split], f"{split}/calc")
        expr = _expression(rng)
        user = tpl.format(expr=expr)
    else:
        i = rng.randrange(len(_CALC_WORD[split]))
        tid, (tpl, shape) = f"{split}/calc_word/{i}", _CALC_WORD[split][i]
        a, b = rng.randint(12, 500), rng.randint(2, 40)
        user, expr = tpl.format(a=a, b=b), shape.format(a=a, b=b)
    value = number_text(calculate(expr))
    thought = rng.choice(
        ("I need to calculate this, so I will use the calculator.", f"I will compute {expr}.")
    )
    return Plan(
        "calculator",
        tid,
        user,
        [PlannedCall("calculator", {"expression": expr}, thought)],
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


def _plan_search(rng: random.Random, split: Split, env: Env) -> Plan:
    doc = rng.choice(load_kb())
    qa = rng.choice(doc["qa"])
    tid, tpl = _pick(rng, _SEARCH_TEMPLATES[split], f"{split}/search")
    thought = rng.choice(("I should search the knowledge base for this.", f"I will look up {qa['query']}."))
    call = PlannedCall("search", {"query": qa["query"]}, thought, doc_id=doc["id"])
    return Plan(
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


def _plan_calendar(rng: random.Random, split: Split, env: Env) -> Plan:
    kind = rng.choice(("list", "add", "free"))
    if kind == "list":
        date = rng.choice(QUERY_DATES)
        tid, tpl = _pick(rng, _LIST_TEMPLATES, "train/cal_list")
        events = env.calendar.list_events(date)
        gold = _events_text(events) if events else "no events"
        answer = f"On {date} you have: {gold}." if events else f"You have no events on {date}."
        call = PlannedCall("calendar_list", {"date": date}, "I need to check the calendar for that date.")
        return Plan(
            "calendar_list", tid, tpl.format(date=date), [call], "I have the list of events.", answer, gold
        )
    if kind == "add":
        date, title = rng.choice(ADD_DATES), rng.choice(_NEW_TITLES)
        start = rng.randint(8, 17) * 60 + rng.choice((0, 30))
        end = start + rng.choice((30, 60, 90))
        args = {"title": title, "date": date, "start": format_hhmm(start), "end": format_hhmm(end)}
        tid, tpl = _pick(rng, _ADD_TEMPLATES, "train/cal_add")
        answer = f"Done: {title} is on your calendar on {date} from {args['start']} to {args['end']}."
        call = PlannedCall("calendar_add", args, "I will add this event to the calendar.")
        return Plan("calendar_add", tid, tpl.format(**args), [call], "The event was added.", answer, title)
    date, d = rng.choice(QUERY_DATES), rng.choice((15, 30, 45, 60, 90, 120))
    tid, tpl = _pick(rng, _FREE_TEMPLATES, "train/cal_free")
    slot = env.calendar.find_free_slot(date, d)
    gold = slot["start"] if slot else "no free slot"
    answer = (
        f"Your first free {d}-minute slot on {date} is {slot['start']}-{slot['end']}."
        if slot
        else f"There is no free slot of {d} minutes on {date}."
    )
    call = PlannedCall(
        "calendar_free_slot", {"date": date, "duration_minutes": d}, "I will look for a free slot."
    )
    return Plan(
        "calendar_free_slot", tid, tpl.format(d=d, date=date), [call], "I found the result.", answer, gold
    )


_MULTI_SEARCH_CALC = (
    ("What is double the {what}?", "{v} * 2"),
    ("What is half the {what}?", "{v} / 2"),
    ("What is the {what} plus {x}?", "{v} + {x}"),
    ("What is the {what} minus {x}?", "{v} - {x}"),
    ("What is three times the {what}?", "{v} * 3"),
)


def _plan_multi(rng: random.Random, split: Split, env: Env) -> Plan:
    kind = rng.choice(("search_calc", "calc_free", "list_calc"))
    if kind == "search_calc":
        doc = rng.choice([d for d in load_kb() if "number" in d])
        num, qa = doc["number"], doc["qa"][0]
        i = rng.randrange(len(_MULTI_SEARCH_CALC))
        tpl, shape = _MULTI_SEARCH_CALC[i]
        x = rng.randint(5, 300)
        expr = shape.format(v=number_text(num["value"]), x=x)
        value = number_text(calculate(expr))
        calls = [
            PlannedCall(
                "search", {"query": qa["query"]}, f"First I need the {num['what']}.", doc_id=doc["id"]
            ),
            PlannedCall(
                "calculator",
                {"expression": expr},
                f"The value is {number_text(num['value'])}. Now I compute {expr}.",
            ),
        ]
        answer = f"{value} {num['unit']}".strip()
        return Plan(
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
            PlannedCall("calculator", {"expression": f"{a} + {b}"}, "First I add up the minutes."),
            PlannedCall(
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
        return Plan(
            "calculator+calendar", "train/multi_cf/0", user, calls, "I found the result.", answer, gold
        )
    dates = [d for d in QUERY_DATES if len(env.calendar.list_events(d)) >= 2]
    date = rng.choice(dates)
    events = env.calendar.list_events(date)
    expr = " + ".join(str(parse_hhmm(e["end"]) - parse_hhmm(e["start"])) for e in events)
    total = number_text(calculate(expr))
    calls = [
        PlannedCall("calendar_list", {"date": date}, "First I list the events on that date."),
        PlannedCall("calculator", {"expression": expr}, "Now I add up their durations in minutes."),
    ]
    user = f"How many minutes of events do I have on {date} in total?"
    return Plan(
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


def _plan_no_tool(rng: random.Random, split: Split, env: Env) -> Plan:
    i = rng.randrange(len(_NO_TOOL[split]))
    user, answer = _NO_TOOL[split][i]
    thought = rng.choice(("I can answer this directly.", "No tool is needed for this."))
    return Plan("no_tool", f"{split}/no_tool/{i}", user, [], thought, answer, answer.rstrip("."))


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


def _plan_heldout_tool(rng: random.Random, split: Split, env: Env) -> Plan:
    kind = rng.choice(("convert", "weather", "weather_convert"))
    cities = sorted({r["city"] for r in load_weather().values()})
    if kind == "convert":
        f, t = rng.choice(_CONVERSIONS)
        v = rng.choice((rng.randint(1, 500), round(rng.uniform(0.5, 100), 1)))
        result = number_text(convert_units(v, f, t)["value"])
        i = rng.randrange(len(_CONVERT_TEMPLATES))
        user = _CONVERT_TEMPLATES[i].format(v=v, f=UNITS[f][2], t=UNITS[t][2])
        call = PlannedCall(
            "unit_converter", {"value": v, "from_unit": f, "to_unit": t}, "I will use the unit converter."
        )
        answer = f"{v} {UNITS[f][2]} is {result} {UNITS[t][2]}."
        return Plan(
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
    w_call = PlannedCall(
        "weather", {"city": city, "date": date}, "I need the weather for that city and date."
    )
    if kind == "weather":
        i = rng.randrange(len(_WEATHER_TEMPLATES))
        tpl, key = _WEATHER_TEMPLATES[i]
        answer = (
            f"On {date} {city} will be {row['condition']}, with a high of {row['high_c']} and a low of "
            f"{row['low_c']} degrees Celsius."
        )
        return Plan(
            "weather",
            f"heldout/weather/{i}",
            tpl.format(city=city, date=date),
            [w_call],
            "I have the weather report.",
            answer,
            str(row[key]),
        )
    result = number_text(convert_units(row["high_c"], "celsius", "fahrenheit")["value"])
    calls = [
        w_call,
        PlannedCall(
            "unit_converter",
            {"value": row["high_c"], "from_unit": "celsius", "to_unit": "fahrenheit"},
            f"The high is {row['high_c']} degrees Celsius. Now I convert it to Fahrenheit.",
        ),
    ]
    user = f"What will the high temperature in {city} be on {date}, in Fahrenheit?"
    return Plan(
        "weather+unit_converter",
        "heldout/weather_convert/0",
        user,
        calls,
        "I have the converted value.",
        f"{result} degrees Fahrenheit.",
        result,
    )


# Planners and their weights per split: which kinds of episode a dataset holds, and how often.
PLANNERS: dict[str, tuple[tuple[Callable[..., Plan], float], ...]] = {
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
