"""Hostile requests to `posttrain serve` over real HTTP: each gets a 4xx in OpenAI's error shape,
none is generated for, and the server keeps serving."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

NAME = "tiny-random"


@pytest.fixture(scope="module")
def url(tiny_spec: str) -> Iterator[str]:
    from posttrain.models import load_for_inference
    from posttrain.pipelines.serve import create_app, serve_in_thread

    model, tokenizer = load_for_inference(tiny_spec)
    with serve_in_thread(create_app(model, tokenizer, NAME), startup_timeout=60) as base:
        yield base


def _send(url: str, path: str, body: bytes | None, method: str = "POST") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + path, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _chat(**fields: Any) -> bytes:
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


BAD_BODIES = [
    ("truncated_json", b'{"model": "tiny-random", "messages": [', "JSON"),
    ("array_body", b"[1, 2]", ""),
    ("empty_body", b"", ""),
    ("no_messages", _chat(messages=...), "messages"),
    ("messages_not_a_list", _chat(messages="hi"), "messages"),
    ("empty_messages", _chat(messages=[]), "messages"),
    ("unknown_role", _chat(messages=[{"role": "wizard", "content": "x"}]), "messages"),
    ("no_content", _chat(messages=[{"role": "user"}]), "messages"),
    ("negative_temperature", _chat(temperature=-1), "temperature"),
    ("huge_temperature", _chat(temperature=50), "temperature"),
    ("zero_max_tokens", _chat(max_tokens=0), "max_tokens"),
    ("string_max_tokens", _chat(max_tokens="many"), "max_tokens"),
    ("top_p_above_one", _chat(top_p=2), "top_p"),
    ("bad_response_format", _chat(response_format={"type": "xml"}), "response_format"),
    (
        "bad_schema",
        _chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": 5}}),
        "",
    ),
    ("tools_not_a_list", _chat(tools="calculator"), "tools"),
    ("tool_without_name", _chat(tools=[{"type": "function", "function": {}}]), "tools"),
    ("legacy_functions", _chat(functions=[{"name": "f", "parameters": {}}]), "functions"),
    ("logit_bias", _chat(logit_bias={"1": 5}), "logit_bias"),
]


@pytest.mark.parametrize(("case", "body", "param"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_a_bad_request_gets_a_400_in_openai_shape(url, case, body, param):
    status, reply = _send(url, "/chat/completions", body)
    assert 400 <= status < 500, (status, reply)
    error = reply["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param:
        assert param in (error.get("param") or "") + error["message"], error


def test_an_unknown_model_is_a_404(url):
    status, reply = _send(url, "/chat/completions", _chat(model="gpt-4o"))
    assert status == 404 and NAME in reply["error"]["message"]


@pytest.mark.parametrize(
    ("path", "method"), [("/completions", "POST"), ("/chat/completions", "GET"), ("/nope", "GET")]
)
def test_unknown_urls_and_methods(url, path, method):
    status, reply = _send(url, path, b"{}" if method == "POST" else None, method)
    assert status in (404, 405) and "error" in reply


def test_the_server_still_serves_after_the_hostile_requests(url):
    status, reply = _send(url, "/models", None, "GET")
    assert status == 200 and reply["data"][0]["id"] == NAME
    status, reply = _send(url, "/chat/completions", _chat())
    assert status == 200 and reply["choices"][0]["message"]["role"] == "assistant"


def test_a_request_past_a_full_queue_gets_503_with_retry_after_and_the_server_keeps_serving(tiny_spec):
    """Overload is a hostile input too: with --max-queue 0 and a long generation running, the next
    request is refused at once in OpenAI's error shape, and served again once the model is free."""
    from posttrain.models import load_for_inference
    from posttrain.pipelines.serve import create_app, serve_in_thread
    from tests.test_serve_queue import LONG, call, chat, hang_up_later, health, wait_for

    model, tokenizer = load_for_inference(tiny_spec)
    with serve_in_thread(create_app(model, tokenizer, NAME, max_queue=0), startup_timeout=60) as url:
        base = url.removesuffix("/v1")
        running = hang_up_later(base, chat(**LONG))
        wait_for(lambda: health(base)["generating"] == 1, 30, "the long request generating")
        status, headers, reply = call(base, "POST", "/v1/chat/completions", chat())
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert reply["error"]["code"] == "queue_full" and "--max-queue 0" in reply["error"]["message"]
        running.close()
        wait_for(lambda: health(base)["generating"] == 0, 30, "the abandoned generation stopped")
        status, _, reply = call(base, "POST", "/v1/chat/completions", chat())
        assert status == 200 and reply["choices"][0]["message"]["role"] == "assistant"
