"""SEAL few-shot learning on ARC: tasks, augmentations, prompts, self-edit configs, grading.

A task is a few (input, output) grid pairs plus a test input. The generator reads the
training pairs and writes a self-edit: a JSON config choosing which augmentations to train
on (basic, size, chain, repeat), which tokens carry the loss, a learning rate and a number
of epochs. The config drives test-time training (a LoRA update on leave-one-out prompts
built from the augmented pairs), and the reward is 1 if the adapted model then produces
the exact test output grid.

Data comes from ARC JSON files or, by default and offline, from `generate_mini_arc`:
small random grids under one hidden transformation (a rotation, flip, transpose, colour
map, 2x tiling or a composition of two).

Grids are `list[list[int]]` with values 0-9; every function here returns fresh lists of
Python ints, never numpy arrays.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from posttrain.errors import DataError
from posttrain.tasks.knowledge import JsonDocument
from posttrain.tasks.metrics import bootstrap_ci

Grid = list[list[int]]
Pair = tuple[Grid, Grid]
Strategy = Literal["all_tokens", "output_tokens"]

MAX_SIDE = 30  # ARC's largest grid; augmentations that would exceed it are skipped


@dataclass
class ArcTask:
    """An ARC task. `transform` names the hidden rule of generated tasks (None for real ARC)."""

    id: str
    train: list[Pair]
    test: list[Pair]
    transform: str | None = None


# --------------------------------------------------------------------------- grid operations


def _grid(array: np.ndarray) -> Grid:
    return [[int(v) for v in row] for row in array]


def rotate(g: Grid, k: int = 1) -> Grid:
    """Rotate by k quarter-turns counter-clockwise (numpy's rot90 convention); k may be negative."""
    return _grid(np.rot90(np.asarray(g), k))


def flip(g: Grid, axis: int) -> Grid:
    """axis=0 reverses the row order (upside down); axis=1 reverses each row (mirror)."""
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis}")
    return _grid(np.flip(np.asarray(g), axis))


def transpose(g: Grid) -> Grid:
    """Swap rows and columns (reflect across the main diagonal)."""
    return _grid(np.asarray(g).T)


def color_permute(g: Grid, perm: Sequence[int] | Mapping[int, int]) -> Grid:
    """Recolour cells: `perm[c]` is the new colour of c.

    A sequence must have 10 entries; a mapping may list only the colours it changes.
    """
    if isinstance(perm, Mapping):
        table = [perm.get(c, c) for c in range(10)]
    else:
        table = list(perm)
        if len(table) != 10:
            raise ValueError(f"a colour permutation sequence needs 10 entries, got {len(table)}")
    if sorted(table) != list(range(10)):
        raise ValueError(f"not a permutation of the colours 0-9: {table}")
    return _grid(np.asarray(table)[np.asarray(g)])


def upscale(g: Grid, fy: int, fx: int) -> Grid:
    """Each cell becomes an fy x fx block (fy=2, fx=1 doubles every row)."""
    return _grid(np.repeat(np.repeat(np.asarray(g), fy, axis=0), fx, axis=1))


def tile(g: Grid, ny: int, nx: int) -> Grid:
    """The whole grid repeated ny times down and nx times across."""
    return _grid(np.tile(np.asarray(g), (ny, nx)))


# --------------------------------------------------------------------------- serialisation


def grid_to_text(g: Grid) -> str:
    """One line per row, one digit per cell, no separators: the most compact text for an LLM."""
    return "\n".join("".join(str(c) for c in row) for row in g)


_GRID_LINE = re.compile(r"[\d\s,|\[\]]+")


