"""The align-task contract: both built-in tasks answer every question of the protocol, under the
names and with the parameters it documents, and unknown names fail with the known ones listed."""

from __future__ import annotations

import inspect

import pytest

from posttrain.errors import ConfigError
from posttrain.tasks.align import ALIGN_TASKS, align_task
from posttrain.tasks.base import AlignTask


def _members() -> dict[str, object]:
    names = {n for n in vars(AlignTask) if not n.startswith("_")} | set(AlignTask.__annotations__)
    return {n: getattr(AlignTask, n, None) for n in sorted(names)}


@pytest.mark.parametrize("name", sorted(ALIGN_TASKS))
def test_every_align_task_implements_the_protocol(name: str):
    task = align_task(name)
    assert task.name == name
    for member, spec in _members().items():
        assert hasattr(task, member), f"{name} lacks {member}"
        if callable(spec):
            want = list(inspect.signature(spec).parameters)[1:]
            assert list(inspect.signature(getattr(task, member)).parameters) == want, member
    split, metric = task.headline
    assert split in task.split_titles and metric in task.plot_metrics


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ConfigError, match="tool_use, meetings"):
        align_task("chess")
