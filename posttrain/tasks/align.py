"""The align tasks by name: what `posttrain align` and `posttrain eval` look a `--task` up in."""

from __future__ import annotations

from posttrain.errors import ConfigError
from posttrain.tasks.base import AlignTask
from posttrain.tasks.meetings.align import MeetingsAlign
from posttrain.tasks.tool_use.align import ToolUseAlign

ALIGN_TASKS: dict[str, AlignTask] = {"tool_use": ToolUseAlign(), "meetings": MeetingsAlign()}


def align_task(name: str) -> AlignTask:
    """The task called `name`; ConfigError naming the known ones otherwise."""
    if name not in ALIGN_TASKS:
        raise ConfigError(f"unknown align task '{name}': pick one of {', '.join(ALIGN_TASKS)}")
    return ALIGN_TASKS[name]
