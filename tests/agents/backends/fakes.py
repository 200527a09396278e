"""What the backend and team tests share: role contexts, the reply invariants, a store
stand-in and a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from posttrain.agents.history import jsonable
from posttrain.agents.roles import REPLY_MODELS, rules_answer
from posttrain.config.search_space import SearchSpace

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


class Recorder:
    """Stands in for the store's add_agent_message (the store itself is tested in test_store)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add_agent_message(self, run_id, episode_index, role, backend, request, response, fallback, error):  # noqa: ANN001
        self.rows.append(
            {"episode": episode_index, "fallback": fallback, "error": error, "response": response}
        )


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
