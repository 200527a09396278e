"""The model's own chat-template tool format (`data.tool_format: chat_template`) with a real
tokenizer: tiny-random's, given a Qwen2.5-style (Hermes `<tool_call>`) template written here.
Rows render with their tool list and gold call, plain turns render byte for byte as
`apply_chat_template(tools=...)`, the SFT mask covers the call, gold calls parse back and score
1.0, SmolLM2's template is refused, and the align task's wiring trains, rolls out and scores in
this format."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from posttrain.config import AlignConfig
from posttrain.errors import ConfigError
from posttrain.models import load_tokenizer, resolve
from posttrain.pipelines.align import tokenize_conversation
from posttrain.tasks.align import align_task
from posttrain.tasks.tool_use.align import ToolUseAlign
from posttrain.tasks.tool_use.chat_format import (
    ChatToolFormat,
    chat_tool_format,
    openai_messages,
    parse_chat_reply,
    supports_tools,
)
from posttrain.tasks.tool_use.pool_pairs import pool_item, pool_reward
from posttrain.tasks.tool_use.pool_rows import pool_conversation, pool_prompt, pool_rows
from posttrain.tasks.tool_use.scoring import NO_CALL
from posttrain.tasks.tool_use.user_eval import USER_EVAL_METRICS, gold_turn, score_reply, user_eval_figures
from posttrain.toolcall import Tool, ToolCall, ToolRegistry, parse_response

# Qwen2.5's tool template, shortened (same system/tools block, <tool_call> turns and <tool_response>).
QWEN_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content }}"
    "{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, '
    '\\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\' }}'
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def qwen_tokenizer(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = QWEN_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def fmt(qwen_tokenizer) -> ChatToolFormat:
    return chat_tool_format(qwen_tokenizer, "tiny-random+qwen-template")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return pool_rows(80, 5, "train") + pool_rows(40, 5, "heldout")


def _follow_up_row(rows: list[dict]) -> dict:
    return next(r for r in rows if r["follow_up"] and r["gold"] != NO_CALL)


def test_a_row_renders_its_tools_and_gold_call_and_plain_turns_render_the_same(fmt, rows):
    row = _follow_up_row(rows)
    text = fmt.render(openai_messages(row), row["tools"])
    call = parse_response(row["completion"], {}).call
    tools_block = text.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert [json.loads(line) for line in tools_block.splitlines()] == row["tools"]
    expected = json.dumps({"name": call.name, "arguments": call.args}, ensure_ascii=False)
    assert f"<|im_start|>assistant\n<tool_call>\n{expected}\n</tool_call><|im_end|>" in text
    assert "<tool_response>\n" + row["follow_up"]["observation"].removeprefix("Observation: ") in text
    assert "Thought:" not in text and "Action:" not in text
    plain = pool_conversation(row, fmt)
    assert all(set(turn) <= {"role", "content", "name"} for turn in plain)
    assert fmt.tokenizer.apply_chat_template(plain, tokenize=False) == text  # no tools= needed
    prompt = pool_prompt(row, fmt)
    opened = fmt.render(row["messages"], row["tools"], opened=True)
    assert fmt.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == opened
    assert plain[: len(prompt)] == prompt


def test_the_sft_mask_covers_the_call_and_the_answer_not_the_tools(fmt, rows):
    row = _follow_up_row(rows)
    tok = fmt.tokenizer
    out = tokenize_conversation(tok, pool_conversation(row, fmt), 4096)
    ids, mask = out["input_ids"], out["completion_mask"]
    assert tok.decode(ids) == fmt.render(openai_messages(row), row["tools"])
    learned = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    context = tok.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    name = parse_response(row["completion"], {}).call.name
    assert learned.startswith('<tool_call>\n{"name": "' + name + '"')
    assert learned.count("<|im_end|>") == 2  # the call turn and the final answer, each with its end
    assert "Here is what" in learned
    assert "<tools>" in context and "<tool_response>" in context
    assert '<tool_call>\n{"name": "' + name not in context


def test_gold_calls_round_trip_to_full_marks_and_no_call_rows_parse_as_no_call(fmt, rows):
    items = [pool_item(r, i) for i, r in enumerate(rows)]
    replies = [gold_turn(item, fmt) for item in items]
    for row, item, reply in zip(rows, items, replies, strict=True):
        parsed = fmt.parse(reply, item.registry)
        if row["gold"] == NO_CALL:
            assert parsed.kind == "final" and parsed.call is None and parsed.json_valid is None
        else:
            assert parsed.kind == "call" and reply.startswith("<tool_call>")
        assert pool_reward(reply, row, fmt) == 1.0
    figures, _ = user_eval_figures(replies, items, fmt)
    assert {k: figures[k].value for k in USER_EVAL_METRICS if k != "thought_prefix_rate"} == {
        "ast_accuracy": 1.0,
        "function_name_accuracy": 1.0,
        "hallucinated_function_rate": 0.0,
        "must_call_rate": 1.0,
        "irrelevance_accuracy": 1.0,
        "format_validity": 1.0,
    }
    assert figures["thought_prefix_rate"].n == 0  # this format has no Thought
    assert figures["irrelevance_accuracy"].n == sum(r["gold"] == NO_CALL for r in rows) > 0
    # The trained gold turn (rendered by the template) reads back as the row's own gold call.
    for row in rows[:30]:
        conversation, prompt = pool_conversation(row, fmt), pool_prompt(row, fmt)
        parsed = fmt.parse(conversation[len(prompt)]["content"], pool_item(row).registry)
        assert parsed.call == parse_response(row["completion"], {}).call


def test_the_parser_reads_hermes_and_llama_calls_and_names_each_failure():
    registry = ToolRegistry(
        [Tool("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}})]
    )
    hermes = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    llama = '{"name": "get_weather", "parameters": {"city": "Oslo"}}'
    for text in (hermes, llama, "<|python_tag|>" + llama):
        p = parse_chat_reply(text, registry)
        assert (p.kind, p.call, p.json_valid) == ("call", ToolCall("get_weather", {"city": "Oslo"}), True)
    cases = {
        "It is sunny in Oslo.": ("final", None),
        "   ": ("no_action", None),
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": </tool_call>': ("invalid_json", False),
        '{"name": "get_weather", "parameters": {"city"': ("invalid_json", False),
        '<tool_call>{"name": "weather_now", "arguments": {}}</tool_call>': ("unknown_tool", True),
        '<tool_call>{"name": "get_weather", "arguments": {"city": 7}}': ("schema_violation", True),
        '{"answer": 4}': ("final", None),  # JSON that is not a call is an answer
    }
    for text, (kind, valid) in cases.items():
        p = parse_chat_reply(text, registry)
        assert (p.kind, p.json_valid, p.has_thought) == (kind, valid, False), text


def test_a_thought_action_reply_is_not_a_call_in_this_format(fmt, rows):
    row = next(r for r in rows if r["gold"] != NO_CALL)
    s = score_reply(row["completion"], pool_item(row), fmt)
    assert s["ast_accuracy"] is False and s["must_call_rate"] is False
    assert score_reply(row["completion"], pool_item(row))["ast_accuracy"] is True  # the default reads it


def test_smollm2s_template_is_refused_with_the_model_named():
    tok = load_tokenizer("smollm2-135m")
    assert not supports_tools(tok)
    with pytest.raises(ConfigError, match=r"'smollm2-135m' ignores them.*data\.tool_format=react"):
        chat_tool_format(tok, "smollm2-135m")


def test_a_template_that_keeps_tools_outside_the_system_turn_is_refused(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    # Llama 3.1's habit: the tool list goes into the first user turn.
    tok.chat_template = (
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}"
        "{%- if loop.first and tools %}{{- 'Tools: ' + (tools | tojson) + '\\n' }}{%- endif %}"
        "{{- m.content + '<|im_end|>\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    assert supports_tools(tok)
    with pytest.raises(ConfigError, match="outside the system turn"):
        chat_tool_format(tok, "user-first")


def test_align_task_binds_the_format_from_config(tiny_spec, qwen_tokenizer, tmp_path):
    assert AlignConfig().data.tool_format == "react"
    with pytest.raises(ValueError):
        AlignConfig.model_validate({"data": {"tool_format": "json"}})
    assert align_task("tool_use", "react", "smollm2-135m").chat_format is None
    with pytest.raises(ConfigError, match="tiny-random"):
        align_task("tool_use", "chat_template", "tiny-random")  # SmolLM2's template
    with pytest.raises(ConfigError, match="tool_use only"):
        align_task("meetings", "chat_template", "tiny-random")
    model = tmp_path / "qwen-templated"
    shutil.copytree(resolve(tiny_spec), model)
    (model / "chat_template.jinja").write_text(QWEN_TEMPLATE)
    task = align_task("tool_use", "chat_template", str(model))
    assert isinstance(task, ToolUseAlign) and task.chat_format.model == str(model)


def test_a_constrained_task_decodes_each_pool_turn_inside_its_own_tools_grammar():
    """evaluation.constrained: every function-pool turn (figures and the DPO gate) is generated with
    its row's `tool_turn_grammar`; only Thought→Action tool_use can have it."""
    from posttrain.toolcall import tool_turn_grammar

    assert AlignConfig().evaluation.constrained is False
    rows = pool_rows(6, 3, "validation")
    asked: list = []

    def policy(conversations, grammars=None):
        asked.append(grammars)
        by_request = {r["messages"][-1]["content"]: gold_turn(pool_item(r)) for r in rows}
        return [by_request[c[-1]["content"]] for c in conversations]

    task = align_task("tool_use", constrained=True)
    figs, _ = task.evaluate(policy, task.gate_sets(3, 6), 1, True)
    assert asked == [[tool_turn_grammar(pool_item(r).tools) for r in rows]]
    assert figs["validation_families"]["format_validity"].value == 1.0
    align_task("tool_use").evaluate(policy, task.gate_sets(3, 6), 1, True)
    assert asked[-1] is None  # free unless asked
    for bad in (("meetings",), ("tool_use", "chat_template", "tiny-random")):
        with pytest.raises(ConfigError, match="Thought→Action format only"):
            align_task(*bad, constrained=True)


