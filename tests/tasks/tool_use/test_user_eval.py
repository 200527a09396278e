"""tool_use on a user's own rows: reading BFCL-shaped gold (errors with file:line and field), the
prompt each row gets, and the figures: gold replies score full marks, wrong ones lose exactly where
they should."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import DataError
from posttrain.tasks.tool_use import (
    NO_CALL,
    USER_EVAL_METRICS,
    read_eval_items,
    user_eval_conversations,
    user_eval_figures,
)
from posttrain.tasks.tool_use.user_eval import gold_turn
from posttrain.toolcall import Tool, format_call, format_final, format_system_prompt

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
ROOTS = {
    "type": "function",
    "function": {
        "name": "algebra.quadratic_roots",
        "description": "Roots of a x^2 + b x + c.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}, "c": {"type": "number"}},
            "required": ["a", "b", "c"],
        },
    },
}
ROWS = [
    {
        "prompt": "Weather in Paris?",
        "tools": [WEATHER, ROOTS],
        "gold": [{"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["celsius", ""]}}],
    },
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Solve x^2 - 3x + 2 = 0."},
        ],
        "tools": [ROOTS],
        "gold": [{"algebra.quadratic_roots": {"a": [1], "b": [-3], "c": [2.0]}}],
    },
    {"prompt": "Write me a haiku about autumn.", "tools": [WEATHER, ROOTS], "gold": NO_CALL},
]


def _write(tmp_path, rows, name="items.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gold_replies_score_full_marks_on_every_figure(tmp_path) -> None:
    items = read_eval_items(_write(tmp_path, ROWS))
    figures, records = user_eval_figures([gold_turn(item) for item in items], items)
    assert set(figures) == set(USER_EVAL_METRICS)
    for name in ("ast_accuracy", "function_name_accuracy", "must_call_rate"):
        assert figures[name].value == 1.0 and figures[name].n == 2, name
    assert figures["irrelevance_accuracy"].value == 1.0 and figures["irrelevance_accuracy"].n == 1
    assert figures["hallucinated_function_rate"].value == 0.0 and figures["hallucinated_function_rate"].n == 2
    assert figures["format_validity"].value == figures["thought_prefix_rate"].value == 1.0
    assert figures["format_validity"].n == 3 and figures["ast_accuracy"].ci == (1.0, 1.0)
    assert [r["line"] for r in records] == [1, 2, 3] and records[2]["gold"] == NO_CALL


def test_wrong_replies_lose_where_they_should(tmp_path) -> None:
    items = read_eval_items(_write(tmp_path, ROWS))
    replies = [
        format_call("Weather.", "get_weather", {"city": "Lyon"}),  # right function, wrong value
        format_call("Formula.", "thm_formula", {"a": 1}),  # a name not offered
        format_call("Maybe weather.", "get_weather", {"city": "Paris"}),  # calls where nothing fits
    ]
    figures, records = user_eval_figures(replies, items)
    assert figures["ast_accuracy"].value == 0.0 and figures["ast_accuracy"].n == 2
    assert figures["function_name_accuracy"].value == 0.5
    assert figures["hallucinated_function_rate"].value == pytest.approx(1 / 3)
    assert figures["must_call_rate"].value == 1.0
    assert figures["irrelevance_accuracy"].value == 0.0
    assert figures["format_validity"].value == pytest.approx(2 / 3)  # the unknown tool is invalid
    # Refusing everything wins irrelevance but loses must-call: the two are reported together.
    refusals = [format_final("No tool needed.", "Sorry.")] * 3
    figures, _ = user_eval_figures(refusals, items)
    assert figures["irrelevance_accuracy"].value == 1.0 and figures["must_call_rate"].value == 0.0
    assert figures["hallucinated_function_rate"].value is None  # no calls at all
    # A call whose value fits the gold but breaks the schema is not an AST match.
    bad_type = format_call("Roots.", "algebra.quadratic_roots", {"a": "1", "b": -3, "c": 2})
    figures, _ = user_eval_figures([bad_type], items[1:2])
    assert figures["ast_accuracy"].value == 0.0 and figures["function_name_accuracy"].value == 1.0


def test_prompt_lists_the_rows_tools_and_keeps_the_rows_system_turn(tmp_path) -> None:
    items = read_eval_items(_write(tmp_path, ROWS))
    convs = user_eval_conversations(items)
    assert convs[0][0] == {"role": "system", "content": format_system_prompt(items[0].tools, detail="full")}
    assert "algebra.quadratic_roots" in convs[0][0]["content"] and "get_weather" in convs[0][0]["content"]
    assert convs[1][0]["content"].endswith("\n\nBe brief.") and "get_weather" not in convs[1][0]["content"]
    assert [t["role"] for t in convs[1]] == ["system", "user"]
    assert convs[2][-1] == {"role": "user", "content": "Write me a haiku about autumn."}


def test_rows_without_tools_take_the_shared_ones(tmp_path) -> None:
    rows = [{"prompt": "Weather in Oslo?", "gold": [{"get_weather": {"city": ["Oslo"]}}]}]
    shared = [Tool("get_weather", "Weather.", WEATHER["function"]["parameters"])]
    (item,) = read_eval_items(_write(tmp_path, rows), shared)
    assert item.tools == shared
    with pytest.raises(DataError, match=r'items.jsonl:1: field "tools" is missing'):
        read_eval_items(_write(tmp_path, rows))


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"gold": [{"get_weather": {"city": "Paris"}}]}, 'field "gold[0].get_weather.city"'),
        ({"gold": [{"get_time": {}}]}, "field \"gold[0]\" names 'get_time'"),
        ({"gold": "none"}, 'field "gold" must be'),
        ({"gold": None, "drop": "gold"}, 'field "gold" is missing'),
        ({"prompt": [{"role": "assistant", "content": "hi"}]}, 'field "prompt" must end with a user turn'),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "properties": {"x": {"type": "strin"}}},
                        },
                    }
                ]
            },
            "'strin'",
        ),
    ],
)
def test_a_bad_row_names_file_line_and_field(tmp_path, bad, where) -> None:
    row = {**ROWS[0], **{k: v for k, v in bad.items() if k != "drop"}}
    if "drop" in bad:
        del row[bad["drop"]]
    path = _write(tmp_path, [ROWS[1], ROWS[2], row])
    with pytest.raises(DataError) as err:
        read_eval_items(path)
    assert str(err.value).startswith(f"{path}:3: ") and where in str(err.value), str(err.value)
