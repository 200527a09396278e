from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from posttrain.errors import DataError
from posttrain.tasks import arc as a


def grids(max_side: int = 8):
    return st.integers(1, max_side).flatmap(
        lambda h: st.integers(1, max_side).flatmap(
            lambda w: st.lists(st.lists(st.integers(0, 9), min_size=w, max_size=w), min_size=h, max_size=h)
        )
    )


G = [[1, 2, 3], [4, 5, 6]]


# ------------------------------------------------------------------ grid operations


def test_operations_on_a_known_grid():
    assert a.rotate(G, 1) == [[3, 6], [2, 5], [1, 4]]  # counter-clockwise
    assert a.rotate(G, 2) == [[6, 5, 4], [3, 2, 1]]
    assert a.rotate(G, -1) == a.rotate(G, 3) == [[4, 1], [5, 2], [6, 3]]
    assert a.flip(G, 0) == [[4, 5, 6], [1, 2, 3]]
    assert a.flip(G, 1) == [[3, 2, 1], [6, 5, 4]]
    assert a.transpose(G) == [[1, 4], [2, 5], [3, 6]]
    assert a.color_permute(G, {1: 2, 2: 1}) == [[2, 1, 3], [4, 5, 6]]
    assert a.upscale([[1, 2]], 2, 2) == [[1, 1, 2, 2], [1, 1, 2, 2]]
    assert a.upscale([[1, 2]], 2, 1) == [[1, 2], [1, 2]]
    assert a.tile([[1, 2]], 2, 2) == [[1, 2, 1, 2], [1, 2, 1, 2]]
    assert all(type(v) is int for row in a.rotate(G, 1) for v in row)  # plain ints, not numpy


def test_bad_operation_arguments():
    with pytest.raises(ValueError):
        a.flip(G, 2)
    with pytest.raises(ValueError):
        a.color_permute(G, [0, 1, 2])
    with pytest.raises(ValueError):
        a.color_permute(G, {1: 2})  # 2 -> 2 as well: not a permutation


@settings(max_examples=60, deadline=None)
@given(grids())
def test_four_quarter_turns_are_the_identity(g):
    turned = g
    for _ in range(4):
        turned = a.rotate(turned, 1)
    assert turned == g
    assert a.rotate(a.rotate(g, 1), 3) == g
    assert a.rotate(g, 1) == a.flip(a.transpose(g), 0)


@settings(max_examples=60, deadline=None)
@given(grids())
def test_flips_and_transpose_are_involutions(g):
    assert a.flip(a.flip(g, 0), 0) == g
    assert a.flip(a.flip(g, 1), 1) == g
    assert a.transpose(a.transpose(g)) == g
    assert a.flip(a.flip(g, 0), 1) == a.rotate(g, 2)


@settings(max_examples=60, deadline=None)
@given(grids(), st.permutations(list(range(10))))
def test_colour_permutation_then_inverse_is_identity(g, perm):
    inverse = [0] * 10
    for src, dst in enumerate(perm):
        inverse[dst] = src
    assert a.color_permute(a.color_permute(g, perm), inverse) == g


@settings(max_examples=100, deadline=None)
@given(grids(max_side=30))
def test_grid_text_round_trip(g):
    text = a.grid_to_text(g)
    assert a.text_to_grid(text) == g
    assert a.text_to_grid(f"Output:\n```\n{text}\n```\nDone.") == g


@pytest.mark.parametrize(
    ("text", "grid"),
    [
        ("12\n34", [[1, 2], [3, 4]]),
        ("Here it is:\n1 2\n3 4\n\nthat's all 5", [[1, 2], [3, 4]]),
        ("1,2\n3,4", [[1, 2], [3, 4]]),
        ("[1, 2]\n[3, 4]", [[1, 2], [3, 4]]),
        ("The grid is [[1, 2], [3, 4]].", [[1, 2], [3, 4]]),
        ("12\n345", None),  # ragged
        ("[[1, 2], [3, 14]]", None),  # 14 is not a colour
        ("[[1, 2], [3, 4", None),  # truncated JSON
        ("no grid here", None),
        ("", None),
    ],
)
def test_text_to_grid_robust_parse(text, grid):
    assert a.text_to_grid(text) == grid


