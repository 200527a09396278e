"""SEAL few-shot learning on ARC: tasks, augmentations, prompts, self-edit configs, grading.

A task is a few (input, output) grid pairs plus a test input. The generator reads the
training pairs and writes a self-edit: a JSON config choosing which augmentations to train
on (basic, size, chain, repeat), which tokens carry the loss, a learning rate and a number
of epochs. The config drives test-time training (a LoRA update on leave-one-out prompts
built from the augmented pairs), and the reward is 1 if the adapted model then produces
the exact test output grid.

Data comes from ARC JSON files (`reading`) or, by default and offline, from
`generate_mini_arc` (`mini_arc`). Grids are `list[list[int]]` with values 0-9 (`grids`).
"""

from posttrain.tasks.arc.augment import AUGMENTATIONS, FLAGS, Op, augment_task
from posttrain.tasks.arc.grading import eval_prompts, evaluate, exact_match_grid, grade
from posttrain.tasks.arc.grids import (
    GEOMETRIC,
    MAX_SIDE,
    ArcTask,
    Grid,
    Pair,
    color_permute,
    flip,
    grid_to_text,
    is_grid,
    rotate,
    text_to_grid,
    tile,
    transpose,
    upscale,
)
from posttrain.tasks.arc.mini_arc import COMPOSED_SPECS, SINGLE_SPECS, apply_transform, generate_mini_arc
from posttrain.tasks.arc.prompts import Strategy, examples_text, task_prompt, training_rows
from posttrain.tasks.arc.reading import read_arc
from posttrain.tasks.arc.self_edits import (
    EPOCH_RANGE,
    LR_RANGE,
    ArcSelfEdit,
    create_self_edit_prompt,
    parse_self_edit,
    self_edit_prompt,
)

__all__ = [
    "AUGMENTATIONS",
    "COMPOSED_SPECS",
    "EPOCH_RANGE",
    "FLAGS",
    "GEOMETRIC",
    "LR_RANGE",
    "MAX_SIDE",
    "SINGLE_SPECS",
    "ArcSelfEdit",
    "ArcTask",
    "Grid",
    "Op",
    "Pair",
    "Strategy",
    "apply_transform",
    "augment_task",
    "color_permute",
    "create_self_edit_prompt",
    "eval_prompts",
    "evaluate",
    "exact_match_grid",
    "examples_text",
    "flip",
    "generate_mini_arc",
    "grade",
    "grid_to_text",
    "is_grid",
    "parse_self_edit",
    "read_arc",
    "rotate",
    "self_edit_prompt",
    "task_prompt",
    "text_to_grid",
    "tile",
    "training_rows",
    "transpose",
    "upscale",
]
