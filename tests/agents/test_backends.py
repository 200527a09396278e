"""Backends: lenient parsing, one repair, rules fallback, logging; the real `openai` client over
real HTTP on 127.0.0.1; llguidance-constrained decoding on a random tiny Llama; and the agent
team's episode loop on every backend that can start here."""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from posttrain.agents.backends import (
    AgentLog,
    AgentTeam,
    LocalBackend,
    OpenAIBackend,
    bounded_numbers,
    complete_with_repair,
    extract_json,
    make_backend,
)
from posttrain.agents.roles import (
    REPLY_MODELS,
    ROLES,
    jsonable,
    merge_hparams,
    reply_schema,
    rules_answer,
)
from posttrain.config.search_space import SearchSpace
from posttrain.errors import ConfigError
from posttrain.store import Store

SPACE = SearchSpace()
HISTORY = [
    {
        "episode": 0,
        "hparams": SPACE.defaults(),
        "eval_loss": 2.0,
        "seal_eval_loss": 1.95,
        "seal_base_episode": 0,
    },
    {"episode": 1, "hparams": {**SPACE.defaults(), "lr": 5e-4}, "eval_loss": 2.1, "seal_delta": 0.02},
]
ITEMS = [{"prompt": "capital of France?", "expected": "Paris"}, {"prompt": "2+2?", "expected": "4"}]
CONTEXTS: dict[str, dict[str, Any]] = {
    "tuner": {"episode": 2, "history": HISTORY, "space": SPACE.model_dump(), "seed": 0},
    "judge": {"episode": 2, "history": HISTORY, "force_min_episodes": 3, "max_episodes": 4, "patience": 2},
    "reward_penalty": {"episode": 2, "history": HISTORY, "space": SPACE.model_dump()},
    "seal_expert": {"episode": 2, "history": HISTORY},
    "qa_generator": {"episode": 2, "val_rows": [{"instruction": "q", "output": "a"}] * 3, "n": 2},
    "qa_evaluator": {"episode": 2, "items": ITEMS, "answers": ["Paris", "five"]},
}


def wire(reply: BaseModel) -> dict[str, Any]:
    """A reply as an LLM following the wire schema writes it (override keys all present)."""
    out = jsonable(reply)
    if "override" in out:
        out["override"] = {k: out["override"].get(k) for k in SPACE.defaults()}
    return out


def assert_valid(role: str, reply: BaseModel, context: dict[str, Any]) -> None:
    """The invariants every reply must hold, whatever the model wrote."""
    assert isinstance(reply, REPLY_MODELS[role])

    def finite(value: Any) -> None:
        if isinstance(value, float):
            assert math.isfinite(value)
        elif isinstance(value, dict):
            [finite(v) for v in value.values()]
        elif isinstance(value, list):
            [finite(v) for v in value]

    finite(reply.model_dump())
    if role == "tuner":
        assert SPACE.contains(reply.hparams) and reply.seal_plan.seal_epochs in (1, 2)
    elif role == "judge":
        assert isinstance(reply.continue_, bool)
    elif role == "reward_penalty":
        assert set(reply.override) <= set(SPACE.defaults())
        assert SPACE.contains(SPACE.clamp(reply.override) | reply.override)
    elif role == "seal_expert":
        assert reply.seal_epochs in (1, 2)
    elif role == "qa_generator":
        assert 1 <= len(reply.items) <= context["n"] and all(i.prompt for i in reply.items)
    elif role == "qa_evaluator":
        assert len(reply.scores) == len(context["items"]) and all(0.0 <= s <= 1.0 for s in reply.scores)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------- parsing


def test_extract_json_tolerates_prose_and_fences() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Sure! Here it is:\n```json\n{"a": [1, 2]}\n```\nHope that helps.') == {"a": [1, 2]}
    assert extract_json('I propose {"a": {"b": 2}} because {x}') == {"a": {"b": 2}}
    assert math.isnan(extract_json('{"lr": NaN}')["lr"])
    for bad in ("", "no json here", '{"a": 1', "[1, 2", '```json\n{"a": \n```'):
        with pytest.raises(ValueError):
            extract_json(bad)


