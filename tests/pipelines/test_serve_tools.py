"""`posttrain serve` with tools and streaming, over real HTTP on 127.0.0.1 with the official
`openai` client against tiny-random: forced calls come back as OpenAI `tool_calls`, tool history
renders into the trained Action / Observation turns, streamed chunks add up to the non-streamed
answer, and bad tool specs get OpenAI error bodies naming the field."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from posttrain.constrained import chat_prompt_ids
from posttrain.pipelines.serve_schema import ChatMessage
from posttrain.pipelines.serve_tools import render_messages, reply_message, tool_system_prompt
from posttrain.tasks.episodes import compact_system_prompt
from posttrain.toolcall import Tool, ToolRegistry, format_call, format_final, format_system_prompt
from tests.pipelines.conftest import SERVED_NAME

NAME = SERVED_NAME
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number", "description": "first"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}
ECHO = {
    "type": "function",
    "function": {
        "name": "text.echo",
        "description": "Repeat a word.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string", "maxLength": 12}, "loud": {"type": "boolean"}},
            "required": ["word"],
        },
    },
}
TOOLS = [ADD, ECHO]
ASK = [{"role": "user", "content": "What is 2 + 3?"}]


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=NAME, messages=kwargs.pop("messages", ASK), **{"max_tokens": 160, **kwargs}
    )


def registry() -> ToolRegistry:
    return ToolRegistry(
        [
            Tool(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
            for t in TOOLS
        ]
    )


def assert_valid_call(call: Any, names: set[str]) -> dict[str, Any]:
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) > 10
    assert call.function.name in names
    args = json.loads(call.function.arguments)
    spec = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}[call.function.name]
    jsonschema.validate(args, spec)  # raises when the forced arguments break the tool's schema
    assert set(args) <= set(spec["properties"])
    return args


# ---------------------------------------------------------------- tool calls


def test_required_tool_choice_returns_openai_tool_calls(client: openai.OpenAI) -> None:
    names = set()
    for seed in range(4):
        reply = chat(client, tools=TOOLS, tool_choice="required", seed=seed, temperature=1.0)
        (choice,) = reply.choices
        assert choice.finish_reason == "tool_calls", choice.message
        assert choice.message.content is None and choice.message.role == "assistant"
        (call,) = choice.message.tool_calls
        assert_valid_call(call, {"add", "text.echo"})
        names.add(call.function.name)
        assert choice.message.reasoning_content  # the Thought, for the client to send back
        assert reply.usage.completion_tokens <= 160
    # a named tool_choice forces that tool, whatever the seed
    for seed in range(3):
        choice = chat(
            client,
            tools=TOOLS,
            seed=seed,
            tool_choice={"type": "function", "function": {"name": "text.echo"}},
        ).choices[0]
        assert choice.finish_reason == "tool_calls"
        args = assert_valid_call(choice.message.tool_calls[0], {"text.echo"})
        assert isinstance(args["word"], str) and len(args["word"]) <= 12


def test_auto_and_none_never_invent_calls_from_a_random_model(client: openai.OpenAI) -> None:
    for choice_kind in ("auto", "none"):
        reply = chat(client, tools=TOOLS, tool_choice=choice_kind, seed=0, max_tokens=24)
        (choice,) = reply.choices
        assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")
        assert isinstance(choice.message.content, str)


def test_constrain_tools_puts_auto_turns_in_the_tool_grammar(served: tuple[str, Any, Any]) -> None:
    """--constrain-tools: an "auto" turn is decoded inside the request's tool grammar (a call of an
    offered tool or an answer), "none" and plain chats stay free, a chat-template server refuses it."""
    from posttrain.errors import ConfigError
    from posttrain.pipelines.serve import run_serve
    from posttrain.pipelines.serve_schema import ChatRequest
    from posttrain.pipelines.serve_service import ChatService
    from posttrain.toolcall import tool_turn_grammar

    _, model, tokenizer = served
    strict, free = (ChatService(model, tokenizer, SERVED_NAME, constrain_tools=c) for c in (True, False))
    ask = ChatRequest.model_validate({"model": SERVED_NAME, "messages": ASK, "tools": TOOLS})
    expected = tool_turn_grammar(registry().values())
    assert strict.grammar_for(ask, registry(), "auto") == expected
    assert strict.grammar_for(ask, registry(), "none") is None
    assert free.grammar_for(ask, registry(), "auto") is None
    with pytest.raises(ConfigError, match="--constrain-tools needs the Thought→Action"):
        run_serve(None, None, port=0, tool_prompt="chat_template", constrain_tools=True)


def test_reply_message_builds_calls_finals_and_raw_text_from_known_turns() -> None:
    tools = registry()
    message, finish = reply_message(format_call("Add them.", "add", {"a": 2, "b": 3.5}), tools, "auto")
    assert (
        finish == "tool_calls" and message["content"] is None and message["reasoning_content"] == "Add them."
    )
    (call,) = message["tool_calls"]
    assert call["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3.5}'}
    # the openai client's own types accept it
    parsed = openai.types.chat.ChatCompletionMessage.model_validate(message)
    assert parsed.tool_calls[0].function.name == "add"

    message, finish = reply_message(format_final("Easy.", "5"), tools, "auto")
    assert finish is None and message["content"] == "5" and message["reasoning_content"] == "Easy."
    assert "tool_calls" not in message
    # tool_choice "none": a call the model wrote anyway stays text
    text = format_call("Add.", "add", {"a": 1, "b": 1})
    assert reply_message(text, tools, "none") == (
        {"role": "assistant", "content": text, "refusal": None},
        None,
    )
    # an unknown tool or broken arguments are not calls
    for bad in (format_call("x", "mul", {"a": 1}), format_call("x", "add", {"a": "two", "b": 1}), "hello"):
        message, finish = reply_message(bad, tools, "auto")
        assert finish is None and message["content"] == bad and "tool_calls" not in message


# ---------------------------------------------------------------- history


def history() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3, and echo hi?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Two tools.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "text.echo", "arguments": '{"word": "hi"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": '"hi"'},
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
        {"role": "assistant", "content": "5 and hi"},
        {"role": "user", "content": "Now 1 + 1?"},
    ]


def test_tool_history_renders_into_the_trained_turns() -> None:
    messages = [ChatMessage.model_validate(m) for m in history()]
    rendered = render_messages(messages, registry(), "compact")
    assert rendered == [
        {"role": "system", "content": compact_system_prompt(registry().schemas()) + "\n\nBe brief."},
        {"role": "user", "content": "What is 2 + 3, and echo hi?"},
        {"role": "assistant", "content": format_call("I will call text.echo.", "text.echo", {"word": "hi"})},
        {"role": "user", "content": 'Observation: "hi"'},
        {"role": "assistant", "content": format_call("Two tools.", "add", {"a": 2, "b": 3})},
        {"role": "user", "content": "Observation: 5"},
        {"role": "assistant", "content": format_final(None, "5 and hi")},
        {"role": "user", "content": "Now 1 + 1?"},
    ]
    assert tool_system_prompt(registry(), "full") == format_system_prompt(registry().schemas())
    # without tools and without tool history, messages pass through as sent
    plain = [
        ChatMessage.model_validate(m)
        for m in ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"})
    ]
    assert render_messages(plain, None, "compact") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]


def answered_call(ask: Any, client: openai.OpenAI) -> tuple[Any, Any, list[dict[str, Any]], Any]:
    """The client sends the server's own tool_calls message back with the tool's answer ("5"):
    (that message, its call, the history sent, the reply to it). `ask` is the module's `chat`."""
    first = ask(client, tools=TOOLS, tool_choice="required", seed=1).choices[0].message
    call = first.tool_calls[0]
    history = [
        *ASK,
        first.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "5"},
    ]
    return first, call, history, ask(client, messages=history, tools=TOOLS, seed=0, max_tokens=4)