def text_to_grid(s: str) -> Grid | None:
    """Parse a grid from model output; None when there is no rectangular 0-9 grid.

    Accepts the `grid_to_text` form, digits separated by spaces, commas or bars, one
    bracketed row per line, and a JSON list of lists; prose and code fences around it are
    ignored. The first block of consecutive digit lines is the grid.
    """
    if not isinstance(s, str):
        return None
    start = s.find("[[")
    if start < 0:
        start = s.find("[ [")
    if start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(s, start)
        except json.JSONDecodeError:
            return None  # a truncated JSON grid: reading its digits as rows would misparse
        return value if _is_grid(value) else None
    rows: Grid = []
    for line in s.splitlines():
        text = line.strip().strip("`").strip()
        if text and _GRID_LINE.fullmatch(text) and any(ch.isdigit() for ch in text):
            rows.append([int(ch) for ch in text if ch.isdigit()])
        elif rows:
            break
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    return rows


def _is_grid(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    if not all(isinstance(row, list) and row and len(row) == len(value[0]) for row in value):
        return False
    return all(type(c) is int and 0 <= c <= 9 for row in value for c in row)


# --------------------------------------------------------------------------- reading ARC JSON

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


# --------------------------------------------------------------------------- mini-ARC generator

GEOMETRIC: dict[str, Callable[[Grid], Grid]] = {
    "rot90": lambda g: rotate(g, 1),
    "rot180": lambda g: rotate(g, 2),
    "rot270": lambda g: rotate(g, 3),
    "flip_v": lambda g: flip(g, 0),
    "flip_h": lambda g: flip(g, 1),
    "transpose": transpose,
}

# Every spec the generator draws from, as steps applied left to right. The list holds no two
# specs that are the same function: dihedral ops commute with colour maps and 2x2 tiling, so
# each composition appears in one order only, and two dihedral ops compose to a single one
# except transpose+rot180 (the anti-diagonal reflection), which is listed.
SINGLE_SPECS: tuple[tuple[str, ...], ...] = (*((name,) for name in GEOMETRIC), ("color_map",), ("tile2x",))
COMPOSED_SPECS: tuple[tuple[str, ...], ...] = (
    ("transpose", "rot180"),
    *((name, "color_map") for name in GEOMETRIC),
    *((name, "tile2x") for name in GEOMETRIC),
    ("color_map", "tile2x"),
)


def apply_transform(spec: Sequence[str], g: Grid, perm: Sequence[int] | None = None) -> Grid:
    """Apply the steps of `spec` (names from SINGLE_SPECS) in order; color_map needs `perm`."""
    for step in spec:
        if step in GEOMETRIC:
            g = GEOMETRIC[step](g)
        elif step == "tile2x":
            g = tile(g, 2, 2)
        elif step == "color_map":
            if perm is None:
                raise ValueError("color_map needs a colour permutation")
            g = color_permute(g, perm)
        else:
            raise ValueError(f"unknown transform step {step!r}")
    return g


def _random_grid(rng: random.Random, size_range: tuple[int, int], palette: list[int]) -> Grid:
    while True:
        h, w = rng.randint(*size_range), rng.randint(*size_range)
        g = [[0 if rng.random() < 0.35 else rng.choice(palette) for _ in range(w)] for _ in range(h)]
        if len({c for row in g for c in row}) >= 2:
            return g


def _colours(grids: Sequence[Grid]) -> set[int]:
    return {c for g in grids for row in g for c in row}


def _fits_other_spec(pairs: Sequence[Pair], spec: tuple[str, ...], perm: list[int]) -> bool:
    """True if another generator spec explains every pair too, so the rule would be ambiguous."""
    recolours = perm != list(range(10))
    return any(
        other != spec
        and ("color_map" in other) == recolours  # with the identity perm, "x+color_map" is just "x"
        and all(apply_transform(other, a, perm) == b for a, b in pairs)
        for other in (*SINGLE_SPECS, *COMPOSED_SPECS)
    )


def _mini_task(rng: random.Random, task_id: str, size_range: tuple[int, int]) -> ArcTask:
    while True:
        spec = rng.choice(SINGLE_SPECS) if rng.random() < 0.6 else rng.choice(COMPOSED_SPECS)
        palette = rng.sample(range(1, 10), rng.randint(2, 4))
        perm = list(range(10))
        if "color_map" in spec:  # a cycle over the palette, so every task colour changes
            for src, dst in zip(palette, palette[1:] + palette[:1], strict=True):
                perm[src] = dst
        inputs = [_random_grid(rng, size_range, palette) for _ in range(rng.randint(3, 4) + 1)]
        pairs = [(g, apply_transform(spec, g, perm)) for g in inputs]
        if len({grid_to_text(g) for g in inputs}) < len(inputs) or any(a == b for a, b in pairs):
            continue
        # The test input may only use colours the train pairs show, or a colour map is unguessable.
        if not _colours(inputs[-1:]) <= _colours(inputs[:-1]) or _fits_other_spec(pairs, spec, perm):
            continue
        return ArcTask(task_id, pairs[:-1], pairs[-1:], "+".join(spec))


def generate_mini_arc(n: int, seed: int, size_range: tuple[int, int] = (2, 5)) -> list[ArcTask]:
    """`n` small ARC tasks, each under one hidden transformation, with 3-4 train pairs and 1 test.

    Heights and widths are drawn from `size_range` (inclusive; outputs of tiling tasks are
    twice as large). Inputs use a background 0 and 2-4 other colours. A task is redrawn
    until no input is repeated, every output differs from its input, the test input uses
    only colours seen in training, and no other generator rule explains all its pairs.
    Deterministic per seed; ids are `mini-<seed>-<index>`; `transform` holds the rule.
    """
    lo, hi = size_range
    if not 1 <= lo <= hi <= MAX_SIDE // 2:
        raise ValueError(f"size_range must satisfy 1 <= lo <= hi <= {MAX_SIDE // 2}, got {size_range}")
    rng = random.Random(seed)
    return [_mini_task(rng, f"mini-{seed}-{i:04d}", size_range) for i in range(n)]


# --------------------------------------------------------------------------- augmentations

Op = Callable[[Grid], Grid]

# The four families of SEAL's self-edit flags, after the test-time-training code SEAL builds
# on (Akyurek et al., 2024). Each op is invertible, so applying it to both grids of every
# pair turns a task T into the consistent task op . T . op^-1 (the same T for ops that
# commute with it: rotations with rotations, anything geometric with colour maps).
AUGMENTATIONS: dict[str, dict[str, Op]] = {
    # rotations, flips and transpose
    "basic": dict(GEOMETRIC),
    # size: enlarge every cell (2x2 blocks, or doubled rows or columns)
    "size": {
        "upscale2": lambda g: upscale(g, 2, 2),
        "stretch_rows": lambda g: upscale(g, 2, 1),
        "stretch_cols": lambda g: upscale(g, 1, 2),
    },
    # chain: compositions, a geometric op then 2x upscaling, plus the one dihedral op basic lacks
    "chain": {
        "anti_transpose": lambda g: rotate(transpose(g), 2),
        **{f"{name}+upscale2": (lambda g, f=f: upscale(f(g), 2, 2)) for name, f in GEOMETRIC.items()},
    },
    # repeat: the whole grid tiled twice down, across, or both (the TTT code's "Repeat")
    "repeat": {
        "tile_rows": lambda g: tile(g, 2, 1),
        "tile_cols": lambda g: tile(g, 1, 2),
        "tile_both": lambda g: tile(g, 2, 2),
    },
}
FLAGS = tuple(AUGMENTATIONS)


def augment_task(
    task: ArcTask, flags: Mapping[str, bool] | ArcSelfEdit, max_side: int = MAX_SIDE
) -> list[list[Pair]]:
    """The task's train pairs, then one augmented copy per op of every enabled flag.

    Returns groups, not a flat list: each group is the train pairs under ONE op (the first
    is the original), so prompts built within a group stay consistent with one rule (see
    AUGMENTATIONS). An op is skipped when a grid would exceed `max_side`, and a group equal
    to an earlier one (a symmetric task) is dropped. Test pairs are never used.
    """
    enabled = _enabled_flags(flags)
    groups = [list(task.train)]
    seen = {_group_key(groups[0])}
    for family in FLAGS:
        if not enabled[family]:
            continue
        for op in AUGMENTATIONS[family].values():
            group = [(op(a), op(b)) for a, b in task.train]
            if any(len(g) > max_side or len(g[0]) > max_side for pair in group for g in pair):
                continue
            key = _group_key(group)
            if key not in seen:
                seen.add(key)
                groups.append(group)
    return groups


def _enabled_flags(flags: Mapping[str, bool] | ArcSelfEdit) -> dict[str, bool]:
    if isinstance(flags, ArcSelfEdit):
        return {f: bool(getattr(flags, f)) for f in FLAGS}
    unknown = set(flags) - set(FLAGS)
    if unknown:
        raise ValueError(f"unknown augmentation flags {sorted(unknown)} (expected {list(FLAGS)})")
    return {f: bool(flags.get(f, False)) for f in FLAGS}


def _group_key(group: Sequence[Pair]) -> str:
    return "|".join(f"{grid_to_text(a)}>{grid_to_text(b)}" for a, b in group)


# --------------------------------------------------------------------------- prompts and rows

_TASK_INSTRUCTION = (
    "Each input grid is turned into its output grid by the same rule. Grids are rows of digits 0-9. "
    "Apply the rule to the last input and reply with its output grid only."
)


def _examples(pairs: Sequence[Pair]) -> str:
    return "\n\n".join(f"Input:\n{grid_to_text(a)}\nOutput:\n{grid_to_text(b)}" for a, b in pairs)


def task_prompt(train_pairs: Sequence[Pair], test_input: Grid) -> list[dict]:
    """Chat messages: the demonstrations and the test input; the answer is `grid_to_text` of the output."""
    parts = [_TASK_INSTRUCTION]
    if train_pairs:
        parts.append(_examples(train_pairs))
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
    if groups and groups[0] and _is_grid(groups[0][0]):  # a flat list of pairs
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


# --------------------------------------------------------------------------- self-edits

LR_RANGE = (1e-5, 1e-2)
EPOCH_RANGE = (1, 10)


class ArcSelfEdit(BaseModel):
    """A self-edit for ARC: which augmentations to train on and how. Out-of-range values clamp."""

    model_config = ConfigDict(extra="forbid")

    basic: bool = Field(True, description="add rotated, flipped and transposed copies of the pairs")
    size: bool = Field(False, description="add copies with every cell enlarged (2x2, 2x1, 1x2 blocks)")
    chain: bool = Field(False, description="add copies under composed ops (geometric then 2x upscale)")
    repeat: bool = Field(False, description="add copies with the grids tiled twice down/across/both")
    strategy: Strategy = Field(
        "output_tokens", description="loss on the answer grids only, or on every token of the prompt too"
    )
    learning_rate: float = Field(1e-4, description=f"LoRA learning rate, clamped to {list(LR_RANGE)}")
    num_train_epochs: int = Field(3, description=f"epochs over the rows, clamped to {list(EPOCH_RANGE)}")

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_").replace(" ", "_")
            key = key.removeprefix("train_using_")
            return {"all": "all_tokens", "output": "output_tokens", "outputs": "output_tokens"}.get(key, key)
        return value

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _clamp_lr(cls, value: Any) -> float:
        lr = _number(value)
        return min(max(lr, LR_RANGE[0]), LR_RANGE[1])

    @field_validator("num_train_epochs", mode="before")
    @classmethod
    def _clamp_epochs(cls, value: Any) -> int:
        epochs = round(_number(value))
        return min(max(epochs, EPOCH_RANGE[0]), EPOCH_RANGE[1])

    def to_text(self) -> str:
        """Canonical JSON, the form to train the generator on in the ReST-EM M-step."""
        return json.dumps(self.model_dump(), separators=(", ", ": "))


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    number = float(value)  # "3e-4" and 3 both fine; "fast" raises ValueError
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


_FIELD_ALIASES = {
    "basic": "basic",
    "use_basic_augmenters": "basic",
    "size": "size",
    "use_size_augmenters": "size",
    "chain": "chain",
    "use_chain_augmenters": "chain",
    "repeat": "repeat",
    "use_repeat_augmenters": "repeat",
    "strategy": "strategy",
    "training_strategy": "strategy",
    "learning_rate": "learning_rate",
    "lr": "learning_rate",
    "num_train_epochs": "num_train_epochs",
    "epochs": "num_train_epochs",
    "num_epochs": "num_train_epochs",
}
# key: value pairs, quoted or not, with JSON or Python literals; used on truncated or sloppy JSON.
_PAIR = re.compile(r"""["']?(\w+)["']?\s*[:=]\s*("[^"\n]*"|'[^'\n]*'|[-+\w.]+)""")


def parse_self_edit(text: str) -> ArcSelfEdit | None:
    """Read a self-edit config from model output; None when nothing usable is in it.

    Finds the first JSON object in surrounding prose (nested objects such as SEAL's
    {"data_generation": {...}, "training": {...}} are flattened, and the official key names
    `use_basic_augmenters`, `lr`, `epochs`, ... are understood). When no complete object
    parses (truncated output, Python literals) it salvages the complete `key: value` pairs.
    Numbers out of range are clamped; a field whose value is unusable takes its default; a
    text with no recognised field gives None.
    """
    if not isinstance(text, str):
        return None
    fields = _known_fields(_first_object(text) or {})
    if not fields:
        fields = _known_fields(dict(_salvage(text)))
    good = {}
    for name, value in fields.items():
        try:
            ArcSelfEdit.model_validate({name: value})
        except ValidationError:
            continue
        good[name] = value
    return ArcSelfEdit.model_validate(good) if good else None


def _first_object(text: str) -> dict | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and _known_fields(value):
            return value
    return None


def _known_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, Mapping):
            for name, inner in _known_fields(value).items():
                found.setdefault(name, inner)
        elif isinstance(key, str) and key.strip().lower() in _FIELD_ALIASES:
            found.setdefault(_FIELD_ALIASES[key.strip().lower()], value)
    return found


