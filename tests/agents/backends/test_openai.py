"""The real `openai` client over real HTTP on 127.0.0.1: retries, repair, format downgrade,
rules fallback, configuration."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from posttrain.agents.backends import AgentLog, OpenAIBackend, make_backend
from posttrain.agents.roles import reply_schema
from posttrain.agents.team import AgentTeam
from posttrain.errors import ConfigError
from posttrain.store import Store
from tests.agents.backends.fakes import HISTORY, SPACE, ChatServer, read_log, scripted

pytestmark = pytest.mark.usefixtures("no_proxy")


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
