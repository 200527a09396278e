"""ARC tasks from JSON files (one task, an object of tasks, or a directory; solutions apart)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posttrain.errors import DataError
from posttrain.tasks.arc.grids import ArcTask, Grid, Pair
from posttrain.tasks.jsonfile import JsonDocument

_ARC_SHAPE = 'expected an ARC task {"train": [{"input", "output"}], "test": [...]} or an object of tasks'


def read_arc(path_or_dir: str | Path, solutions: str | Path | None = None) -> list[ArcTask]:
    """Read ARC tasks from a JSON file or a directory of them (every `*.json`, sorted).

    A file holds one task (its id is the file name without .json) or an object mapping
    task ids to tasks. Test pairs may lack "output" only when `solutions` names a file
    mapping task ids to their test output grids (the ARC Prize challenges/solutions split).
    Raises DataError naming the file, line and field (`train[2].output[1][3]`).
    """
    source = Path(path_or_dir)
    if source.is_dir():
        files = sorted(source.glob("*.json"))
        if not files:
            raise DataError(str(source), None, None, "holds no .json files")
    elif source.is_file():
        files = [source]
    else:
        raise DataError(str(source), None, None, "no such file or directory")
    answers = JsonDocument(solutions) if solutions is not None else None
    if answers is not None and not isinstance(answers.doc, dict):
        raise answers.error([], "must map task ids to lists of test output grids")
    tasks = []
    for file in files:
        doc = JsonDocument(file)
        if isinstance(doc.doc, dict) and "train" in doc.doc:
            entries: list[tuple[str, Any, list[str | int]]] = [(file.stem, doc.doc, [])]
        elif isinstance(doc.doc, dict) and doc.doc:
            entries = [(task_id, value, [task_id]) for task_id, value in doc.doc.items()]
        else:
            raise doc.error([], _ARC_SHAPE)
        tasks += [_arc_task(doc, task_id, value, where, answers) for task_id, value, where in entries]
    return tasks


def _arc_task(
    doc: JsonDocument, task_id: str, value: Any, where: list[str | int], answers: JsonDocument | None
) -> ArcTask:
    if not isinstance(value, dict):
        raise doc.error(where, f"must be a task object, got {type(value).__name__} ({_ARC_SHAPE})")
    train = [
        _pair(doc, p, [*where, "train", i], None) for i, p in enumerate(_pairs(doc, value, where, "train"))
    ]
    test = []
    for i, p in enumerate(_pairs(doc, value, where, "test")):
        solution = None
        if answers is not None and isinstance(p, dict) and "output" not in p:
            solution = _solution(answers, task_id, i)
        test.append(_pair(doc, p, [*where, "test", i], solution))
    return ArcTask(task_id, train, test)


def _pairs(doc: JsonDocument, task: dict, where: list[str | int], key: str) -> list:
    if key not in task:
        raise doc.error([*where, key], f"is missing ({_ARC_SHAPE})")
    value = task[key]
    if not isinstance(value, list) or not value:
        raise doc.error([*where, key], "must be a non-empty list of {input, output} pairs")
    return value


def _pair(doc: JsonDocument, value: Any, where: list[str | int], solution: Grid | None) -> Pair:
    if not isinstance(value, dict):
        raise doc.error(where, f"must be an object with input and output, got {type(value).__name__}")
    if "input" not in value:
        raise doc.error([*where, "input"], "is missing")
    grid_in = _check_grid(doc, value["input"], [*where, "input"])
    if "output" in value:
        return grid_in, _check_grid(doc, value["output"], [*where, "output"])
    if solution is not None:
        return grid_in, solution
    hint = " (test outputs kept in a separate file? pass it as solutions=)" if "test" in where else ""
    raise doc.error([*where, "output"], f"is missing{hint}")


def _solution(answers: JsonDocument, task_id: str, index: int) -> Grid:
    grids = answers.doc.get(task_id)
    if not isinstance(grids, list) or index >= len(grids):
        raise answers.error([task_id], f"has no test output {index} for task {task_id!r}")
    return _check_grid(answers, grids[index], [task_id, index])


def _check_grid(doc: JsonDocument, value: Any, where: list[str | int]) -> Grid:
    if not isinstance(value, list) or not value:
        raise doc.error(where, "must be a non-empty list of rows of integers 0-9")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise doc.error([*where, r], "must be a non-empty list of integers 0-9")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise doc.error(
                [*where, r], f"has {len(row)} cells but row 0 has {width} (grids are rectangular)"
            )
        for c, cell in enumerate(row):
            if type(cell) is not int or not 0 <= cell <= 9:
                raise doc.error([*where, r, c], f"is {json.dumps(cell)}, expected an integer 0-9")
    return [list(row) for row in value]
