"""`posttrain serve --tool-prompt chat_template` over real HTTP with the official `openai` client:
tiny-random given a Qwen2.5-style (Hermes `<tool_call>`) template serves an adapter trained with
`data.tool_format: chat_template`. The prompt is exactly `apply_chat_template(messages, tools=)`,
forced calls are written in the template's own call syntax and come back as OpenAI `tool_calls`,
the client's tool history round-trips, a streamed call is one delta, and a template that ignores
tools is refused before anything is served."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from posttrain.errors import ConfigError, PosttrainError
from posttrain.models import load_for_inference
from posttrain.pipelines.serve import create_app, serve_in_thread, serve_tool_prompt
from posttrain.pipelines.serve_schema import ChatMessage
from posttrain.pipelines.serve_service import ChatService
from posttrain.pipelines.serve_tools import chat_call_layout, chat_template_messages, reply_message
from posttrain.tasks.tool_use.chat_format import chat_tool_format
from tests.pipelines.test_serve_tools import ASK, TOOLS, answered_call, assert_valid_call, registry
from tests.tasks.tool_use.test_chat_format import QWEN_TEMPLATE

NAME = "tiny-qwen-tools"


@pytest.fixture(scope="module")
def served(tiny_spec: str) -> Iterator[tuple[str, Any]]:
    """(base URL, the Qwen-templated tokenizer): one server for the module."""
    import torch

    torch.set_num_threads(1)
    model, tokenizer = load_for_inference(tiny_spec)
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = QWEN_TEMPLATE
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        app = create_app(model, tokenizer, NAME, "chat_template")
        with serve_in_thread(app, startup_timeout=30) as url:
            yield url, tokenizer


@pytest.fixture(scope="module")
def client(served: tuple[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[0], api_key="x", max_retries=0, timeout=120)


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=NAME, messages=kwargs.pop("messages", ASK), **{"max_tokens": 160, **kwargs}
    )


def template_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_forced_calls_use_the_templates_call_syntax_and_come_back_as_tool_calls(
    client: openai.OpenAI, served: tuple[str, Any]
) -> None:
    fmt = chat_tool_format(served[1], NAME)
    head, keys, tail = chat_call_layout(fmt, registry())
    assert (head, keys, tail) == ("<tool_call>\n", ("name", "arguments"), "\n</tool_call>")
    for seed in range(3):
        (choice,) = chat(client, tools=TOOLS, tool_choice="required", seed=seed).choices
        assert choice.finish_reason == "tool_calls", choice.message
        assert choice.message.content is None
        assert not getattr(choice.message, "reasoning_content", None)  # no Thought in this format
        assert_valid_call(choice.message.tool_calls[0], {"add", "text.echo"})
    named = {"type": "function", "function": {"name": "text.echo"}}
    choice = chat(client, tools=TOOLS, tool_choice=named, seed=5).choices[0]
    assert_valid_call(choice.message.tool_calls[0], {"text.echo"})
    # a random model under "auto" writes text, which stays text
    choice = chat(client, tools=TOOLS, seed=0, max_tokens=12).choices[0]
    assert choice.message.tool_calls is None and isinstance(choice.message.content, str)


def test_the_prompt_is_the_templates_rendering_of_the_openai_history(
    client: openai.OpenAI, served: tuple[str, Any]
) -> None:
    _, tokenizer = served
    reply = chat(client, tools=TOOLS, seed=0, max_tokens=2)
    assert reply.usage.prompt_tokens == len(template_ids(tokenizer, ASK))
    _, call, history, again = answered_call(chat, client)
    arguments = json.loads(call.function.arguments)
    function = {"name": call.function.name, "arguments": arguments}
    expected = [
        *ASK,
        {"role": "assistant", "tool_calls": [{"type": "function", "function": function}]},
        {"role": "tool", "content": "5"},
    ]
    assert again.usage.prompt_tokens == len(template_ids(tokenizer, expected))
    # the plain turns the server prompts with render byte for byte as the template with tools
    messages = [ChatMessage.model_validate(m) for m in history]
    plain = chat_template_messages(messages, registry(), chat_tool_format(tokenizer, NAME))
    rendered = tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=False)
    assert rendered == tokenizer.apply_chat_template(
        expected, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    assert "<tool_call>" in plain[2]["content"] and plain[0]["role"] == "system"


def test_replies_parse_from_the_template_format(served: tuple[str, Any]) -> None:
    fmt = chat_tool_format(served[1], NAME)
    text = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    message, finish = reply_message(text, registry(), "auto", fmt)
    assert finish == "tool_calls" and message["content"] is None and message["reasoning_content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    assert reply_message("It is 5.", registry(), "auto", fmt)[0]["content"] == "It is 5."
    # a call of a tool nobody offered, or under tool_choice "none", stays text
    for bad, choice in ((text.replace('"add"', '"mul"'), "auto"), (text, "none")):
        message, finish = reply_message(bad, registry(), choice, fmt)
        assert finish is None and message["content"] == bad and "tool_calls" not in message


def test_streamed_template_call_comes_as_one_delta(client: openai.OpenAI) -> None:
    whole = chat(client, tools=TOOLS, tool_choice="required", seed=2).choices[0]
    deltas = [
        c.choices[0]
        for c in chat(client, tools=TOOLS, tool_choice="required", seed=2, stream=True)
        if c.choices
    ]
    (call,) = deltas[0].delta.tool_calls
    assert (call.function.name, call.function.arguments) == (
        whole.message.tool_calls[0].function.name,
        whole.message.tool_calls[0].function.arguments,
    )
    assert [d.finish_reason for d in deltas] == [None, "tool_calls"]


def test_a_template_without_tools_is_refused_before_serving(tiny_spec: str) -> None:
    model, tokenizer = load_for_inference(tiny_spec)  # SmolLM2's template ignores tools
    with pytest.raises(ConfigError, match="ignores them"):
        ChatService(model, tokenizer, "tiny", "chat_template")


def test_the_served_tool_format_follows_the_adapter(tmp_path: Any) -> None:
    from posttrain.rundir import ADAPTER_META

    trained = tmp_path / "adapter"
    trained.mkdir()
    (trained / ADAPTER_META).write_text(json.dumps({"tool_format": "chat_template"}))
    assert serve_tool_prompt(trained, None) == "chat_template"
    assert (
        serve_tool_prompt(None, None) == "compact"
        and serve_tool_prompt(None, "chat_template") == "chat_template"
    )
    with pytest.raises(PosttrainError, match="data.tool_format=chat_template; --tool-prompt compact"):
        serve_tool_prompt(trained, "compact")
    with pytest.raises(PosttrainError, match="must be one of compact, full, chat_template"):
        serve_tool_prompt(None, "xml")