def test_server_prompts_with_the_rendered_history_and_round_trips_its_own_calls(
    client: openai.OpenAI, served: tuple
) -> None:
    _, _, tokenizer = served
    messages = [ChatMessage.model_validate(m) for m in history()]
    expected = chat_prompt_ids(tokenizer, render_messages(messages, registry(), "compact"))
    reply = chat(client, messages=history(), tools=TOOLS, seed=0, max_tokens=4)
    assert reply.usage.prompt_tokens == len(expected)

    first, call, _, again = answered_call(chat, client)
    action = format_call(first.reasoning_content, call.function.name, json.loads(call.function.arguments))
    rendered = [{"role": "system", "content": compact_system_prompt(registry().schemas())}, *ASK]
    rendered += [{"role": "assistant", "content": action}, {"role": "user", "content": "Observation: 5"}]
    assert again.usage.prompt_tokens == len(chat_prompt_ids(tokenizer, rendered))


# ---------------------------------------------------------------- streaming


def accumulate(stream: Any) -> tuple[dict[int, str], dict[int, str], Any, list[Any]]:
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage, chunks = None, list(stream)
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    return texts, finishes, usage, chunks


def test_streamed_chunks_add_up_to_the_non_streamed_answer(client: openai.OpenAI) -> None:
    for kwargs in ({"seed": 3, "max_tokens": 20}, {"seed": 4, "n": 2, "max_tokens": 16, "temperature": 1.2}):
        whole = chat(client, messages=[{"role": "user", "content": "hi"}], **kwargs)
        stream = chat(
            client,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
        texts, finishes, usage, chunks = accumulate(stream)
        assert texts == {c.index: c.message.content for c in whole.choices}
        assert finishes == {c.index: c.finish_reason for c in whole.choices}
        assert usage.model_dump() == whole.usage.model_dump()
        assert len(chunks) > 2 * len(whole.choices) + 2  # text came in pieces, not one delta
    # a stop string is never half-sent: the streamed text is cut exactly as the whole one
    full = (
        chat(client, messages=[{"role": "user", "content": "hi"}], seed=3, max_tokens=20)
        .choices[0]
        .message.content
    )
    stop = full[8:11]
    whole = chat(client, messages=[{"role": "user", "content": "hi"}], seed=3, max_tokens=20, stop=[stop])
    texts, finishes, _, _ = accumulate(
        chat(
            client,
            messages=[{"role": "user", "content": "hi"}],
            seed=3,
            max_tokens=20,
            stop=[stop],
            stream=True,
        )
    )
    assert texts[0] == whole.choices[0].message.content == full[: full.find(stop)]
    assert finishes[0] == "stop"


def test_streamed_tool_call_comes_as_one_delta(client: openai.OpenAI) -> None:
    whole = chat(client, tools=TOOLS, tool_choice="required", seed=2).choices[0]
    chunks = list(chat(client, tools=TOOLS, tool_choice="required", seed=2, stream=True))
    deltas = [c.choices[0] for c in chunks if c.choices]
    (call,) = deltas[0].delta.tool_calls
    assert call.index == 0 and call.id.startswith("call_")
    assert (call.function.name, call.function.arguments) == (
        whole.message.tool_calls[0].function.name,
        whole.message.tool_calls[0].function.arguments,
    )
    assert [d.finish_reason for d in deltas] == [None, "tool_calls"]


# ---------------------------------------------------------------- errors


def spec(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, **function}}


