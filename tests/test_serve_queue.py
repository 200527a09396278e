"""`posttrain serve` under concurrent requests, over real HTTP on 127.0.0.1 with tiny-random: one
generation at a time, a bounded FIFO queue with 503 + Retry-After past it, `/health` and
`/v1/models` answering while a long request generates, and a client that hangs up giving up its
queue place or stopping its generation. Raw sockets stand in for clients that disconnect."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from posttrain.pipelines.serve_queue import Admission
from posttrain.pipelines.serve_schema import APIError

NAME = "tiny-random"
# Greedy tiny-random runs to the token limit (asserted below): seconds of generation on a CPU.
LONG = {"max_tokens": 1800, "temperature": 0}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields}


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of one request; http.client, so no proxy setting interferes."""
    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=600)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def health(base: str) -> dict[str, Any]:
    return call(base, "GET", "/health")[2]


def hang_up_later(base: str, body: dict[str, Any], first_event: bool = False) -> socket.socket:
    """Send a chat request on a raw socket and return the socket unread (close it to hang up);
    with `first_event`, after the first Server-Sent Event has arrived."""
    where = urlsplit(base)
    sock = socket.create_connection((where.hostname, where.port), timeout=120)
    data = json.dumps(body).encode()
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    seen = b""
    while first_event and b"data: " not in seen:
        chunk = sock.recv(4096)
        assert chunk, seen
        seen += chunk
    return sock


