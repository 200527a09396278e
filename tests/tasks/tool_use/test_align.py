"""tool_use as an align task: its prompts, held-out sets from their own seed, the evaluation
runner on an oracle, and the training data the recipe gets."""

from __future__ import annotations

from posttrain.tasks.metrics import Figure
from posttrain.tasks.tool_use import (
    DEFECTS,
    TOOL_SPLITS,
    ToolUseAlign,
    evaluate_tool_use,
    tool_use_first_turns,
    tool_use_system_prompt,
)
from posttrain.tasks.tool_use.pool_align import POOL_SPLITS
from posttrain.toolcall import format_final


def test_compact_prompt_is_shorter_and_lists_every_tool(tiny_tokenizer):
    full = tool_use_system_prompt("heldout", compact=False)
    compact = tool_use_system_prompt("heldout", compact=True)
    assert len(tiny_tokenizer(compact)["input_ids"]) < 0.55 * len(tiny_tokenizer(full)["input_ids"])
    for sig in ("calculator(expression)", "search(query, k?: integer)", "weather(city, date)"):
        assert sig in compact
    assert "from_unit: m|km|" in compact and "to_unit: same" in compact
    assert "Final Answer:" in compact and '"tool"' in compact


def test_eval_sets_are_first_turns_from_the_held_out_seed():
    data = ToolUseAlign().eval_sets(1000, (3, 5), compact=True)
    assert (
        set(data) == {*TOOL_SPLITS, *POOL_SPLITS} == {"indist", "heldout", "seen_families", "unseen_families"}
    )
    for split in POOL_SPLITS:
        assert len(data.pop(split)) == 5
    for split, rows in data.items():
        assert len(rows) == len({r["episode"] for r in rows}) == 3
        prefix = f"tool_use-{TOOL_SPLITS[split]}-1000-"
        assert all(r["step"] == 0 and r["id"].startswith(prefix) for r in rows)
        assert ("unit_converter" in rows[0]["prompt"][0]["content"]) == (split == "heldout")


def test_evaluate_tool_use_scores_first_turns_and_runs_episodes_to_the_end():
    rows = tool_use_first_turns("train", 1000, 4, compact=True)
    by_prompt = {r["prompt"][1]["content"]: r for r in rows}

    def oracle(conversations):  # the gold first turn, then a final answer carrying the gold
        out = []
        for conv in conversations:
            row = by_prompt[conv[1]["content"]]
            if len(conv) == 2:
                out.append(row["completion"])
            else:
                out.append(format_final("Done.", f"The answer is {row['gold_answer']}."))
        return out

    figs, records = evaluate_tool_use(oracle, rows, "train", max_steps=4)
    assert figs["full_compliance"] == Figure(1.0, 4, (1.0, 1.0))
    assert figs["argument_accuracy"].value == 1.0 and figs["tool_choice_accuracy"].value == 1.0
    assert figs["task_accuracy"] == Figure(1.0, 4, (1.0, 1.0))
    assert [r["first_turn"] for r in records] == [r["completion"] for r in rows]


def test_training_data_is_whole_episodes_and_pairs_cover_the_defects():
    data = ToolUseAlign().training_data(
        rows=60, demos=0, val_rows=2, seed=42, compact=True, synthetic_pairs=1000, min_margin=0.2
    )
    assert len(data.sft_val) == 2 and data.sft_train
    conversations = data.sft_train + data.sft_val
    assert all(conv[0] == {"role": "system", "content": data.system} for conv in conversations)
    assert all(conv[-1]["role"] == "assistant" for conv in conversations)
    # The row budget may cut the last episode short; every other one runs to its Final Answer.
    assert sum("Final Answer:" not in conv[-1]["content"] for conv in conversations) <= 1
    # Round robin over defects: the first pairs show every defect once, so any cap covers them evenly.
    defects = [p["defect"] for p in data.synthetic_pairs]
    kinds = set(defects)
    assert kinds <= set(DEFECTS) and len(kinds) >= 5
    assert set(defects[: len(kinds)]) == kinds
    assert data.train_outcomes == []


def test_pool_rows_join_sft_with_their_own_system_prompt_and_pairs_alternate_sources():
    data = ToolUseAlign().training_data(
        rows=30, demos=0, val_rows=0, seed=42, compact=True, synthetic_pairs=40, min_margin=0.2, pool_rows=20
    )
    pool = [c for c in data.sft_train if c[0]["content"] != data.system]
    assert len(pool) == 20 and all("    " in c[0]["content"] for c in pool)  # every parameter in full
    sources = ["pool" if p["id"].startswith("pool-") else "react" for p in data.synthetic_pairs]
    assert sources[:6] == ["pool", "react"] * 3 and sources.count("pool") == 20