@pytest.mark.parametrize(
    ("kwargs", "param", "message"),
    [
        ({"tools": [spec(parameters={"type": "object", "properties": {"x": {"type": "nonsense"}}})]},
         "tools.0.function.parameters", "invalid JSON schema at properties/x/type"),
        ({"tools": [spec(parameters={"type": "array"})]}, "tools.0.function.parameters", '"type": "object"'),
        ({"tools": [spec(name="has space")]}, "tools.0.function.name", "pattern"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools.0.type", "'function'"),
        ({"tools": [spec(), spec()]}, "tools", "f offered twice"),
        ({"tools": [spec()], "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice",
         "not in tools (f)"),
        ({"tool_choice": "required"}, "tool_choice", "only allowed when tools are specified"),
        ({"tools": [spec()], "response_format": {"type": "json_object"}}, "response_format",
         "combined with tools"),
        ({"tools": [spec()], "stream": True,
          "messages": [*ASK, {"role": "tool", "tool_call_id": "zz", "content": "1"}]},
         "messages.1.tool_call_id", "no assistant tool call before it has id 'zz'"),
        ({"messages": [*ASK, history()[2], {"role": "tool", "tool_call_id": "c1", "content": "5"}, *ASK]},
         "messages.1", "missing: c2"),
        ({"messages": [*ASK, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
         "messages.1.tool_calls.0.function.arguments", "arguments must be a JSON object"),
        ({"messages": [{"role": "tool", "content": "1"}]}, "messages.0", "needs the tool_call_id"),
    ],
)  # fmt: skip
def test_bad_tool_requests_get_openai_error_bodies(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, **kwargs)
    body = err.value.body
    assert body["type"] == "invalid_request_error" and err.value.status_code == 400
    assert body["param"] == param and message in body["message"], body


def test_relevance_gate_narrows_an_auto_turn_to_the_requests_tool_or_an_answer(
    served: tuple[str, Any, Any],
) -> None:
    """--relevance-gate: once the request holds the model, its grammar admits the best-scoring
    tool only, or (under the threshold) a plain answer; without --constrain-tools it is refused."""
    import math

    from posttrain.errors import ConfigError
    from posttrain.inference import channel_logprobs
    from posttrain.pipelines.serve import run_serve
    from posttrain.pipelines.serve_schema import ChatRequest
    from posttrain.pipelines.serve_service import ChatService
    from posttrain.toolcall import tool_turn_grammar
    from posttrain.toolcall.relevance import RelevanceGate, relevance_scores

    _, model, tokenizer = served
    ask = ChatRequest.model_validate({"model": SERVED_NAME, "messages": ASK, "tools": TOOLS})
    tools = list(registry().values())
    (scores,) = relevance_scores(
        lambda p, t: channel_logprobs(model, tokenizer, p, t), [ASK[0]["content"]], [tools]
    )
    best = tools[max(range(len(scores)), key=scores.__getitem__)]
    for threshold, expected in ((-math.inf, [best]), (math.inf, [])):
        gate = RelevanceGate(threshold)
        service = ChatService(model, tokenizer, SERVED_NAME, constrain_tools=True, relevance_gate=gate)
        plan = service.plan(ask)
        assert plan.gated and plan.grammar == tool_turn_grammar(tools)  # all tools until it holds the model
        service.tokenize(plan)
        assert plan.grammar == tool_turn_grammar(expected)
    none = ChatRequest.model_validate(
        {"model": SERVED_NAME, "messages": ASK, "tools": TOOLS, "tool_choice": "none"}
    )
    assert not service.plan(none).gated
    with pytest.raises(ConfigError, match="add --constrain-tools"):
        run_serve(None, None, port=0, relevance_gate=0.2)


def test_serve_auto_gate_is_calibrated_for_the_loaded_model(served: tuple[str, Any, Any]) -> None:
    import io

    from rich.console import Console

    from posttrain.pipelines.serve import _gate

    _, model, tokenizer = served
    said = io.StringIO()
    gate = _gate("auto", model, tokenizer, Console(file=said, width=200), keep=0.95)
    assert gate.scorer == "model"
    assert f"relevance gate (model-scored): threshold {gate.threshold}" in said.getvalue()


def test_rerank_arguments_rewrites_a_call_the_channel_prefers_edited(served: tuple[str, Any, Any]) -> None:
    """--rerank-arguments: a returned call is the one of its edits the model's channel prefers,
    less the penalty for values the request does not name (here: the call itself or one of its
    single edits, always schema-valid), "none" turns and
    plain answers are left alone, and a chat-template server refuses it."""
    from posttrain.errors import ConfigError
    from posttrain.inference import channel_logprobs
    from posttrain.pipelines.serve import run_serve
    from posttrain.pipelines.serve_schema import ChatRequest
    from posttrain.pipelines.serve_service import ChatService
    from posttrain.toolcall.rerank import UNGROUNDED_PENALTY, argument_edits, call_prefix, ungrounded

    _, model, tokenizer = served
    service = ChatService(model, tokenizer, SERVED_NAME, rerank_arguments=True)
    plan = service.plan(ChatRequest.model_validate({"model": SERVED_NAME, "messages": ASK, "tools": TOOLS}))
    tool = registry()["add"]
    edits = argument_edits(tool, {"a": 5, "b": 3}, ASK[0]["content"])
    assert {"a": 2, "b": 3} in edits and {"a": 3, "b": 5} in edits  # a request number; swapped
    scores = channel_logprobs(
        model, tokenizer, [call_prefix(tool, e) for e in edits], [ASK[0]["content"]] * len(edits)
    )
    penalties = [UNGROUNDED_PENALTY * ungrounded(tool, e, ASK[0]["content"]) for e in edits]
    scores = [s - p for s, p in zip(scores, penalties, strict=True)]
    best = edits[max(range(len(edits)), key=scores.__getitem__)]
    out = service.reranked(plan, format_call("Add them.", "add", {"a": 5, "b": 3}))
    assert json.loads(out.split("```json\n")[1].split("\n```")[0]) == {"tool": "add", "args": best}
    answer = format_final("Easy.", "5")
    assert service.reranked(plan, answer) == answer
    # the completion a client gets carries the reranked call
    from posttrain.constrained import Sample

    service.tokenize(plan)
    sent = service.completion(plan, [Sample(format_call("Add them.", "add", {"a": 5, "b": 3}), 20, "stop")])
    (call,) = sent["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == best
    with pytest.raises(ConfigError, match="--rerank-arguments reads Thought→Action"):
        run_serve(None, None, port=0, tool_prompt="chat_template", rerank_arguments=True)