def wait_for(check: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until `check()` holds; fails after `within` seconds."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"{what} did not happen within {within} s"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def base(tiny_spec: str) -> Iterator[str]:
    """A server with --max-queue 1: one request generating, one waiting, the next refused."""
    import torch

    from posttrain.models import load_for_inference
    from posttrain.pipelines.serve import create_app, serve_in_thread

    torch.set_num_threads(1)
    model, tokenizer = load_for_inference(tiny_spec)
    with serve_in_thread(create_app(model, tokenizer, NAME, max_queue=1), startup_timeout=60) as url:
        yield url.removesuffix("/v1")


@pytest.fixture(scope="module")
def long_seconds(base: str) -> float:
    """How long LONG takes alone, to the last token: what a hang-up must cut short."""
    start = time.monotonic()
    status, _, reply = call(base, "POST", "/v1/chat/completions", chat(**LONG))
    took = time.monotonic() - start
    assert status == 200 and reply["choices"][0]["finish_reason"] == "length", reply
    assert reply["usage"]["completion_tokens"] == LONG["max_tokens"]
    assert took > 1.0, f"LONG took {took:.1f} s: too short to tell a cancelled generation from a finished one"
    return took


def test_a_burst_past_the_queue_gets_503_with_retry_after_and_the_admitted_ones_200(base, long_seconds):
    done: dict[Any, tuple[float, tuple[int, dict[str, str], Any]]] = {}

    def send(key: Any, body: dict[str, Any]) -> None:
        reply = call(base, "POST", "/v1/chat/completions", body)
        done[key] = (time.monotonic(), reply)

    long = threading.Thread(target=send, args=("long", chat(**LONG)))
    long.start()
    wait_for(lambda: health(base)["generating"] == 1, 30, "the long request generating")
    burst = [threading.Thread(target=send, args=(i, chat(seed=i))) for i in range(4)]
    for t in burst:
        t.start()
    # The overflow is answered at once, while the long request still runs.
    wait_for(lambda: sum(i in done for i in range(4)) == 3, 10, "three 503s")
    assert long.is_alive() and "long" not in done
    for t in [long, *burst]:
        t.join(600)
    statuses = sorted(done[i][1][0] for i in range(4))
    assert statuses == [200, 503, 503, 503]
    for i in range(4):
        status, headers, reply = done[i][1]
        if status == 503:
            assert int(headers["retry-after"]) >= 1
            error = reply["error"]
            assert error["type"] == "server_error" and error["code"] == "queue_full"
            assert "--max-queue 1" in error["message"] and "retry in" in error["message"]
        else:  # the admitted one waited its turn behind the long request, then was answered
            assert reply["choices"][0]["message"]["role"] == "assistant"
            assert done[i][0] > done["long"][0]
    assert done["long"][1][0] == 200
    assert done["long"][1][2]["usage"]["completion_tokens"] == LONG["max_tokens"]
    assert health(base) == {"status": "ok", "generating": 0, "waiting": 0, "max_queue": 1}


def test_health_and_models_answer_while_a_long_request_generates_and_a_hang_up_stops_it(base, long_seconds):
    sock = hang_up_later(base, chat(**LONG))
    wait_for(lambda: health(base)["generating"] == 1, 30, "the long request generating")
    start = time.monotonic()
    status, _, models = call(base, "GET", "/v1/models")
    assert status == 200 and models["data"][0]["id"] == NAME
    assert health(base)["generating"] == 1  # both answered while it still generates
    assert time.monotonic() - start < 1.0
    sock.close()  # a non-streaming client gives up: its generation stops at the next token
    freed = wait_for(lambda: health(base)["generating"] == 0, long_seconds / 2, "the model freed")
    assert freed < long_seconds / 2


def test_a_disconnected_streaming_client_frees_the_model_for_the_next_request(base, long_seconds):
    sock = hang_up_later(base, chat(**LONG, stream=True), first_event=True)
    assert health(base)["generating"] == 1
    start = time.monotonic()
    sock.close()
    status, _, reply = call(base, "POST", "/v1/chat/completions", chat(seed=1))
    assert status == 200 and reply["usage"]["completion_tokens"] <= 2
    assert time.monotonic() - start < long_seconds / 2, "the next request waited for the abandoned stream"
    assert health(base)["generating"] == 0


def test_a_queued_client_that_hangs_up_gives_up_its_place(base, long_seconds):
    running = hang_up_later(base, chat(**LONG))
    wait_for(lambda: health(base)["generating"] == 1, 30, "the long request generating")
    queued = hang_up_later(base, chat(seed=2))
    wait_for(lambda: health(base)["waiting"] == 1, 10, "the second request queued")
    queued.close()
    wait_for(lambda: health(base)["waiting"] == 0, 5, "the abandoned place freed")
    # The freed place takes the next request (no 503), which is answered once the model is free.
    answer: list[tuple[int, dict[str, str], Any]] = []
    nxt = threading.Thread(target=lambda: answer.append(call(base, "POST", "/v1/chat/completions", chat())))
    nxt.start()
    wait_for(lambda: health(base)["waiting"] == 1, 10, "the next request queued")
    running.close()
    nxt.join(long_seconds)
    assert answer and answer[0][0] == 200, answer


# ---------------------------------------------------------------- the queue itself


def test_admission_is_first_come_first_served_and_refuses_past_max_queue():
    queue = Admission(max_queue=2)
    first, second, third = queue.enter(), queue.enter(), queue.enter()
    assert first.admitted.is_set() and not second.admitted.is_set() and queue.waiting == 2
    with pytest.raises(APIError) as refused:
        queue.enter()
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    queue.leave(first)
    assert second.admitted.is_set() and not third.admitted.is_set()
    queue.leave(third)  # gave up while waiting: the queue shrinks, the running one keeps the model
    queue.leave(third)  # leaving twice is harmless
    assert queue.waiting == 0 and queue.generating == 1
    queue.leave(second)
    assert queue.generating == 0 and queue.enter().admitted.is_set()


def test_retry_after_is_what_the_running_generation_likely_has_left():
    queue = Admission(max_queue=0)
    ticket = queue.enter()
    time.sleep(1.6)  # one finished generation of ~1.6 s teaches the estimate
    queue.leave(ticket)
    queue.enter()
    with pytest.raises(APIError) as refused:
        queue.enter()
    # ceil(1.6 s typical - ~0 s run so far) = 2; 3 if a loaded machine slept past 2 s
    assert int(refused.value.headers["Retry-After"]) in (2, 3)


def test_a_waiting_request_whose_client_left_is_dropped():
    queue = Admission(max_queue=1)
    running, waiting = queue.enter(), queue.enter()

    async def gone() -> bool:
        return True

    assert asyncio.run(queue.wait_turn(waiting, gone)) is False
    assert queue.waiting == 0 and waiting.left
    queue.leave(running)
    assert queue.generating == 0  # nobody was handed the model
