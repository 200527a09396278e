"""ARC grids and tasks: the grid operations everything else is built from, and grid <-> text.

Grids are `list[list[int]]` with values 0-9; every function here returns fresh lists of
Python ints, never numpy arrays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Grid = list[list[int]]
Pair = tuple[Grid, Grid]

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


# The dihedral ops by name: mini-ARC's hidden rules and the "basic" augmentations both draw on them.
GEOMETRIC: dict[str, Callable[[Grid], Grid]] = {
    "rot90": lambda g: rotate(g, 1),
    "rot180": lambda g: rotate(g, 2),
    "rot270": lambda g: rotate(g, 3),
    "flip_v": lambda g: flip(g, 0),
    "flip_h": lambda g: flip(g, 1),
    "transpose": transpose,
}


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
        return value if is_grid(value) else None
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


def is_grid(value: Any) -> bool:
    """True for a non-empty rectangular list of lists of ints 0-9 (bools are not cells)."""
    if not isinstance(value, list) or not value:
        return False
    if not all(isinstance(row, list) and row and len(row) == len(value[0]) for row in value):
        return False
    return all(type(c) is int and 0 <= c <= 9 for row in value for c in row)
