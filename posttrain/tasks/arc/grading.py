"""ARC grading: a task is solved when the model writes every test output grid exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from posttrain.tasks.arc.grids import ArcTask, Grid, text_to_grid
from posttrain.tasks.arc.prompts import task_prompt
from posttrain.tasks.metrics import bootstrap_ci


def exact_match_grid(pred_text: str, target: Grid) -> bool:
    """True iff the output parses to exactly `target` (same shape, same cells): the binary reward."""
    return text_to_grid(pred_text) == target


def eval_prompts(tasks: Sequence[ArcTask]) -> list[list[dict]]:
    """`task_prompt` for every test pair of every task, in the order `grade` expects."""
    return [task_prompt(t.train, grid_in) for t in tasks for grid_in, _ in t.test]


def grade(predictions: Sequence[str], tasks: Sequence[ArcTask]) -> dict:
    """Score outputs for `eval_prompts(tasks)`: a task is solved when all its test grids match.

    Returns `accuracy` (solved tasks / tasks), `ci` (95% bootstrap interval over tasks,
    seed 0), `n_tasks`, `n_solved` and `per_task` ({task_id, solved, n_test, n_correct}).
    """
    n_expected = sum(len(t.test) for t in tasks)
    if len(predictions) != n_expected:
        raise ValueError(f"got {len(predictions)} predictions for {n_expected} test inputs")
    per_task, start = [], 0
    for t in tasks:
        batch = predictions[start : start + len(t.test)]
        start += len(t.test)
        correct = [exact_match_grid(p, out) for p, (_, out) in zip(batch, t.test, strict=True)]
        per_task.append(
            {"task_id": t.id, "solved": all(correct), "n_test": len(correct), "n_correct": sum(correct)}
        )
    solved = [float(r["solved"]) for r in per_task]
    return {
        "accuracy": sum(solved) / len(solved) if solved else 0.0,
        "ci": list(bootstrap_ci(solved)) if solved else [0.0, 0.0],
        "n_tasks": len(per_task),
        "n_solved": int(sum(solved)),
        "per_task": per_task,
    }


def evaluate(pred_fn: Callable[[list[list[dict]]], list[str]], tasks: Sequence[ArcTask]) -> dict:
    """Ask every test input through `pred_fn` (batched: prompts in, one completion each out), then grade."""
    prompts = eval_prompts(tasks)
    return grade(list(pred_fn(prompts)) if prompts else [], tasks)
