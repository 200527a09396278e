"""Tools from users' files (`toolcall/files.py`), JSON Schema checks, the full renderer, the public API."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

import posttrain
from posttrain.errors import DataError
from posttrain.toolcall import (
    ToolCall,
    ToolRegistry,
    check_parameters,
    format_system_prompt,
    load_tools,
    parse_response,
    render_tools,
    run_react,
    validate_args,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris."},
                "unit": {
                    "type": "string",
                    "enum": ["celsius", "fahrenheit"],
                    "default": "celsius",
                    "description": "Temperature unit.",
                },
                "days": {"type": "integer", "minimum": 1, "default": 3, "description": "Forecast length."},
            },
            "required": ["city"],
        },
    },
}
BARE_SUM = {
    "name": "math.sum",
    "description": "Sum of a list of numbers.",
    "parameters": {
        "type": "object",
        "properties": {
            "values": {"type": "array", "items": {"type": "number"}, "description": "Numbers to add."}
        },
        "required": ["values"],
    },
}


def _jsonl(tmp_path: Path, specs: list[Any], name: str = "tools.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(s if isinstance(s, str) else json.dumps(s) for s in specs) + "\n")
    return path


def _with(spec: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(spec))
    out["function"].update(changes)
    return out


# ------------------------------------------------------------------ loading


def test_loads_json_jsonl_and_yaml_in_both_spec_forms(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([WEATHER, BARE_SUM]))
    (tmp_path / "b.json").write_text(json.dumps({"tools": [WEATHER, BARE_SUM]}))
    (tmp_path / "c.yaml").write_text(json.dumps({"tools": [WEATHER, BARE_SUM]}))  # JSON is YAML
    _jsonl(tmp_path, [WEATHER, "", BARE_SUM], "d.jsonl")
    for name in ("a.json", "b.json", "c.yaml", "d.jsonl"):
        tools = load_tools(tmp_path / name)
        assert [t.name for t in tools] == ["get_weather", "math.sum"], name
        assert tools[0].schema() == WEATHER
        assert tools[1].parameters == BARE_SUM["parameters"] and tools[1].fn is None


def test_yaml_block_style(tmp_path: Path) -> None:
    path = tmp_path / "tools.yml"
    path.write_text(
        textwrap.dedent("""\
        - name: ping
          description: Is a host up?
          parameters:
            type: object
            properties:
              host: {type: string}
            required: [host]
        """)
    )
    (tool,) = load_tools(path)
    assert (tool.name, tool.parameters["required"]) == ("ping", ["host"])


BAD_CITY = {"type": "object", "properties": {"city": {"type": "strin"}}}
EP = "tools.jsonl:1: tool 't': entry_point: "


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([BARE_SUM, BARE_SUM, _with(WEATHER, parameters=BAD_CITY)], None),  # line 2's duplicate is first
        (
            [BARE_SUM, WEATHER, _with(WEATHER, name="w2", parameters=BAD_CITY)],
            "tools.jsonl:3: tool 'w2': parameters.properties.city.type: 'strin' is not a JSON Schema type",
        ),
        ([BARE_SUM, {"description": "x", "parameters": {"type": "object"}}], "tools.jsonl:2: name: missing"),
        ([BARE_SUM, '{"name": "broken",'], "tools.jsonl:2: invalid JSON"),
        (
            [_with(WEATHER, paramaters={})],
            "tools.jsonl:1: tool 'get_weather': function.paramaters: unknown key",
        ),
        (
            [_with(WEATHER, parameters={"type": "object", "required": "city"})],
            "tools.jsonl:1: tool 'get_weather': parameters.required: 'city' is not of type 'array'",
        ),
        (
            [_with(WEATHER, parameters={"type": "array"})],
            "tools.jsonl:1: tool 'get_weather': parameters.type: must be 'object'",
        ),
        (
            [{"name": "bad name", "parameters": {}}],
            "tools.jsonl:1: tool 'bad name': name: 'bad name' is not a function name",
        ),
        ([{"name": "t", "entry_point": "no_such_module_x:f"}], EP + "cannot import 'no_such_module_x'"),
        ([{"name": "t", "entry_point": "json.dumps"}], EP + "expected 'module:function'"),
        ([{"name": "t", "entry_point": "json:nope"}], EP + "'json' has no attribute 'nope'"),
    ],
)
def test_bad_tool_files_name_line_tool_and_field(
    tmp_path: Path, lines: list[Any], message: str | None
) -> None:
    path = _jsonl(tmp_path, lines)
    with pytest.raises(DataError) as err:
        load_tools(path)
    text = str(err.value).replace(str(tmp_path) + "/", "")
    if message is None:
        assert text == "tools.jsonl:2: tool 'math.sum': duplicate name (first defined at line 1)"
    else:
        assert text.startswith(message), text
    assert "\n" not in text


def test_bad_json_list_names_the_item(tmp_path: Path) -> None:
    bad = _with(WEATHER, parameters={"type": "object", "properties": {"days": {"type": ["integer", "nul"]}}})
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([BARE_SUM, bad]))
    where = r"tools.json: item 2: tool 'get_weather': parameters.properties.days.type: 'nul' is not"
    with pytest.raises(DataError, match=where):
        load_tools(path)
    path.write_text(json.dumps({"tool": [BARE_SUM]}))
    with pytest.raises(DataError, match="expected a list of tool specs"):
        load_tools(path)
    path.write_text('[\n  {"name": "x"},\n  oops\n]')
    with pytest.raises(DataError, match=r"tools.json:3: invalid JSON"):
        load_tools(path)


def test_entry_point_binds_a_real_function_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "my_t1_tools.py").write_text(
        "def weather(city, unit='celsius', days=3):\n"
        "    return {'city': city.upper(), 'unit': unit, 'days': days}\n"
    )
    spec = dict(WEATHER, entry_point="my_t1_tools:weather")
    tools = load_tools(_jsonl(tmp_path, [spec, BARE_SUM]))
    registry = ToolRegistry(tools)
    out = registry.execute(ToolCall("get_weather", {"city": "Oslo", "days": 2}))
    assert json.loads(out) == {"city": "OSLO", "unit": "celsius", "days": 2}
    assert registry.execute(ToolCall("get_weather", {"city": "Oslo", "days": 0})).startswith(
        "Error: invalid arguments for get_weather: args.days: 0 violates minimum 1"
    )


def test_a_spec_only_tool_is_scored_but_never_executed(tmp_path: Path) -> None:
    registry = ToolRegistry(load_tools(_jsonl(tmp_path, [WEATHER])))
    text = 'Thought: look it up.\nAction: ```json\n{"tool": "get_weather", "args": {"city": "Rome"}}\n```'
    result = parse_response(text, registry)
    assert result.kind == "call" and result.call == ToolCall("get_weather", {"city": "Rome"})
    bad = text.replace('"Rome"', "7")
    assert parse_response(bad, registry).kind == "schema_violation"
    observation, ok = registry.execute_checked(result.call)
    assert not ok
    assert observation == "Error: tool 'get_weather' has no implementation (it is scored, never run)"
    (episode,) = run_react([[{"role": "user", "content": "Rome?"}]], registry, lambda convs: [text], 1)
    assert episode.tool_calls == [result.call] and episode.steps[0].tool_error
    assert episode.messages[-1]["content"].startswith("Observation: Error: tool 'get_weather' has no")


# ------------------------------------------------------------------ JSON Schema


def test_check_parameters_uses_the_meta_schema() -> None:
    assert check_parameters(WEATHER["function"]["parameters"]) == []
    assert check_parameters({"type": "object", "properties": {"n": {"minimum": "1"}}}) == [
        "parameters.properties.n.minimum: '1' is not of type 'number'"
    ]
    assert check_parameters("object") == ["parameters: expected a JSON Schema object, got string"]


def test_validate_args_covers_what_the_old_subset_did_not() -> None:
    nested = {
        "type": "object",
        "properties": {
            "when": {
                "type": "object",
                "properties": {"day": {"type": "string"}},
                "required": ["day"],
            },
            "pick": {"anyOf": [{"type": "integer"}, {"type": "string", "const": "all"}]},
            "ids": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "uniqueItems": True},
        },
    }
    assert validate_args(nested, {"when": {"day": "mon"}, "pick": "all", "ids": [1, 2]}) == []
    extra = {"when": {"day": "mon", "hour": 3}}
    assert validate_args(nested, extra) == ["args.when: unexpected argument 'hour'"]
    assert validate_args(nested, {"when": {}}) == ["args.when: missing required 'day'"]
    assert validate_args(nested, {"ids": []}) == ["args.ids: [] should be non-empty"]
    assert validate_args(nested, {"ids": [1, 1]}) == ["args.ids: [1, 1] has non-unique elements"]
    assert validate_args(nested, {"pick": "some"})[0].startswith("args.pick: 'some' is not valid under any")
    assert validate_args(nested, {"ids": [float("inf")]}) == ["args.ids[0]: expected integer, got float"]


# ------------------------------------------------------------------ renderers and public API


def test_full_renderer_shows_every_description_default_and_choice(tmp_path: Path) -> None:
    tools = load_tools(_jsonl(tmp_path, [WEATHER, BARE_SUM]))
    full = format_system_prompt(tools, detail="full")
    compact = format_system_prompt(tools)
    assert full.startswith(compact.split("Tools:")[0] + "Tools:\n")
    for spec in (WEATHER["function"], BARE_SUM):
        assert spec["description"] in full
        for prop in spec["parameters"]["properties"].values():
            assert prop["description"] in full
    unit = 'unit (string, optional, default "celsius"; one of: "celsius", "fahrenheit"): Temperature unit.'
    assert unit in full
    assert "days (integer, optional, default 3): Forecast length." in full
    assert "values (array of number, required): Numbers to add." in full
    assert "City name" not in compact  # the compact default is today's text, unchanged
    assert render_tools(tools) == full.split("Tools:\n", 1)[1]
    with pytest.raises(ValueError, match="detail must be"):
        format_system_prompt(tools, detail="short")  # type: ignore[arg-type]


def test_the_tool_api_is_public() -> None:
    for name in ("Tool", "ToolCall", "ToolRegistry", "load_tools", "parse_response", "format_system_prompt"):
        assert name in posttrain.__all__
        assert getattr(posttrain, name) is getattr(__import__("posttrain.toolcall", fromlist=[name]), name)
