"""`stream: true` in `posttrain serve`: Server-Sent Events in OpenAI's `chat.completion.chunk`
format, ending with `data: [DONE]`.

Plain text streams as it is sampled: one delta per decoded piece, held back by the length of the
longest stop string (so a stop string is never half-sent) and while a character is still
incomplete. With tools the whole turn must be parsed before it is known to be a call, so the
finished message goes out as one delta (`tool_calls` or `content`), then the finish chunk.
`n` choices stream one after another, each chunk naming its `index`.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi.responses import StreamingResponse

from posttrain.constrained import Sample
from posttrain.pipelines.serve_queue import ClientGone
from posttrain.pipelines.serve_schema import APIError

_END = object()


class TextDeltas:
    """The decoded text of a growing token list, released in pieces no stop string can retract."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str]) -> None:
        self.decode, self.stop = decode, list(stop)
        self.holdback = max((len(s) for s in stop), default=1) - 1
        self.sent = ""

    def step(self, tokens: list[int]) -> str:
        text = self.decode(tokens)
        if text.endswith("\ufffd"):  # a multi-byte character split across tokens: wait for the rest
            return ""
        # A token may complete a stop string and run past it: cut there. Otherwise keep back what
        # could still become the start of one.
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        ready = text[: min(hits)] if hits else text[: len(text) - self.holdback]
        if len(ready) <= len(self.sent) or not ready.startswith(self.sent):
            return ""
        delta, self.sent = ready[len(self.sent) :], ready
        return delta

    def finish(self, final: str) -> str:
        """What is left to send of the final text (after any stop-string cut)."""
        return final[len(self.sent) :] if final.startswith(self.sent) else ""


class TextStream:
    """Feeds sampled tokens of each choice, as text deltas, to the SSE writer in another thread.
    Setting `closed` (the client left) stops the sampler at its next token."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str]) -> None:
        self.decode, self.stop = decode, stop
        self.queue: queue.Queue[Any] = queue.Queue()
        self.closed = threading.Event()
        self._deltas = TextDeltas(decode, stop)

    def start(self, index: int) -> None:
        self._deltas = TextDeltas(self.decode, self.stop)
        self.queue.put(("role", index))

    def token(self, index: int, tokens: list[int]) -> None:
        if self.closed.is_set():
            raise ClientGone
        self._put(index, self._deltas.step(tokens))

    def done(self, index: int, sample: Sample) -> None:
        self._put(index, self._deltas.finish(sample.text))

    def _put(self, index: int, text: str) -> None:
        if text:
            self.queue.put(("text", index, text))


def sse(obj: dict[str, Any] | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


def _chunk(head: dict[str, Any], choices: list[dict[str, Any]], usage: Any = None) -> str:
    body = {**head, "object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return sse(body)


def _head(completion: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "created", "model", "system_fingerprint")
    return {k: completion[k] for k in keys}


def _finish_and_usage(completion: dict[str, Any], include_usage: bool) -> Iterator[str]:
    head = _head(completion)
    for choice in completion["choices"]:
        yield _chunk(
            head,
            [
                {
                    "index": choice["index"],
                    "delta": {},
                    "logprobs": None,
                    "finish_reason": choice["finish_reason"],
                }
            ],
        )
    if include_usage:
        yield _chunk(head, [], completion["usage"])
    yield sse("[DONE]")


def completion_chunks(completion: dict[str, Any], include_usage: bool) -> Iterator[str]:
    """A finished chat.completion as chunks: each choice's message as one delta, then the finish
    chunks (tool_calls deltas carry an `index`, as OpenAI's do)."""
    head = _head(completion)
    for choice in completion["choices"]:
        message = choice["message"]
        delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
        if message.get("reasoning_content") is not None:
            delta["reasoning_content"] = message["reasoning_content"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": k, **call} for k, call in enumerate(message["tool_calls"])]
        yield _chunk(
            head, [{"index": choice["index"], "delta": delta, "logprobs": None, "finish_reason": None}]
        )
    yield from _finish_and_usage(completion, include_usage)


class Generation:
    """`produce` (the generation, calling a TextStream as it samples; returns the chat.completion)
    running in its own thread from construction on, so it starts, ends and calls `on_exit` (the
    model handed on) whether or not anyone ever reads the response body."""

    def __init__(
        self, stream: TextStream, produce: Callable[[], dict[str, Any]], on_exit: Callable[[], None]
    ) -> None:
        self.stream = stream
        self.outcome: dict[str, Any] = {}
        self.done = threading.Event()

        def work() -> None:
            try:
                self.outcome["completion"] = produce()
            except ClientGone:
                pass
            except Exception as exc:  # reported to the client by text_chunks, not lost in a thread
                self.outcome["error"] = exc
            finally:
                on_exit()
                self.done.set()
                stream.queue.put(_END)

        threading.Thread(target=work, daemon=True, name="posttrain-serve-stream").start()


def text_chunks(head: dict[str, Any], generation: Generation, include_usage: bool) -> Iterator[str]:
    """What `generation` streams, as chunks, as it comes. An error once streaming has begun can
    no longer be a status code: it goes out as an `error` event, which the openai client raises."""
    stream, outcome = generation.stream, generation.outcome
    try:
        while (item := stream.queue.get()) is not _END:
            delta = {"role": "assistant", "content": ""} if item[0] == "role" else {"content": item[2]}
            yield _chunk(head, [{"index": item[1], "delta": delta, "logprobs": None, "finish_reason": None}])
        if "error" in outcome:
            exc = outcome["error"]
            error = (
                exc
                if isinstance(exc, APIError)
                else APIError(500, f"{type(exc).__name__}: {exc}", kind="server_error")
            )
            yield sse(error.body())
            return
        if "completion" in outcome:  # absent when the client left and the sampler stopped
            yield from _finish_and_usage(outcome["completion"], include_usage)
    finally:
        stream.closed.set()  # the client left (or we are done): stop sampling for nobody


def sse_response(chunks: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
