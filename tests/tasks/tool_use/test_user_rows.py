"""Rows for a user's own tools: calls built from the specs score full marks, no-call rows offer
only the user's tools, and `posttrain data tool-use` writes pool and user rows that `posttrain
eval --data` reads as they are."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.pipelines.data import write_tool_use
from posttrain.tasks.tool_use import ToolUseAlign, read_eval_items
from posttrain.tasks.tool_use.pool_pairs import pool_item, pool_reward
from posttrain.tasks.tool_use.scoring import NO_CALL
from posttrain.tasks.tool_use.user_eval import score_reply
from posttrain.tasks.tool_use.user_rows import user_tool_rows
from posttrain.toolcall import load_tools

SPECS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_invoice",
            "description": "Email an invoice to a customer.",
            "parameters": {
                "type": "object",
                "properties": {
                    "customer_email": {"type": "string", "description": "Where to send it"},
                    "amount": {"type": "number", "minimum": 1, "maximum": 10000, "description": "Amount due"},
                    "items": {"type": "array", "items": {"type": "string"}, "description": "Line items"},
                },
                "required": ["customer_email", "amount"],
            },
        },
    },
]


def _tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(SPECS))
    return path


def test_user_rows_call_the_users_tools_and_gold_turns_score_full_marks(tmp_path):
    tools = load_tools(_tools_file(tmp_path))
    rows = user_tool_rows(tools, 200, seed=3)
    assert rows == user_tool_rows(tools, 200, seed=3)
    calls = [r for r in rows if r["gold"] != NO_CALL]
    assert {r["function"] for r in calls} == {"get_weather", "send_invoice"}
    assert 0.05 < 1 - len(calls) / len(rows) < 0.2
    for row in rows:
        assert {s["function"]["name"] for s in row["tools"]} == {"get_weather", "send_invoice"}
        s = score_reply(row["completion"], pool_item(row))
        assert s["format_validity"] and pool_reward(row["completion"], row) == 1.0
    for row in calls:  # every value the call holds is written in the request
        ((_, args),) = row["gold"][0].items()
        for values in args.values():
            if values != [""] and not isinstance(values[0], list | bool):
                assert str(values[0]) in row["messages"][0]["content"]


def test_data_cli_writes_pool_and_user_rows_that_eval_reads(tmp_path):
    unseen = write_tool_use(tmp_path / "unseen.jsonl", 20, 1, "heldout", source="pool")
    mine = write_tool_use(tmp_path / "mine.jsonl", 10, 1, "train", tools=_tools_file(tmp_path))
    assert len(read_eval_items(unseen)) == 20 and len(read_eval_items(mine)) == 10
    assert all(json.loads(line)["split"] == "user" for line in mine.read_text().splitlines())


def test_align_training_data_takes_the_users_tools(tmp_path):
    data = ToolUseAlign().training_data(
        rows=20,
        demos=0,
        val_rows=0,
        seed=42,
        compact=True,
        synthetic_pairs=10,
        min_margin=0.2,
        user_tools=load_tools(_tools_file(tmp_path)),
        user_rows=12,
    )
    mine = [c for c in data.sft_train if "send_invoice" in c[0]["content"]]
    assert len(mine) == 12
    assert any(p["id"].startswith("user-") for p in data.synthetic_pairs)
