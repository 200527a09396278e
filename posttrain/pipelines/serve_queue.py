"""Admission to `posttrain serve`'s one model: one generation at a time, a bounded FIFO queue
behind it, 503 with `Retry-After` when the queue is full, and a request whose client left
dropped from the queue or stopped at its next token.

Why a queue and not batching across requests: every request samples token by token with its own
KV cache, seeded generator, stop strings and llguidance matcher (`constrained.sample`); batching
them would mean a second sampler. A bounded queue keeps each request's output exactly what it
would be alone (seeds stay reproducible) and turns overload into a clear, retryable answer.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from posttrain.pipelines.serve_schema import APIError

DEFAULT_MAX_QUEUE = 8
POLL_S = 0.05  # how often a waiting request looks for its turn and for its client having left


class ClientGone(Exception):
    """The client disconnected: raised inside the sampler to stop generating for nobody."""


@dataclass(eq=False)
class Ticket:
    """One request's place: waiting, then generating (`admitted` set), then gone (`left`)."""

    admitted: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0
    left: bool = False


class Admission:
    """One generation at a time; at most `max_queue` requests wait behind it, first come first
    served. Thread-safe: tickets are released from the threads that generate."""

    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.max_queue = max_queue
        self._lock = threading.Lock()
        self._running: Ticket | None = None
        self._waiting: deque[Ticket] = deque()
        self._durations: deque[float] = deque(maxlen=16)

    def enter(self) -> Ticket:
        """A ticket that generates now or waits its turn; APIError 503 (with Retry-After) when the
        queue is full."""
        ticket = Ticket()
        with self._lock:
            if self._running is None:
                self._start(ticket)
            elif len(self._waiting) < self.max_queue:
                self._waiting.append(ticket)
            else:
                raise self._busy()
        return ticket

    async def wait_turn(self, ticket: Ticket, gone: Callable[[], Awaitable[bool]]) -> bool:
        """Wait (without holding a thread) until `ticket` may generate; False, and the place
        given up, when `gone()` says the client left first."""
        while not ticket.admitted.is_set():
            if await gone():
                self.leave(ticket)
                return False
            await asyncio.sleep(POLL_S)
        return True

    def leave(self, ticket: Ticket) -> None:
        """Give up `ticket`'s place (idempotent): a generating ticket hands the model to the
        longest-waiting one."""
        with self._lock:
            if ticket.left:
                return
            ticket.left = True
            if ticket is self._running:
                self._durations.append(time.monotonic() - ticket.started)
                self._running = None
                if self._waiting:
                    self._start(self._waiting.popleft())
            else:
                self._waiting.remove(ticket)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def generating(self) -> int:
        return int(self._running is not None)

    def _start(self, ticket: Ticket) -> None:
        ticket.started = time.monotonic()
        self._running = ticket
        ticket.admitted.set()

    def retry_after(self) -> int:
        """Seconds until a queue place is likely to free: a place frees when the running generation
        ends, so the median of recent generations minus what this one has run, at least 1 (1 too
        before any generation has finished, when there is nothing to estimate from)."""
        if self._running is None or not self._durations:
            return 1
        left = statistics.median(self._durations) - (time.monotonic() - self._running.started)
        return max(1, math.ceil(left))

    def _busy(self) -> APIError:
        seconds = self.retry_after()
        message = (
            f"the server is busy: one request is generating and {len(self._waiting)} are waiting, "
            f"the most it queues (--max-queue {self.max_queue}); retry in {seconds} s"
        )
        return APIError(
            503, message, code="queue_full", kind="server_error", headers={"Retry-After": str(seconds)}
        )


async def watch_client(
    gone: Callable[[], Awaitable[bool]], cancel: threading.Event, until: threading.Event
) -> None:
    """Set `cancel` as soon as `gone()` says the client left, polling until `until` is set.

    uvicorn drops writes to a closed connection without an error, so a generation cannot learn
    from a failed write that nobody reads it; this watcher tells it instead.
    """
    while not until.is_set():
        if await gone():
            cancel.set()
            return
        await asyncio.sleep(POLL_S)