def test_exact_match_grid():
    target = [[1, 2], [3, 4]]
    assert a.exact_match_grid("12\n34", target)
    assert a.exact_match_grid("```\n1 2\n3 4\n```", target)
    assert not a.exact_match_grid("12\n35", target)
    assert not a.exact_match_grid("12\n34\n56", target)
    assert not a.exact_match_grid("12", target)
    assert not a.exact_match_grid("I cannot solve this", target)


# ------------------------------------------------------------------ reader

TASK = {
    "train": [
        {"input": [[1, 0], [0, 2]], "output": [[0, 1], [2, 0]]},
        {"input": [[3, 3], [0, 1]], "output": [[3, 3], [1, 0]]},
    ],
    "test": [{"input": [[5, 0], [0, 0]], "output": [[0, 5], [0, 0]]}],
}


def test_read_arc_single_task_file_dict_file_and_directory(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b2.json").write_text(json.dumps(TASK))
    (tmp_path / "dir" / "a1.json").write_text(json.dumps(TASK))
    (tmp_path / "dir" / "notes.txt").write_text("ignored")
    tasks = a.read_arc(tmp_path / "dir")
    assert [t.id for t in tasks] == ["a1", "b2"]
    assert tasks[0].train[1] == ([[3, 3], [0, 1]], [[3, 3], [1, 0]])
    assert tasks[0].test == [([[5, 0], [0, 0]], [[0, 5], [0, 0]])]
    assert tasks[0].transform is None

    many = tmp_path / "many.json"
    many.write_text(json.dumps({"x": TASK, "y": TASK}))
    assert [t.id for t in a.read_arc(many)] == ["x", "y"]


def test_read_arc_with_separate_solutions(tmp_path):
    challenge = {"t1": {"train": TASK["train"], "test": [{"input": [[5, 0], [0, 0]]}]}}
    (tmp_path / "challenges.json").write_text(json.dumps(challenge))
    (tmp_path / "solutions.json").write_text(json.dumps({"t1": [[[0, 5], [0, 0]]]}))
    tasks = a.read_arc(tmp_path / "challenges.json", solutions=tmp_path / "solutions.json")
    assert tasks[0].test == [([[5, 0], [0, 0]], [[0, 5], [0, 0]])]
    with pytest.raises(DataError, match=r"test\[0\]\.output\" is missing \(test outputs kept in a separate"):
        a.read_arc(tmp_path / "challenges.json")
    (tmp_path / "solutions.json").write_text(json.dumps({"other": []}))
    with pytest.raises(DataError, match="has no test output 0 for task 't1'"):
        a.read_arc(tmp_path / "challenges.json", solutions=tmp_path / "solutions.json")


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        (
            '{"train": [\n  {"input": [[1, 2], [3]], "output": [[1]]}\n], "test": []}',
            2,
            "train[0].input[1]",
            "has 1 cells but row 0 has 2",
        ),
        (
            '{"train": [\n  {"input": [[1, 2]],\n   "output": [[1, 12]]}\n], "test": []}',
            3,
            "train[0].output[0][1]",
            "is 12, expected an integer 0-9",
        ),
        ('{"train": [\n  {"input": [[1]]}\n], "test": []}', 2, "train[0].output", "is missing"),
        ('{"train": [\n  {"input": [[1]], "output": [[true]]}\n]}', 2, "train[0].output[0][0]", "is true"),
        ('{"train": [{"input": [[1]], "output": [[2]]}]}', 1, "test", "is missing"),
        ('{"train": [{"input": [[1]], "output": [[2]]}], "test": []}', 1, "test", "non-empty list"),
        (
            '{"train": [{"input": [], "output": [[2]]}], "test": []}',
            1,
            "train[0].input",
            "non-empty list of rows",
        ),
        (
            '{"abc": {"train": [\n{"input": [[1]], "output": "12"}], "test": []}}',
            2,
            "abc.train[0].output",
            "rows",
        ),
        ("[1, 2]", 1, None, "expected an ARC task"),
    ],
)
def test_read_arc_bad_files(tmp_path, text, line, field, fragment):
    path = tmp_path / "task.json"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        a.read_arc(path)
    assert (err.value.line, err.value.field) == (line, field)
    assert str(err.value).startswith(f"{path}:{line}:")
    assert fragment in str(err.value)