def _salvage(text: str) -> list[tuple[str, Any]]:
    literals = {"true": True, "false": False, "yes": True, "no": False, "null": None, "none": None}
    pairs = []
    for key, raw in _PAIR.findall(text):
        if raw[0] in "\"'":
            value: Any = raw[1:-1]
        elif raw.lower() in literals:
            value = literals[raw.lower()]
        else:
            try:
                value = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            except ValueError:
                value = raw
        pairs.append((key, value))
    return pairs


def self_edit_prompt(task: ArcTask) -> list[dict]:
    """Chat messages showing the train pairs and asking for an ArcSelfEdit as JSON."""
    example = ArcSelfEdit().to_text()
    content = (
        f"Training examples of a grid puzzle:\n\n{_examples(task.train)}\n\n"
        "Choose how to fine-tune a model on these examples. Options: basic (add rotated and flipped "
        "copies), size (add enlarged copies), chain (add combined transforms), repeat (add tiled "
        'copies), strategy ("all_tokens" or "output_tokens": train on whole prompts or on answers '
        f"only), learning_rate ({LR_RANGE[0]:g} to {LR_RANGE[1]:g}), num_train_epochs "
        f"({EPOCH_RANGE[0]} to {EPOCH_RANGE[1]}). Reply with JSON only, like:\n{example}"
    )
    return [{"role": "user", "content": content}]


create_self_edit_prompt = self_edit_prompt


# --------------------------------------------------------------------------- grading


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