def _oracle(fmt: ChatToolFormat, rows: list[dict]):
    """A policy that writes each row's gold turn in the chat format (found by its user turn)."""
    by_request = {r["messages"][-1]["content"]: gold_turn(pool_item(r), fmt) for r in rows}

    def generate(conversations: list[list[dict]]) -> list[str]:
        return [by_request[c[-1]["content"]] for c in conversations]

    return generate


def test_the_align_task_trains_rolls_out_and_scores_pool_rows_in_the_chat_format(fmt):
    task = ToolUseAlign(fmt)
    data = task.training_data(
        rows=12, demos=0, val_rows=0, seed=3, compact=True, synthetic_pairs=40, min_margin=0.2, pool_rows=16
    )
    chat = [c for c in data.sft_train if "<tools>" in c[0]["content"]]
    assert len(chat) == 16
    answers = [t["content"] for c in chat for t in c if t["role"] == "assistant"]
    assert not any("Thought:" in a or "Final Answer:" in a for a in answers)
    assert any(a.startswith("<tool_call>\n{") for a in answers)
    for pair in [p for p in data.synthetic_pairs if "<tools>" in p["prompt"][0]["content"]]:
        assert pair["chosen"] != pair["rejected"] and pair["defect"] != "no_thought"
        assert "Thought:" not in pair["chosen"][0]["content"]
    react = [c for c in data.sft_train if "<tools>" not in c[0]["content"]]
    assert react and all("Thought:" in c[-1]["content"] or "Final Answer" in c[-1]["content"] for c in react)

    prompts = [p for p in task.rollout_prompts(8, 1, True) if "pool_row" in p]
    assert prompts and all(p["chat_format"] is fmt for p in prompts)
    traces = task.rollouts(prompts, _oracle(fmt, [p["pool_row"] for p in prompts]), 2, "oracle")
    assert [t["reward"]["total"] for t in traces] == [1.0] * len(prompts)

    sets = {"unseen_families": pool_rows(24, 9, "heldout")}
    figs, records = task.evaluate(_oracle(fmt, sets["unseen_families"]), sets, 2, True)
    assert figs["unseen_families"]["ast_accuracy"].value == 1.0
    assert all(r["reward"] == 1.0 for r in records["unseen_families"])

    def thought_action(conversations: list[list[dict]]) -> list[str]:
        rows = {r["messages"][-1]["content"]: r for r in sets["unseen_families"]}
        return [rows[c[-1]["content"]]["completion"] for c in conversations]

    figs, _ = task.evaluate(thought_action, sets, 2, True)  # Thought→Action is not a call here
    assert figs["unseen_families"]["ast_accuracy"].value == 0.0
    figs, _ = ToolUseAlign().evaluate(thought_action, sets, 2, True)  # ...but is by default
    assert figs["unseen_families"]["ast_accuracy"].value == 1.0


def test_defaults_stay_thought_action(rows):
    row = _follow_up_row(rows)
    assert pool_prompt(row)[0]["content"].startswith("You are an assistant that can call tools.")
    assert pool_conversation(row)[-3]["content"] == row["completion"]
