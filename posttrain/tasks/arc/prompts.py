"""The ARC task prompt, and the leave-one-out test-time-training rows built from it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from posttrain.tasks.arc.grids import Grid, Pair, grid_to_text, is_grid

Strategy = Literal["all_tokens", "output_tokens"]

_TASK_INSTRUCTION = (
    "Each input grid is turned into its output grid by the same rule. Grids are rows of digits 0-9. "
    "Apply the rule to the last input and reply with its output grid only."
)


def examples_text(pairs: Sequence[Pair]) -> str:
    """Demonstration pairs as text, shared by the task prompt and the self-edit prompt."""
    return "\n\n".join(f"Input:\n{grid_to_text(a)}\nOutput:\n{grid_to_text(b)}" for a, b in pairs)


def task_prompt(train_pairs: Sequence[Pair], test_input: Grid) -> list[dict]:
    """Chat messages: the demonstrations and the test input; the answer is `grid_to_text` of the output."""
    parts = [_TASK_INSTRUCTION]
    if train_pairs:
        parts.append(examples_text(train_pairs))
    parts.append(f"Input:\n{grid_to_text(test_input)}\nOutput:")
    return [{"role": "user", "content": "\n\n".join(parts)}]


def training_rows(
    groups: Sequence[Sequence[Pair]] | Sequence[Pair],
    strategy: Strategy,
    max_rows: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Leave-one-out test-time-training rows: each pair of a group is asked with the others as demos.

    `groups` is `augment_task`'s output (a flat list of pairs counts as one group).
    - "output_tokens": TRL conversational prompt-completion rows
      `{"prompt": task_prompt(...), "completion": [assistant grid]}`; the loss is on the grid only.
    - "all_tokens": TRL conversational rows `{"messages": prompt + [assistant grid]}`; TRL (with
      the default assistant_only_loss=False) puts the loss on every token, demonstrations
      included. The chat template is the same one evaluation uses, unlike a raw text row.
    With `max_rows`, a seeded sample of that many rows is kept, in order.
    """
    if strategy not in ("all_tokens", "output_tokens"):
        raise ValueError(f"strategy must be all_tokens or output_tokens, got {strategy!r}")
    if groups and groups[0] and is_grid(groups[0][0]):  # a flat list of pairs
        groups = [groups]  # type: ignore[list-item]
    rows = []
    for group in groups:
        for i, (grid_in, grid_out) in enumerate(group):
            prompt = task_prompt([*group[:i], *group[i + 1 :]], grid_in)
            answer = [{"role": "assistant", "content": grid_to_text(grid_out)}]
            rows.append(
                {"prompt": prompt, "completion": answer}
                if strategy == "output_tokens"
                else {"messages": prompt + answer}
            )
    if max_rows is not None and len(rows) > max_rows:
        keep = sorted(random.Random(seed).sample(range(len(rows)), max_rows))
        rows = [rows[i] for i in keep]
    return rows
