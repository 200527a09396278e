"""The augmentations a self-edit turns on: invertible grid ops applied to every train pair."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from posttrain.tasks.arc.grids import (
    GEOMETRIC,
    MAX_SIDE,
    ArcTask,
    Grid,
    Pair,
    grid_to_text,
    rotate,
    tile,
    transpose,
    upscale,
)
from posttrain.tasks.arc.self_edits import ArcSelfEdit

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
