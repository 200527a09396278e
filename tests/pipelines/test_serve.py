"""`posttrain serve` over real HTTP on 127.0.0.1: the official `openai` client and the `openai`
agent backend against uvicorn serving tiny-random; constrained JSON from a random model; OpenAI
error bodies for bad requests; and the CLI (help, a taken port, an adapter served end to end)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from posttrain.agents.backends import AgentLog, OpenAIBackend
from posttrain.agents.roles import reply_schema
from posttrain.agents.team import AgentTeam
from posttrain.config.search_space import SearchSpace
from posttrain.constrained import chat_prompt_ids
from posttrain.inference import generate_batch
from posttrain.models import load_for_inference
from tests.conftest import REPO, run_cli
from tests.pipelines.conftest import SERVED_NAME

NAME = SERVED_NAME
HI = [{"role": "user", "content": "Say hello."}]
LR_OK = {
    "type": "object",
    "properties": {"lr": {"type": "number"}, "ok": {"type": "boolean"}},
    "required": ["lr", "ok"],
    "additionalProperties": False,
}


def json_format(schema: dict[str, Any], name: str = "reply") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=kwargs.pop("model", NAME), messages=kwargs.pop("messages", HI), **kwargs
    )


# ---------------------------------------------------------------- the OpenAI surface


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [NAME]
    card = client.models.retrieve(NAME)
    assert card.owned_by == "posttrain" and card.object == "model"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert err.value.code == "model_not_found"


def test_plain_completion_has_content_usage_and_is_seeded(client: openai.OpenAI, served: tuple) -> None:
    _, _, tokenizer = served
    reply = chat(client, max_tokens=12, seed=5, temperature=1.0)
    (choice,) = reply.choices
    assert reply.object == "chat.completion" and reply.model == NAME and choice.message.role == "assistant"
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.prompt_tokens == len(chat_prompt_ids(tokenizer, HI)) > 5
    assert 1 <= usage.completion_tokens <= 12
    assert (usage.completion_tokens == 12) == (choice.finish_reason == "length")
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # the same seed gives the same sample, another seed another one
    assert (
        chat(client, max_tokens=12, seed=5, temperature=1.0).choices[0].message.content
        == choice.message.content
    )
    assert (
        chat(client, max_tokens=12, seed=6, temperature=1.0).choices[0].message.content
        != choice.message.content
    )
    # n choices share one seeded generator, and usage counts all of them
    many = chat(client, max_tokens=6, seed=1, n=3, top_p=0.9)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert len({c.message.content for c in many.choices}) > 1
    cut = sum(c.finish_reason == "length" for c in many.choices)  # those sampled exactly 6 tokens
    assert 6 * cut + (3 - cut) <= many.usage.completion_tokens <= 18


def test_greedy_serving_matches_batched_generation(client: openai.OpenAI, served: tuple) -> None:
    _, model, tokenizer = served
    reply = chat(client, max_tokens=10, temperature=0)
    expected = generate_batch(model, tokenizer, [HI], max_new_tokens=10)[0]
    assert reply.choices[0].message.content.strip() == expected
    assert chat(client, max_tokens=10, temperature=0, seed=99).choices[0].message.content == (
        reply.choices[0].message.content
    )


def test_stop_strings_cut_the_text_before_their_first_occurrence(client: openai.OpenAI) -> None:
    full = chat(client, max_tokens=16, seed=5).choices[0].message.content  # greedy writes only newlines
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip(), f"pick another cut of {full!r}"
    cut = chat(client, max_tokens=16, seed=5, stop=[stop, "\x00never"])
    assert cut.choices[0].message.content == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop" and cut.usage.completion_tokens < 16


def test_max_tokens_is_capped_where_the_context_ends(client: openai.OpenAI, served: tuple) -> None:
    _, _, tokenizer = served
    words = 2100
    while len(chat_prompt_ids(tokenizer, [{"role": "user", "content": "hi " * words}])) > 2048 - 5:
        words -= 1
    messages = [{"role": "user", "content": "hi " * words}]
    room = 2048 - len(chat_prompt_ids(tokenizer, messages))
    assert 1 <= room <= 5
    reply = chat(client, messages=messages, max_tokens=500, seed=0)
    assert reply.usage.prompt_tokens + reply.usage.completion_tokens <= 2048
    assert reply.choices[0].finish_reason == "stop" or reply.usage.completion_tokens == room


def test_served_requests_queue_on_the_lock_and_keep_their_seeds(client: openai.OpenAI) -> None:
    alone = {seed: chat(client, max_tokens=8, seed=seed).choices[0].message.content for seed in range(3)}
    together: dict[int, str] = {}
    threads = [
        threading.Thread(
            target=lambda s=seed: together.__setitem__(
                s, chat(client, max_tokens=8, seed=s).choices[0].message.content
            )
        )
        for seed in range(3)
    ]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert together == alone


# ---------------------------------------------------------------- constrained JSON


class LrOk(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    lr: float
    ok: bool


class Tagged(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(max_length=8)
    level: int = Field(ge=1, le=3)
    tags: list[str] = Field(max_length=2)


def test_random_model_answers_schema_valid_json_for_several_seeds(client: openai.OpenAI) -> None:
    for seed in range(5):
        reply = chat(client, seed=seed, response_format=json_format(LR_OK))
        text = reply.choices[0].message.content
        assert reply.choices[0].finish_reason == "stop", text
        parsed = LrOk.model_validate(json.loads(text))
        assert list(json.loads(text)) == ["lr", "ok"] and isinstance(parsed.ok, bool)
        assert " " not in text  # compact JSON: no free whitespace to stall in
        assert reply.usage.completion_tokens < 60
    tagged = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "level": {"type": "integer", "minimum": 1, "maximum": 3},
            "tags": {"type": "array", "items": {"enum": ["red", "blue"]}, "maxItems": 2},
        },
        "required": ["name", "level", "tags"],
        "additionalProperties": False,
    }
    for seed in range(3):
        text = (
            chat(client, seed=seed, temperature=1.5, response_format=json_format(tagged))
            .choices[0]
            .message.content
        )
        reply = Tagged.model_validate(json.loads(text))
        assert set(reply.tags) <= {"red", "blue"}


def test_json_object_mode_starts_an_object(client: openai.OpenAI) -> None:
    reply = chat(client, seed=0, n=4, max_tokens=24, response_format={"type": "json_object"})
    for choice in reply.choices:
        assert choice.message.content.startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)


def test_openai_backend_gets_validated_agent_replies_without_fallback(
    served: tuple[str, Any, Any], tmp_path: Path
) -> None:
    space = SearchSpace()
    history = [{"episode": 0, "hparams": space.defaults(), "eval_loss": 2.0}]
    log = AgentLog(tmp_path / "agents.jsonl")
    backend = OpenAIBackend(base_url=served[0], model=NAME, api_key="x", max_text_chars=40, log=log)
    team = AgentTeam(backend, space, force_min_episodes=3)
    tuner = team.tuner(history, episode=1)
    judge = team.judge(history, episode=1)
    assert space.contains(tuner.hparams) and tuner.seal_plan.seal_epochs in (1, 2)
    assert judge.continue_  # fewer than force_min_episodes: the team keeps going whatever was said
    assert backend.format == "json_schema"  # the server took the schema; no downgrade
    lines = [json.loads(x) for x in (tmp_path / "agents.jsonl").read_text().splitlines()]
    assert [(x["role"], x["backend"], x["fallback"], x["error"]) for x in lines] == [
        ("tuner", "openai", False, None),
        ("judge", "openai", False, None),
    ]  # one attempt each: no repair, no rules fallback
    raw = json.loads(lines[0]["response"]["raw"])
    assert list(raw) == reply_schema("tuner", {"space": space.model_dump()}, 40)["required"]
    assert all(len(v) <= 40 for v in raw.values() if isinstance(v, str))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error", "param", "message"),
    [
        ({"messages": []}, openai.BadRequestError, "messages", "at least 1 item"),
        ({"response_format": json_format({"type": "nonsense"})}, openai.BadRequestError,
         "response_format.json_schema.schema", "Invalid type: nonsense"),
        ({"response_format": json_format({"type": "array", "minItems": 3, "maxItems": 1})},
         openai.BadRequestError, "response_format.json_schema.schema", "Unsatisfiable"),
        ({"response_format": json_format(LR_OK, name="has space")}, openai.BadRequestError,
         "response_format.json_schema.name", "pattern"),
        ({"response_format": {"type": "json_schema"}}, openai.BadRequestError, "response_format",
         "needs a json_schema"),
        ({"temperature": 3}, openai.BadRequestError, "temperature", "less than or equal to 2"),
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens", "greater than or equal to 1"),
        ({"n": 100}, openai.BadRequestError, "n", "less than or equal to 16"),
        ({"stop": ["a", "b", "c", "d", "e"]}, openai.BadRequestError, "stop", "at most 4"),
        ({"messages": [{"role": "function", "content": "3", "name": "f"}]}, openai.BadRequestError,
         "messages.0.role", "send 'tool' messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         openai.BadRequestError, "messages.0.content", "only text content parts"),
        ({"functions": [{"name": "f", "parameters": {"type": "object"}}]}, openai.BadRequestError,
         "functions", "send tools"),
        ({"messages": [{"role": "user", "content": "hi " * 2100}]}, openai.BadRequestError, "messages",
         "maximum context length is 2048"),
        ({"model": "gpt-4o-mini"}, openai.NotFoundError, "model", "serves `tiny-random`"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_error_bodies(
    client: openai.OpenAI, kwargs: dict[str, Any], error: type, param: str, message: str
) -> None:
    with pytest.raises(error) as err:
        chat(client, **kwargs)
    body = err.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error"
    assert body["param"] == param and message in body["message"]
    assert err.value.status_code == (404 if error is openai.NotFoundError else 400)
    if "maximum context" in message:
        assert body["code"] == "context_length_exceeded"


def post_raw(url: str, data: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_malformed_bodies_and_unknown_urls_are_client_errors(served: tuple, client: openai.OpenAI) -> None:
    url = served[0]
    status, body = post_raw(f"{url}/chat/completions", b'{"model": "tiny-random", "messages": [')
    assert status == 400 and body["error"]["message"].startswith("the request body is not valid JSON")
    status, body = post_raw(f"{url}/chat/completions", b"[1, 2]")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = post_raw(f"{url}/completions", b"{}")
    assert status == 404 and body["error"]["message"] == "Invalid URL (POST /v1/completions)"
    assert chat(client, max_tokens=2).choices  # still serving after all of that


# ---------------------------------------------------------------- the command


def test_serve_help_through_the_cli(tmp_path: Path) -> None:
    out = run_cli("serve", "--help", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for flag in ("--model", "--adapter", "--host", "--port", "--served-model-name"):
        assert flag in out.stdout


def test_a_taken_port_is_a_one_line_user_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli("serve", "--model", NAME, "--port", str(port), cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_serve_module_loads_without_torch_so_the_port_is_bound_first() -> None:
    """run_serve binds before it imports torch (~2 s on a 2-core CPU): a taken port fails fast
    only while nothing `posttrain.pipelines.serve` imports at the top pulls torch in."""
    code = "import sys, posttrain.pipelines.serve; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_serve_command_serves_an_adapter_under_its_path(tiny_spec: str, tmp_path: Path) -> None:
    import torch
    from peft import get_peft_model

    from posttrain.models import load_model, lora_config
    from posttrain.rundir import save_adapter

    base, tokenizer = load_model(tiny_spec)
    base_text = generate_batch(base, tokenizer, [HI], max_new_tokens=8)[0]
    peft_model = get_peft_model(base, lora_config(8, 16, 0.0))
    with torch.no_grad():  # B is zero at init: give the adapter a visible effect
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    adapter = save_adapter(peft_model, tmp_path / "adapter", tiny_spec, {})
    merged, _ = load_for_inference(tiny_spec, adapter)
    expected = generate_batch(merged, tokenizer, [HI], max_new_tokens=8)[0]
    assert expected != base_text  # so the served text below is the adapter's, not the base's

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", "serve", "--adapter", str(adapter), "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            found = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)[-2000:]
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=3, timeout=60)
        for _ in range(100):  # the URL is printed just before uvicorn starts accepting
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                time.sleep(0.1)
        assert [m.id for m in models.data] == [str(adapter)]
        reply = chat(client, model=str(adapter), max_tokens=8, temperature=0)
        assert reply.choices[0].message.content.strip() == expected
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 130, "".join(lines)[-2000:]  # uvicorn shut down, then `main`'s Ctrl-C code