# ---------------------------------------------------------------- adversarial outputs (hypothesis)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(0, 20), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def llm_output(draw: st.DrawFn, role: str) -> str:
    obj = wire(rules_answer(role, CONTEXTS[role]))
    for _ in range(draw(st.integers(0, 3))):  # damage some keys, one level deep or at the top
        target = obj
        nested = [k for k, v in obj.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = obj[draw(st.sampled_from(nested))]
        if not target:
            continue
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(junk)
    text = json.dumps(obj)  # Python writes NaN/Infinity tokens, as some servers do
    shape = draw(st.sampled_from(["plain", "prose", "fence", "truncated", "not_json", "array"]))
    if shape == "prose":
        return f"Here is my answer: {text}\nLet me know."
    if shape == "fence":
        return f"```json\n{text}\n```"
    if shape == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if shape == "not_json":
        return draw(st.text(max_size=30))
    if shape == "array":
        return json.dumps([obj])
    return text


class Recorder:
    """Stands in for the store's add_agent_message (the store itself is tested in test_store)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add_agent_message(self, run_id, episode_index, role, backend, request, response, fallback, error):  # noqa: ANN001
        self.rows.append(
            {"episode": episode_index, "fallback": fallback, "error": error, "response": response}
        )


@pytest.mark.parametrize("role", ROLES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_adversarial_outputs_end_valid_or_in_a_logged_fallback(role: str, data: st.DataObject) -> None:
    context = CONTEXTS[role]
    outputs = [data.draw(llm_output(role)), data.draw(llm_output(role))]
    calls: list[list[dict]] = []

    def generate(_role: str, messages: list[dict], _schema: dict) -> str:
        calls.append(messages)
        return outputs[len(calls) - 1]

    store = Recorder()
    reply = complete_with_repair(
        "fake", generate, role, [{"role": "user", "content": "go"}], REPLY_MODELS[role], context,
        AgentLog(store=store, run_id=1),
    )  # fmt: skip
    assert_valid(role, reply, context)
    fallback = [r for r in store.rows if r["fallback"]]
    if fallback:
        assert len(calls) == 2 and len(store.rows) == 3
        assert reply == rules_answer(role, context)
        assert fallback[0]["error"]
    elif len(calls) == 2:  # repaired: the second request carried the bad reply and the error
        assert calls[1][-2] == {"role": "assistant", "content": outputs[0]}
        assert "could not be used" in calls[1][-1]["content"] and store.rows[0]["error"]
    assert all(r["episode"] == 2 for r in store.rows)


def test_a_valid_first_answer_is_not_repaired_and_values_are_clamped() -> None:
    calls = []
    obj = {"say": "go", "hparams": {"lr": 0.5, "batch_size": 5, "epochs": 9}, "seal_plan": {"seal_epochs": 0}}
    text = f"Sure: {json.dumps(obj)}"

    def generate(role: str, messages: list[dict], schema: dict) -> str:
        calls.append(schema)
        return text

    reply = complete_with_repair(
        "fake", generate, "tuner", [], REPLY_MODELS["tuner"], CONTEXTS["tuner"], None
    )
    assert len(calls) == 1 and calls[0] == reply_schema("tuner", CONTEXTS["tuner"])
    assert reply.hparams == {**SPACE.defaults(), "lr": 5e-4, "batch_size": 4, "epochs": 2}
    assert reply.seal_plan.seal_epochs == 1


# ---------------------------------------------------------------- a real OpenAI-compatible HTTP server

Script = Callable[[dict[str, Any]], tuple[int, Any, dict[str, str]]]


class ChatServer:
    """A real threaded HTTP server on 127.0.0.1 speaking /v1/chat/completions. Each request is
    answered by `script(body) -> (status, content_or_payload, headers)`; a string content with
    status 200 is wrapped in a chat.completion object."""

    def __init__(self, script: Script) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, payload, headers = script(body)
                if status == 200 and isinstance(payload, str):
                    payload = {
                        "id": f"chatcmpl-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": payload},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def scripted(*replies: tuple[int, Any, dict[str, str]] | str) -> Script:
    """Replies in order; the last one repeats."""
    queue = list(replies)

    def script(body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return (200, reply, {}) if isinstance(reply, str) else reply

    return script


def rules_server(body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    """An endpoint whose 'model' is the rules policy, reading the context from the prompt."""
    role = body["response_format"]["json_schema"]["name"]
    context = json.loads(body["messages"][-1]["content"])
    return 200, json.dumps(wire(rules_answer(role, context))), {}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "POSTTRAIN_AGENT_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_openai_backend_retries_repairs_and_logs_over_real_http(tmp_path: Path) -> None:
    good = {
        "say": "lower the batch",
        "hparams": {"lr": 0.01, "batch_size": 3, "epochs": 2, "warmup_ratio": 0.5, "lora_dropout": 0.1},
        "seal_plan": {"seal_epochs": 2},
    }  # fmt: skip
    script = scripted(
        (503, {"error": {"message": "overloaded", "type": "server_error"}}, {"retry-after-ms": "1"}),
        'Sure! {"say": "raise lr", "hparams": {"lr": 0.01, "batch_size"',  # truncated → repair
        f"```json\n{json.dumps(good)}\n```",
    )
    store = Store(f"sqlite:///{tmp_path / 'history.db'}")
    run_id = store.create_run("tune-test", "tune", {})
    log = AgentLog(tmp_path / "agents.jsonl", store, run_id)
    with ChatServer(script) as server:
        backend = OpenAIBackend(
            base_url=server.url, model="judge-model", api_key="sk-test", max_retries=2, log=log
        )
        team = AgentTeam(backend, SPACE, seed=0)
        reply = team.tuner(HISTORY, episode=2, judge_feedback="be careful")
    assert reply.hparams == {
        "lr": 5e-4,
        "batch_size": 2,
        "epochs": 2,
        "warmup_ratio": 0.2,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.1,
    }
    assert reply.say == "lower the batch" and reply.seal_plan.seal_epochs == 2
    # 503 → the client's own retry; truncated JSON → our one repair request
    assert len(server.requests) == 3
    first = server.requests[0]
    assert first["model"] == "judge-model" and server.headers[0]["authorization"] == "Bearer sk-test"
    context = json.loads(first["messages"][1]["content"])
    assert context["judge_feedback"] == "be careful" and context["episode"] == 2
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "tuner",
            "schema": reply_schema("tuner", {"space": SPACE.model_dump()}),
            "strict": True,
        },
    }
    repair = server.requests[2]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-2]["content"].startswith("Sure!")
    assert "truncated" in repair[-1]["content"]
    lines = read_log(tmp_path / "agents.jsonl")
    assert [(x["role"], x["backend"], x["fallback"], x["episode"]) for x in lines] == [
        ("tuner", "openai", False, 2)
    ] * 2
    assert lines[0]["error"] and lines[1]["error"] is None
    assert lines[1]["response"]["parsed"]["hparams"]["lr"] == 5e-4
    rows = store.list_agent_messages(run_id)
    assert [(r.role, r.backend, r.episode_index, r.fallback) for r in rows] == [
        ("tuner", "openai", 2, False)
    ] * 2
    store.close()


def test_openai_backend_downgrades_to_json_mode_when_schemas_are_unsupported() -> None:
    judge = json.dumps({"say": "ok", "continue": True, "reason": "improving", "feedback": "keep lr"})
    script = scripted(
        (
            400,
            {
                "error": {
                    "message": "response_format json_schema not supported",
                    "type": "invalid_request_error",
                }
            },
            {},
        ),
        judge,
    )
    with ChatServer(script) as server:
        backend = OpenAIBackend(base_url=server.url, max_retries=0)
        team = AgentTeam(backend)
        assert team.judge(HISTORY, 2).continue_
        assert team.judge(HISTORY, 2).reason == "improving"
    assert [r.get("response_format", {}).get("type") for r in server.requests] == [
        "json_schema",
        "json_object",
        "json_object",  # remembered
    ]
    assert backend.format == "json_object" and server.requests[0]["model"] == "gpt-4o-mini"


def test_openai_backend_falls_back_to_rules_after_a_failed_repair(tmp_path: Path) -> None:
    with ChatServer(scripted("I think we should definitely keep going!")) as server:
        backend = make_backend("openai", base_url=server.url, log=AgentLog(tmp_path / "agents.jsonl"))
        reply = AgentTeam(backend, force_min_episodes=3).judge(HISTORY, 2)
    assert len(server.requests) == 2  # the question and one repair, no more
    assert reply == AgentTeam(force_min_episodes=3).judge(HISTORY, 2)
    lines = read_log(tmp_path / "agents.jsonl")
    assert [x["fallback"] for x in lines] == [False, False, True]
    assert "no complete JSON object" in lines[-1]["error"]


def test_unreachable_endpoint_falls_back_at_once(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(
        base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5, log=AgentLog(tmp_path / "a.jsonl")
    )
    reply = AgentTeam(backend).seal_expert(HISTORY, 2)
    assert reply.seal_epochs == 1  # the last SEAL hurt (+0.02): rules keep one epoch
    lines = read_log(tmp_path / "a.jsonl")
    assert len(lines) == 2 and lines[0]["error"].startswith("APIConnectionError") and lines[1]["fallback"]


def test_openai_backend_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("POSTTRAIN_AGENT_MODEL", "llama3.1")
    backend = OpenAIBackend(timeout=3, max_retries=4)
    assert str(backend.client.base_url) == "http://127.0.0.1:9/v1/" and backend.model == "llama3.1"
    assert backend.client.max_retries == 4 and backend.client.timeout == 3
    with pytest.raises(ConfigError, match="unknown agent backend"):
        make_backend("gpt")  # type: ignore[arg-type]


# ---------------------------------------------------------------- local constrained decoding


@pytest.fixture(scope="module")
def tiny_model(tiny_spec: str) -> tuple[Any, Any]:
    pytest.importorskip("llguidance")
    import torch

    from posttrain.models import device_settings, load_model

    torch.set_num_threads(1)
    return load_model(tiny_spec, device_settings("cpu"))


def test_random_model_writes_schema_valid_json_for_every_role(
    tiny_model: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tokenizer = tiny_model
    log = AgentLog(tmp_path / "agents.jsonl")
    backend = LocalBackend(model, tokenizer, max_new_tokens=200, max_text_chars=12, log=log)
    for role in ROLES:
        reply = backend.complete_json(
            role, [{"role": "user", "content": "x"}], REPLY_MODELS[role], CONTEXTS[role]
        )
        assert_valid(role, reply, CONTEXTS[role])
    lines = read_log(tmp_path / "agents.jsonl")
    assert [x["role"] for x in lines] == list(ROLES)  # one attempt each: no repair, no fallback
    for line in lines:
        raw = json.loads(line["response"]["raw"], parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        required = reply_schema(line["role"], CONTEXTS[line["role"]])["required"]
        assert list(raw) == required
        strings = [v for v in raw.values() if isinstance(v, str)]
        assert all(len(s) <= 12 for s in strings)
    # greedy decoding is deterministic
    backend.complete_json(
        "tuner", [{"role": "user", "content": "x"}], REPLY_MODELS["tuner"], CONTEXTS["tuner"]
    )
    assert read_log(tmp_path / "agents.jsonl")[-1]["response"]["raw"] == lines[0]["response"]["raw"]


def test_sampling_also_stays_in_the_grammar(tiny_model: tuple[Any, Any]) -> None:
    model, tokenizer = tiny_model
    backend = LocalBackend(model, tokenizer, max_new_tokens=200, temperature=1.5, max_text_chars=8, seed=3)
    store = Recorder()
    backend.log = AgentLog(store=store, run_id=1)
    for seed in range(3):
        backend.seed = seed
        assert_valid(
            "tuner", backend.complete_json("tuner", [], REPLY_MODELS["tuner"], CONTEXTS["tuner"]), {}
        )
    assert not any(r["fallback"] or r["error"] for r in store.rows)


def test_bounded_numbers_adds_precision_only_where_missing() -> None:
    schema = reply_schema("tuner", CONTEXTS["tuner"])
    bounded = bounded_numbers(schema)
    assert bounded["properties"]["hparams"]["properties"]["lr"]["multipleOf"] == 1e-7
    assert bounded["properties"]["hparams"]["properties"]["warmup_ratio"]["multipleOf"] == 1e-4
    assert "multipleOf" not in schema["properties"]["hparams"]["properties"]["lr"]  # input untouched
    assert bounded_numbers({"type": "number", "multipleOf": 0.5}) == {"type": "number", "multipleOf": 0.5}


# ---------------------------------------------------------------- the team on every backend


@pytest.fixture(params=["rules", "openai", "local"])
def team_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any, Path]]:
    log_path = tmp_path / "agents.jsonl"
    log = AgentLog(log_path)
    if request.param == "rules":
        yield "rules", make_backend("rules", log=log), log_path
    elif request.param == "openai":
        with ChatServer(rules_server) as server:
            yield "openai", make_backend("openai", base_url=server.url, max_retries=0, log=log), log_path
    else:
        model, tokenizer = request.getfixturevalue("tiny_model")
        yield "local", make_backend("local", model=model, tokenizer=tokenizer, max_new_tokens=320,
                                    max_text_chars=10, log=log), log_path  # fmt: skip


def test_three_episodes_of_the_seed_loop_on_every_backend(team_backend: tuple[str, Any, Path]) -> None:
    kind, backend, log_path = team_backend
    team = AgentTeam(backend, SPACE, force_min_episodes=3, max_episodes=3)
    history: list[dict[str, Any]] = []
    val_rows = [{"instruction": f"say {w}", "output": w} for w in ("yes", "no", "maybe", "later")]
    for episode in range(3):
        if history:
            judge = team.judge(history, episode)
            assert judge.continue_  # fewer than force_min_episodes and nothing degrades
        reward = team.reward_penalty(history, episode)
        tuner = team.tuner(history, episode, "", reward, team.seal_summary(history))
        hparams = merge_hparams(tuner.hparams, reward.override, SPACE)
        loss = 2.0 + abs(math.log(hparams["lr"] / 1e-4)) * 0.1  # stands in for train_and_eval
        history.append({"episode": episode, "hparams": hparams, "eval_loss": loss})
        seal = team.seal_expert(history, episode, "", reward)
        history[-1].update(seal_eval_loss=loss - 0.01 * seal.seal_epochs, seal_base_episode=episode)
        qa = team.qa_generate(val_rows, 2, episode)
        scores = team.qa_evaluate(qa.items, [i.expected for i in qa.items], episode)
        history[-1]["qa_score"] = scores.mean_score
        assert SPACE.contains(hparams) and 0 <= scores.mean_score <= 1
    lines = read_log(log_path)
    assert len(lines) == 3 * 6 - 1  # 6 roles per episode, no judge before the first
    assert {x["backend"] for x in lines} == {kind} and not any(x["fallback"] for x in lines)
    assert [x["episode"] for x in lines if x["role"] == "tuner"] == [0, 1, 2]
    if kind != "local":  # rules over HTTP must agree with rules in-process
        assert rules_answer("qa_evaluator", {"items": ITEMS, "answers": ["Paris", "4"]}).scores == [1.0, 1.0]
        assert history[-1]["qa_score"] == 1.0


def test_agent_log_writes_strict_json(tmp_path: Path) -> None:
    log = AgentLog(tmp_path / "deep" / "agents.jsonl")
    log.record("judge", "rules", {"x": math.nan}, {"y": [math.inf, 1.5]}, episode=0)
    (line,) = read_log(tmp_path / "deep" / "agents.jsonl")
    assert line["request"] == {"x": None} and line["response"] == {"y": [None, 1.5]}
