"""mini-ARC: an offline generator of small ARC tasks, each under one hidden transformation.

The rule is a rotation, flip, transpose, colour map, 2x tiling or a composition of two.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from posttrain.tasks.arc.grids import (
    GEOMETRIC,
    MAX_SIDE,
    ArcTask,
    Grid,
    Pair,
    color_permute,
    grid_to_text,
    tile,
)

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
