"""The function pool and its rows: family files, the family split, masking, irrelevance, gold
self-scoring, defects and on-policy pairs on tiny-random."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from posttrain.errors import DataError
from posttrain.inference import generator
from posttrain.models import load_for_inference
from posttrain.tasks.episodes import on_policy_pairs
from posttrain.tasks.tool_use import pool as pool_module
from posttrain.tasks.tool_use.pool import (
    HELDOUT_FAMILIES,
    VALIDATION_FAMILIES,
    load_pool,
    pool_functions,
    value_text,
)
from posttrain.tasks.tool_use.pool_align import pool_rollout_prompts, pool_rollouts
from posttrain.tasks.tool_use.pool_pairs import CALL_DEFECTS, pool_defect, pool_item, pool_reward
from posttrain.tasks.tool_use.pool_rows import pool_conversation, pool_rows
from posttrain.tasks.tool_use.scoring import NO_CALL
from posttrain.tasks.tool_use.user_eval import score_reply


def test_the_pool_is_large_varied_and_split_by_family():
    pool = load_pool()
    functions = [fn for fns in pool.values() for fn in fns]
    assert len(pool) >= 30 and len(functions) >= 200
    assert set(HELDOUT_FAMILIES) <= set(pool) and set(VALIDATION_FAMILIES) <= set(pool)
    train, heldout, val = (pool_functions(s) for s in ("train", "heldout", "validation"))
    assert {f.family for f in heldout} == set(HELDOUT_FAMILIES)
    assert {f.family for f in val} == set(VALIDATION_FAMILIES)
    assert {f.family for f in train}.isdisjoint({*HELDOUT_FAMILIES, *VALIDATION_FAMILIES})
    assert len(train) + len(heldout) + len(val) == len(functions)
    types = {p.schema["type"] for fn in functions for p in fn.params}
    assert types == {"string", "integer", "number", "boolean", "array"}
    assert any("enum" in p.schema for fn in functions for p in fn.params)
    assert any(p.optional and "default" in p.schema for fn in functions for p in fn.params)


@pytest.mark.parametrize("split", ["heldout", "validation"])
def test_no_training_function_name_reaches_a_held_out_row(split):
    train_names = {n for fn in pool_functions("train") for n in (fn.name, *fn.aliases)}
    families = HELDOUT_FAMILIES if split == "heldout" else VALIDATION_FAMILIES
    for row in pool_rows(400, 3, split):
        offered = {spec["function"]["name"] for spec in row["tools"]}
        assert offered.isdisjoint(train_names), row["id"]
        assert row["family"] in families


def test_masking_renames_functions_and_parameters_and_the_gold_follows():
    rows = [r for r in pool_rows(400, 0, "train") if r["gold"] != NO_CALL]
    renamed = [r for r in rows if r["function"] not in {s["function"]["name"] for s in r["tools"]}]
    assert 0.2 < len(renamed) / len(rows) < 0.5  # mask=0.35
    for row in renamed:
        ((gold_name, gold_args),) = row["gold"][0].items()
        spec = next(s["function"] for s in row["tools"] if s["function"]["name"] == gold_name)
        assert set(gold_args) == set(spec["parameters"]["properties"])
    names = [n for r in rows for s in r["tools"] for n in s["function"]["parameters"]["properties"]]
    assert any(n.startswith("arg") for n in names)


def test_irrelevance_rows_offer_no_tool_of_the_requests_family():
    rows = pool_rows(500, 1, "train")
    none = [r for r in rows if r["gold"] == NO_CALL]
    assert 0.07 < len(none) / len(rows) < 0.18
    family_of = {n: fn.family for fn in pool_functions("train") for n in (fn.name, *fn.aliases)}
    for row in none:
        for spec in row["tools"]:
            assert family_of.get(spec["function"]["name"]) != row["family"]
    assert all(1 <= len(r["tools"]) <= 4 for r in rows)
    assert any(r["follow_up"] for r in rows)


def test_a_twin_asks_the_same_as_its_call_row_without_its_family_and_leaves_other_rows_alone():
    plain, with_twins = pool_rows(200, 3, "train"), pool_rows(200, 3, "train", twins=0.5)
    by_id = {r["id"]: r for r in with_twins}
    twins = [r for r in with_twins if r["id"].endswith("-twin")]
    assert 0.3 < len(twins) / len(plain) < 0.6
    family_of = {n: fn.family for fn in pool_functions("train") for n in (fn.name, *fn.aliases)}
    for twin in twins:
        original = by_id[twin["id"].removesuffix("-twin")]
        assert original["gold"] != NO_CALL and twin["gold"] == NO_CALL and twin["follow_up"] is None
        assert twin["messages"] == original["messages"] and twin["family"] == original["family"]
        assert all(family_of.get(s["function"]["name"]) != twin["family"] for s in twin["tools"])
    # the first row of each seed is drawn the same way, and 0 twins is the plain generator
    assert with_twins[0] == plain[0] and pool_rows(200, 3, "train", twins=0.0) == plain


def test_requests_mention_every_value_the_gold_call_holds():
    for row in pool_rows(300, 2, "train"):
        if row["gold"] == NO_CALL:
            continue
        ((_, args),) = row["gold"][0].items()
        text = row["messages"][0]["content"]
        for values in args.values():
            if len(values) == 1 and not isinstance(values[0], bool):
                assert value_text(values[0]) in text, (row["id"], values, text)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_gold_turns_score_full_marks_and_rows_are_deterministic(split):
    rows = pool_rows(200, 4, split)
    assert rows == pool_rows(200, 4, split)
    for row in rows:
        s = score_reply(row["completion"], pool_item(row))
        assert s["format_validity"] and s["thought_prefix_rate"]
        if row["gold"] == NO_CALL:
            assert s["irrelevance_accuracy"] is True and s["ast_accuracy"] is None
        else:
            assert s["ast_accuracy"] and s["function_name_accuracy"] and s["must_call_rate"]
            assert s["hallucinated_function_rate"] is False
        assert pool_reward(row["completion"], row) == 1.0


def test_every_defect_scores_below_the_gold_turn():
    rng = random.Random(0)
    seen = set()
    for row in pool_rows(300, 5, "train"):
        defect, rejected = pool_defect(row, rng)
        seen.add(defect)
        assert pool_reward(rejected, row) < pool_reward(row["completion"], row), (defect, rejected)
    assert seen == {*CALL_DEFECTS, "called_anyway"}


def test_sft_conversation_carries_every_description_and_the_follow_up():
    row = next(r for r in pool_rows(200, 6, "train") if r["follow_up"])
    turns = pool_conversation(row)
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant"]
    for spec in row["tools"]:
        fn = spec["function"]
        assert fn["description"] in turns[0]["content"]
        for p in fn["parameters"]["properties"].values():
            assert p["description"] in turns[0]["content"]
    assert turns[3]["content"].startswith("Observation: ")


def test_a_bad_family_file_names_the_file_and_field(tmp_path: Path, monkeypatch):
    (tmp_path / "finance.yaml").write_text(
        "family: finance\nfunctions:\n  - name: f\n    description: d\n    parameters:\n"
        "      x: {type: integer, description: an x, values: int 1 9}\n"
        "    prompts: ['do it with {y}']\n"
    )
    with pytest.raises(DataError, match=r"finance.yaml: field \"functions.f.prompts\[0\]\" names \{y\}"):
        load_pool(tmp_path)
    (tmp_path / "finance.yaml").write_text("family: money\nfunctions: []\n")
    load_pool.cache_clear()
    with pytest.raises(DataError, match=r'finance.yaml: field "family" must be \'finance\''):
        load_pool(tmp_path)
    monkeypatch.setattr(pool_module, "POOL_DIR", tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no tool family files"):
        pool_functions("train")


def test_on_policy_pairs_from_pool_rollouts_on_tiny_random(tiny_spec: str):
    prompts = pool_rollout_prompts(4, 1)
    llm, tok = load_for_inference(tiny_spec, None)
    sampled = generator(llm, tok, 24, 4, (0.8, 0.95))
    traces = pool_rollouts(prompts, sampled, "sample")
    assert [t["prompt_id"] for t in traces] == [p["id"] for p in prompts]
    assert all(t["reward"]["total"] <= 0.0 for t in traces)  # random weights write no format

    def gold(conversations):  # a scripted policy that writes each row's gold turn
        by_prompt = {p["prompt"][-1]["content"]: p["pool_row"]["completion"] for p in prompts}
        return [by_prompt[c[-1]["content"]] for c in conversations]

    pairs = on_policy_pairs(traces + pool_rollouts(prompts, gold, "gold"), min_margin=0.5, limit=10)
    assert len(pairs) == len(prompts)
    for pair in pairs:
        assert pair["chosen_reward"] == 1.0 and pair["margin"] >= 1.0
        assert pair["rejected"][0]["content"] != pair["chosen"][0]["content"]


def test_repeated_prompts_keep_their_own_samples():
    """The rollout stage passes each prompt k - 1 times for sampling: every copy keeps its reply."""
    from posttrain.tasks.tool_use import ToolUseAlign

    prompts = pool_rollout_prompts(2, 3)
    again = [p for p in prompts for _ in range(3)]
    replies = iter(f"Final Answer: sample {i}" for i in range(len(again)))
    traces = ToolUseAlign().rollouts(again, lambda convs: [next(replies) for _ in convs], 2, "sample")
    assert [t["messages"][0]["content"] for t in traces] == [f"Final Answer: sample {i}" for i in range(6)]
