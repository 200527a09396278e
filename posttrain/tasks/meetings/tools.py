"""The three meeting tools, bound to one scenario: their OpenAI function schemas, and a
call-and-record helper that turns every failure into an observation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.tasks.meetings.scenario import Scenario
from posttrain.toolcall import ToolCall


def get_profile(scenario: Scenario, person: str) -> dict[str, Any]:
    p = scenario.person(person)
    return {
        "person": person,
        "role": p.role,
        "seniority": p.seniority,
        "interests": list(p.interests),
        "engagement": p.engagement,
        "energy": p.energy,
    }


def get_schedule_context(scenario: Scenario, person: str, day: int) -> dict[str, Any]:
    p = scenario.person(person)
    if day != scenario.day:
        raise ValueError(f"no meeting is planned on day {day}; this meeting is on day {scenario.day}")
    return {
        "person": person,
        "day": day,
        "meetings_so_far": p.meetings_so_far,
        "time_of_day": scenario.time_of_day,
    }


def topic_overlap(scenario: Scenario, a: str, b: str) -> dict[str, Any]:
    if a == b:
        raise ValueError("topic_overlap needs two different people, A and B")
    scenario.person(a), scenario.person(b)
    return {"shared": scenario.shared_interests, "jaccard": round(scenario.jaccard, 3)}


_PERSON = {"type": "string", "enum": ["A", "B"], "description": 'Which attendee: "A" or "B".'}


def tool_schemas() -> list[dict[str, Any]]:
    """The three tools in OpenAI function format (also what `apply_chat_template(tools=)` takes)."""

    def fn(name: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
        params = {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }
        return {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": params},
        }

    day = {
        "type": "integer",
        "minimum": 1,
        "maximum": 3,
        "description": "Conference day of the meeting (1-3).",
    }
    profile = "Role, seniority, interests, engagement (1-5) and energy (1-5) of one attendee."
    schedule = "Meetings the attendee already had that day, and the meeting's time of day."
    overlap = "Interests two attendees share, and their Jaccard similarity (0-1)."
    return [
        fn("get_profile", profile, {"person": _PERSON}),
        fn("get_schedule_context", schedule, {"person": _PERSON, "day": day}),
        fn("topic_overlap", overlap, {"a": _PERSON, "b": _PERSON}),
    ]


TOOL_NAMES = ("get_profile", "get_schedule_context", "topic_overlap")


def make_tools(scenario: Scenario) -> dict[str, Callable[..., dict[str, Any]]]:
    """Tools bound to one scenario, keyed by name; they take the schema's arguments as keywords,
    return JSON-serialisable dicts and raise ValueError on arguments the scenario cannot answer."""
    return {
        "get_profile": lambda person: get_profile(scenario, person),
        "get_schedule_context": lambda person, day: get_schedule_context(scenario, person, day),
        "topic_overlap": lambda a, b: topic_overlap(scenario, a, b),
    }


@dataclass
class ExecutedCall:
    """A `ToolCall` that ran against a scenario, with what it returned (or its error) and the
    thought that preceded it; trajectories, rewards and traces read these."""

    call: ToolCall
    observation: Any
    error: str | None = None
    thought: str = ""

    @property
    def name(self) -> str:
        return self.call.name

    @property
    def args(self) -> dict[str, Any]:
        return self.call.args


Seen = tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any] | None]


def seen(calls: Sequence[ExecutedCall]) -> Seen:
    """What the calls that succeeded showed: profiles and schedules by person, and the overlap
    (None when not looked up)."""
    ok = [c for c in calls if c.error is None]
    profiles = {c.args["person"]: c.observation for c in ok if c.name == "get_profile"}
    schedules = {c.args["person"]: c.observation for c in ok if c.name == "get_schedule_context"}
    overlap = next((c.observation for c in ok if c.name == "topic_overlap"), None)
    return profiles, schedules, overlap


def execute_call(scenario: Scenario, name: str, args: dict[str, Any], thought: str = "") -> ExecutedCall:
    """Run one call; unknown tools and bad arguments become an `error` observation, never raise."""
    tools = make_tools(scenario)
    try:
        if name not in tools:
            raise ValueError(f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}")
        obs: Any = tools[name](**args)
        return ExecutedCall(ToolCall(name, dict(args)), obs, None, thought)
    except (TypeError, ValueError) as exc:
        return ExecutedCall(ToolCall(name, dict(args)), {"error": str(exc)}, str(exc), thought)