def test_read_arc_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        a.read_arc(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .json files"):
        a.read_arc(tmp_path / "empty")


# ------------------------------------------------------------------ mini-ARC generator


def _colour_map_of(pairs, geometric_steps):
    """The colour mapping that explains every pair after the geometric steps, or None."""
    mapping = {}
    for grid_in, grid_out in pairs:
        moved = a.apply_transform(geometric_steps, grid_in)
        if len(moved) != len(grid_out) or len(moved[0]) != len(grid_out[0]):
            return None
        for row_in, row_out in zip(moved, grid_out, strict=True):
            for c_in, c_out in zip(row_in, row_out, strict=True):
                if mapping.setdefault(c_in, c_out) != c_out:
                    return None
    return mapping


def test_mini_arc_is_deterministic_and_well_formed():
    tasks = a.generate_mini_arc(120, seed=0)
    assert tasks == a.generate_mini_arc(120, seed=0)
    assert [t.train for t in tasks] != [t.train for t in a.generate_mini_arc(120, seed=1)]
    assert len({t.id for t in tasks}) == 120
    for t in tasks:
        assert 3 <= len(t.train) <= 4 and len(t.test) == 1
        inputs = [p[0] for p in t.train + t.test]
        assert len({a.grid_to_text(g) for g in inputs}) == len(inputs)
        for grid_in, grid_out in t.train + t.test:
            assert 2 <= len(grid_in) <= 5 and 2 <= len(grid_in[0]) <= 5
            assert grid_in != grid_out
            assert all(0 <= v <= 9 for g in (grid_in, grid_out) for row in g for v in row)


def test_mini_arc_pairs_follow_their_hidden_transform():
    tasks = a.generate_mini_arc(200, seed=3)
    seen = {t.transform for t in tasks}
    assert {"+".join(s) for s in a.SINGLE_SPECS} <= seen  # every single rule appears
    assert len(seen & {"+".join(s) for s in a.COMPOSED_SPECS}) >= 8  # and many compositions
    for t in tasks:
        steps = t.transform.split("+")
        pairs = t.train + t.test
        if "color_map" not in steps:
            assert all(a.apply_transform(steps, i) == o for i, o in pairs)
            continue
        mapping = _colour_map_of(pairs, [s for s in steps if s != "color_map"])
        assert mapping is not None, t.id
        changed = {c: d for c, d in mapping.items() if c != d}
        assert changed and sorted(changed) == sorted(changed.values())  # a permutation of task colours


def test_mini_arc_size_range_and_validation():
    for t in a.generate_mini_arc(30, seed=4, size_range=(3, 3)):
        assert all(len(i) == 3 and len(i[0]) == 3 for i, _ in t.train + t.test)
    with pytest.raises(ValueError):
        a.generate_mini_arc(1, seed=0, size_range=(0, 3))


# ------------------------------------------------------------------ augmentations


def _task(transform: str, seed: int = 0) -> a.ArcTask:
    return next(t for t in a.generate_mini_arc(300, seed=seed) if t.transform == transform)


ALL_FLAGS = {"basic": True, "size": True, "chain": True, "repeat": True}


def test_augment_task_without_flags_is_the_original():
    t = _task("rot90")
    assert a.augment_task(t, {}) == [t.train]
    assert a.augment_task(t, {"basic": False, "size": False}) == [t.train]


def test_augmented_flip_pairs_are_flip_pairs():
    # flip_h commutes with itself, flip_v and rot180; conjugated by rot90 it becomes flip_v.
    t = _task("flip_h")
    groups = a.augment_task(t, {"basic": True})
    assert len(groups) == 7
    by_op = dict(zip(["original", *a.AUGMENTATIONS["basic"]], groups, strict=True))
    for name in ("original", "flip_h", "flip_v", "rot180"):
        assert all(o == a.flip(i, 1) for i, o in by_op[name]), name
    for name in ("rot90", "rot270", "transpose"):
        assert all(o == a.flip(i, 0) for i, o in by_op[name]), name


def test_augmented_rotation_pairs_follow_the_conjugated_rotation():
    # flip_v . rot90 . flip_v = rot270: a mirrored rotation turns the other way
    t = _task("rot90")
    by_op = dict(
        zip(["original", *a.AUGMENTATIONS["basic"]], a.augment_task(t, {"basic": True}), strict=True)
    )
    assert all(o == a.rotate(i, 1) for i, o in by_op["rot180"])
    assert all(o == a.rotate(i, 3) for i, o in by_op["flip_v"])
    assert all(o == a.rotate(i, 3) for i, o in by_op["transpose"])


def test_every_flag_keeps_a_rot180_task_a_rot180_task():
    # rot180 commutes with every op of every family, so all groups obey the original rule
    t = _task("rot180")
    groups = a.augment_task(t, ALL_FLAGS)
    n_ops = sum(len(ops) for ops in a.AUGMENTATIONS.values())
    assert len(groups) == 1 + n_ops
    for group in groups:
        assert len(group) == len(t.train)
        assert all(o == a.rotate(i, 2) for i, o in group)
    assert {a.grid_to_text(g[0][0]) for g in groups} != {a.grid_to_text(t.train[0][0])}


def test_every_flag_keeps_a_colour_map_task_consistent():
    t = _task("color_map")
    mapping = _colour_map_of(t.train, [])
    for group in a.augment_task(t, ALL_FLAGS):
        assert all(o == a.color_permute(i, mapping) for i, o in group)


def test_augment_task_respects_max_side_and_drops_duplicate_groups():
    t = a.ArcTask(
        "sym",
        [([[1, 2, 1], [3, 0, 3]], [[2, 1, 2], [0, 3, 0]]), ([[4, 0, 4]], [[0, 4, 0]])],
        [([[1, 1, 1]], [[2, 2, 2]])],
    )
    groups = a.augment_task(t, {"basic": True})
    keys = [a.grid_to_text(g[0][0]) + a.grid_to_text(g[1][0]) for g in groups]
    assert len(keys) == len(set(keys))
    # every grid equals its mirror image (g == flip_h g), so op and op . flip_h give the same group:
    # {id, flip_h}, {rot180, flip_v}, {rot90, transpose}, {rot270, anti-transpose} -> 4 distinct groups
    assert len(groups) == 4
    assert groups[1] == [(a.rotate(i, 1), a.rotate(o, 1)) for i, o in t.train]

    big = _task("tile2x")
    small = a.augment_task(big, ALL_FLAGS, max_side=8)
    assert small[0] == big.train  # the original is kept whatever its size
    assert all(len(g) <= 8 and len(g[0]) <= 8 for group in small[1:] for pair in group for g in pair)
    assert len(small) < len(a.augment_task(big, ALL_FLAGS))


def test_augment_task_accepts_a_self_edit_and_rejects_unknown_flags():
    t = _task("transpose")
    edit = a.ArcSelfEdit(basic=False, size=True)
    assert a.augment_task(t, edit) == a.augment_task(t, {"size": True})
    with pytest.raises(ValueError, match="unknown augmentation flags"):
        a.augment_task(t, {"rotate": True})


# ------------------------------------------------------------------ prompts and training rows


def test_task_prompt_shows_demos_and_test_input_but_not_the_answer():
    t = _task("flip_v")
    content = a.task_prompt(t.train, t.test[0][0])[0]["content"]
    for grid_in, grid_out in t.train:
        assert f"Input:\n{a.grid_to_text(grid_in)}\nOutput:\n{a.grid_to_text(grid_out)}" in content
    assert content.endswith(f"Input:\n{a.grid_to_text(t.test[0][0])}\nOutput:")
    assert a.grid_to_text(t.test[0][1]) not in content


def test_training_rows_leave_one_out():
    t = _task("rot270")
    groups = a.augment_task(t, {"basic": True})
    rows = a.training_rows(groups, "output_tokens")
    assert len(rows) == sum(len(g) for g in groups)
    k = len(t.train)
    for i, row in enumerate(rows[:k]):
        assert set(row) == {"prompt", "completion"}
        assert row["completion"] == [{"role": "assistant", "content": a.grid_to_text(t.train[i][1])}]
        assert row["prompt"] == a.task_prompt(t.train[:i] + t.train[i + 1 :], t.train[i][0])
        assert row["prompt"][0]["content"].count("Input:") == k

    full = a.training_rows(groups, "all_tokens")
    assert len(full) == len(rows)
    for row, po in zip(full, rows, strict=True):
        assert set(row) == {"messages"}
        assert row["messages"] == po["prompt"] + po["completion"]


def test_training_rows_flat_pairs_max_rows_and_bad_strategy():
    t = _task("transpose")
    assert a.training_rows(t.train, "output_tokens") == a.training_rows([t.train], "output_tokens")
    groups = a.augment_task(t, ALL_FLAGS)
    every = a.training_rows(groups, "output_tokens")
    some = a.training_rows(groups, "output_tokens", max_rows=10, seed=1)
    assert len(some) == 10
    assert some == a.training_rows(groups, "output_tokens", max_rows=10, seed=1)
    assert [every.index(r) for r in some] == sorted(every.index(r) for r in some)
    with pytest.raises(ValueError):
        a.training_rows(groups, "some_tokens")  # type: ignore[arg-type]


# ------------------------------------------------------------------ self-edit configs


def test_self_edit_clamps_and_aliases():
    e = a.ArcSelfEdit(learning_rate=1.0, num_train_epochs=50)
    assert (e.learning_rate, e.num_train_epochs) == (1e-2, 10)
    e = a.ArcSelfEdit(learning_rate=1e-9, num_train_epochs=0)
    assert (e.learning_rate, e.num_train_epochs) == (1e-5, 1)
    assert a.ArcSelfEdit(num_train_epochs=2.6).num_train_epochs == 3
    assert a.ArcSelfEdit(strategy="train_using_all_tokens").strategy == "all_tokens"
    with pytest.raises(ValidationError):
        a.ArcSelfEdit(momentum=0.9)
    with pytest.raises(ValidationError):
        a.ArcSelfEdit(learning_rate=float("nan"))


def test_parse_self_edit_in_prose():
    text = (
        "Sure! Based on the examples {they look rotated} I suggest:\n"
        '```json\n{"basic": true, "size": true, "chain": false, "repeat": false, '
        '"strategy": "all_tokens", "learning_rate": 0.0005, "num_train_epochs": 4}\n```\nHope it helps.'
    )
    assert a.parse_self_edit(text) == a.ArcSelfEdit(
        basic=True,
        size=True,
        chain=False,
        repeat=False,
        strategy="all_tokens",
        learning_rate=5e-4,
        num_train_epochs=4,
    )


def test_parse_self_edit_truncated_keeps_complete_fields():
    e = a.parse_self_edit('{"basic": false, "size": true, "chain": true, "repeat": true, "strategy": "all_to')
    assert (e.basic, e.size, e.chain, e.repeat) == (False, True, True, True)
    assert e.strategy == "output_tokens"  # the cut-off value falls back to the default


def test_parse_self_edit_out_of_range_and_bad_values():
    e = a.parse_self_edit('{"learning_rate": 5, "num_train_epochs": 100}')
    assert (e.learning_rate, e.num_train_epochs, e.basic) == (1e-2, 10, True)
    e = a.parse_self_edit('{"basic": false, "learning_rate": "fast", "strategy": "everything"}')
    assert (e.basic, e.learning_rate, e.strategy) == (False, 1e-4, "output_tokens")


def test_parse_self_edit_official_nested_keys_and_python_literals():
    official = {
        "data_generation": {
            "use_basic_augmenters": False,
            "use_size_augmenters": True,
            "use_chain_augmenters": False,
            "use_repeat_augmenters": True,
        },
        "training": {"strategy": "train_using_output_tokens", "learning_rate": 3e-3, "num_train_epochs": 2},
    }
    e = a.parse_self_edit(json.dumps(official))
    assert e == a.ArcSelfEdit(
        basic=False,
        size=True,
        chain=False,
        repeat=True,
        strategy="output_tokens",
        learning_rate=3e-3,
        num_train_epochs=2,
    )
    e = a.parse_self_edit("{'basic': True, 'size': False, 'lr': 2e-3, 'epochs': 5}")
    assert (e.basic, e.size, e.learning_rate, e.num_train_epochs) == (True, False, 2e-3, 5)


@pytest.mark.parametrize(
    "text", ["", "hello world", "{}", '{"foo": 1}', "[1, 2, 3]", "The weather is: nice", None]
)
def test_parse_self_edit_garbage_is_none(text):
    assert a.parse_self_edit(text) is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_self_edit_never_raises(text):
    result = a.parse_self_edit(text)
    assert result is None or isinstance(result, a.ArcSelfEdit)


def test_self_edit_round_trip_and_prompt():
    edit = a.ArcSelfEdit(
        basic=False, chain=True, strategy="all_tokens", learning_rate=2e-4, num_train_epochs=7
    )
    assert a.parse_self_edit(edit.to_text()) == edit
    t = _task("rot90")
    content = a.self_edit_prompt(t)[0]["content"]
    assert a.grid_to_text(t.train[0][0]) in content
    assert a.grid_to_text(t.test[0][0]) not in content
    assert a.parse_self_edit(content) == a.ArcSelfEdit()  # the example in the prompt parses to the defaults
    assert a.create_self_edit_prompt(t) == a.self_edit_prompt(t)


# ------------------------------------------------------------------ grading


def test_grade_and_evaluate():
    tasks = a.generate_mini_arc(6, seed=8)
    answers = {a.grid_to_text(t.test[0][0]): a.grid_to_text(t.test[0][1]) for t in tasks}
    calls = []

    def oracle(prompts):
        calls.append(len(prompts))
        return [answers[p[0]["content"].rsplit("Input:\n", 1)[1].removesuffix("\nOutput:")] for p in prompts]

    result = a.evaluate(oracle, tasks)
    assert calls == [6]
    assert (result["accuracy"], result["n_solved"], result["n_tasks"]) == (1.0, 6, 6)

    # echoing the test input never solves a task (outputs always differ from inputs)
    echo = a.evaluate(lambda ps: [p[0]["content"].rsplit("Input:\n", 1)[1] for p in ps], tasks)
    assert echo["accuracy"] == 0.0

    preds = [a.grid_to_text(t.test[0][1]) if i % 3 == 0 else "0" for i, t in enumerate(tasks)]
    graded = a.grade(preds, tasks)
    assert graded["accuracy"] == pytest.approx(2 / 6)
    assert [r["solved"] for r in graded["per_task"]] == [True, False, False, True, False, False]
    lo, hi = graded["ci"]
    assert lo <= 2 / 6 <= hi
    with pytest.raises(ValueError, match="got 5 predictions for 6 test inputs"):
        a.grade(preds[:5], tasks)
