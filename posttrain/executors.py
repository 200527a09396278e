"""Where independent work runs: one after another in this process, or fanned out over Ray.

Three kinds of work in posttrain are independent units: the proposals of a tune episode, the
inner update of each SEAL self-edit, and shards of agent rollouts. A pipeline hands them to
`executor.map(fn, items)` and gets the results back in input order, whichever executor runs
them. `LocalExecutor` is a plain loop (the pipelines' fast path: `fn` may close over the
resident base model). `RayExecutor` runs each item as a Ray task, so `fn` must be picklable
and load what it needs in the worker (see `worker_cached`).

Ray retries a task that raised or whose worker died (`max_retries`, `retry_exceptions=True`).
With an `AttemptLog`, each attempt writes a row to the history store from inside the worker
(start, then ok or failed with the error), so `posttrain runs show` lists every retry; an
attempt whose worker died never records an outcome and is marked "lost" once the task is done.
A Ray cluster of several machines therefore needs a store all of them reach (PostgreSQL) and
a run directory on shared storage.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy.engine import make_url

from posttrain.errors import PosttrainError

T = TypeVar("T")
R = TypeVar("R")
ExecutorKind = Literal["local", "ray"]

# Settings a Ray worker must see as the driver does: where models are materialized, which store
# and hub cache to use. PYTHONPATH is added separately (see `worker_env`).
_PASSED_ENV = ("POSTTRAIN_HOME", "POSTTRAIN_STORE", "HF_HOME", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")
# Ray forwards every worker's output to the driver, where the progress bars of several workers
# interleave into noise; the driver's own stay as they are. A variable set in the driver wins.
_QUIET_WORKERS = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


class TaskFailedError(PosttrainError):
    """A task still failed after its last retry; the message names the stage, the task and why."""


@dataclass(frozen=True)
class AttemptLog:
    """Where workers record task attempts: a store URL they can open themselves, and the run."""

    store_url: str
    run_id: int

    @classmethod
    def for_store(cls, connect_url: str, run_id: int) -> AttemptLog:
        """Pass `Store.connect_url`; a relative SQLite path is made absolute, because a Ray worker
        does not share the driver's working directory."""
        url = make_url(connect_url)
        database = url.database or ""
        if url.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
            url = url.set(database=str(Path(database).expanduser().resolve()))
        return cls(url.render_as_string(hide_password=False), run_id)


class Executor(Protocol):
    """Runs `fn` on every item and returns the results in input order.

    `stage` and `keys` name the tasks in the store and in errors ("tune.train",
    "episode0/proposal1"); keys default to "0", "1", ....
    """

    kind: ExecutorKind

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        stage: str = "task",
        keys: Sequence[str] | None = None,
    ) -> list[R]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """A plain loop in this process: no pickling, no retries, nothing recorded (today's path)."""

    kind: ExecutorKind = "local"

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        stage: str = "task",
        keys: Sequence[str] | None = None,
    ) -> list[R]:
        return [fn(item) for item in items]

    def close(self) -> None:
        pass


class RayExecutor:
    """One Ray task per item, `max_retries` retries each, attempts recorded through `log`.

    `address` None starts a local Ray (all CPUs and GPUs of this machine) unless this process
    already called `ray.init`, whose cluster is then used and left running (give that call
    `runtime_env={"env_vars": worker_env()}` so workers import the same posttrain); "auto" or
    "ray://host:10001" connects to a cluster. Per task: `num_cpus` (None = 1) and `num_gpus`
    (None = 1 when the cluster has a GPU, else 0).
    """

    kind: ExecutorKind = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        max_retries: int = 2,
        log: AttemptLog | None = None,
    ) -> None:
        ray = import_ray()
        self._started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()}, "logging_level": "WARNING"}
            if address is None:
                options["include_dashboard"] = False
            ray.init(address=address, **options)
            self._started = True
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.num_cpus = 1.0 if num_cpus is None else num_cpus
        self.num_gpus = (1.0 if gpus >= 1 else 0.0) if num_gpus is None else num_gpus
        self.max_retries = max_retries
        self.log = log
        self._remote = ray.remote(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_retries=max_retries,
            retry_exceptions=True,
        )(run_attempt)

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        stage: str = "task",
        keys: Sequence[str] | None = None,
    ) -> list[R]:
        ray = import_ray()
        keys = [str(i) for i in range(len(items))] if keys is None else list(keys)
        if len(keys) != len(items):
            raise ValueError(f"{stage}: {len(keys)} keys for {len(items)} items")
        if not items:
            return []
        fn_ref = ray.put(fn)  # shipped once per map, not once per task (it may hold the data)
        refs = [
            self._remote.remote(fn_ref, item, self.log, stage, key)
            for item, key in zip(items, keys, strict=True)
        ]
        results: list[R] = []
        try:
            for key, ref in zip(keys, refs, strict=True):
                try:
                    results.append(ray.get(ref))
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    message = f"{type(cause).__name__}: {cause}".splitlines()[0]
                    where = " (every attempt is in the store: `posttrain runs show`)" if self.log else ""
                    raise TaskFailedError(
                        f"{stage} task {key} failed after {self.max_retries + 1} attempt(s): {message}{where}"
                    ) from exc
        finally:
            _cancel_unfinished(ray, refs[len(results) :])
            if self.log is not None:
                _mark_lost(self.log, stage, keys[: len(results) + 1])
        return results

    def close(self) -> None:
        """Shut Ray down if this executor started it; a cluster it joined keeps running."""
        if self._started:
            import_ray().shutdown()
            self._started = False


def _cancel_unfinished(ray: Any, refs: list[Any]) -> None:
    """Cancel the tasks among `refs` that have not finished, and only those.

    Cancelling a task whose (failed) result has just come back races with Ray's own reply
    handler and aborts the driver: `Check failed: it != submissible_tasks_.end()` (Ray 2.60,
    ray-project/ray#54798), which killed a CI run of the test suite at "gives up after the last
    retry". Finished refs are left alone; the failed one always is.
    """
    if not refs:
        return
    with suppress(Exception):
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in pending:
            with suppress(Exception):
                ray.cancel(ref)


def make_executor(
    kind: ExecutorKind,
    *,
    ray_address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    max_retries: int = 2,
    log: AttemptLog | None = None,
) -> LocalExecutor | RayExecutor:
    """The executor a config's `executor` block names (its fields are this function's keywords)."""
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(
            ray_address, num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries, log=log
        )
    raise PosttrainError(f"executor.kind must be local or ray, got {kind!r}")


@contextmanager
def open_executor(kind: ExecutorKind, **options: Any) -> Iterator[LocalExecutor | RayExecutor]:
    """`make_executor` for the length of a block; a Ray it started is shut down afterwards."""
    executor = make_executor(kind, **options)
    try:
        yield executor
    finally:
        executor.close()


def import_ray() -> Any:
    """The `ray` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise PosttrainError(
            "executor.kind=ray needs Ray: run `pip install posttrain[ray]` (or `pip install 'ray>=2.40,<3'`)"
        ) from exc
    return ray


def worker_env() -> dict[str, str]:
    """Environment for Ray workers: the driver's posttrain source first on PYTHONPATH (so a
    checkout or worktree is what workers import), the settings in `_PASSED_ENV`, and quiet
    library progress bars (`_QUIET_WORKERS`) unless the driver sets those variables."""
    source = str(Path(__file__).resolve().parents[1])
    path = [source] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != source]
    env = {"PYTHONPATH": os.pathsep.join(path), **_QUIET_WORKERS}
    for name in (*_PASSED_ENV, *_QUIET_WORKERS):
        if name in os.environ:
            env[name] = os.environ[name]
    if "POSTTRAIN_HOME" in env:
        env["POSTTRAIN_HOME"] = str(Path(env["POSTTRAIN_HOME"]).expanduser().resolve())
    return env


# ---------------------------------------------------------------- inside the worker


def run_attempt(fn: Callable[[T], R], item: T, log: AttemptLog | None, stage: str, key: str) -> R:
    """One attempt of one task, as a Ray worker runs it: record the start, call `fn`, record the
    outcome, and re-raise a failure so Ray retries it."""
    if log is None:
        return fn(item)
    from posttrain.store import Store

    with Store(log.store_url) as store:
        attempt = store.start_task_attempt(
            log.run_id, stage, key, worker=f"{socket.gethostname()}:{os.getpid()}"
        )
        start = time.perf_counter()
        try:
            result = fn(item)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            with suppress(Exception):  # the task's own error matters more than a failed write
                store.finish_task_attempt(
                    attempt, "failed", error=error, duration_s=time.perf_counter() - start
                )
            raise
        store.finish_task_attempt(attempt, "ok", duration_s=time.perf_counter() - start)
    return result


def _mark_lost(log: AttemptLog, stage: str, keys: Sequence[str]) -> None:
    from posttrain.store import Store

    with suppress(Exception), Store(log.store_url) as store:
        store.mark_lost_attempts(log.run_id, stage, keys)


_CACHED: dict[str, Any] = {}


def worker_cached(key: str, build: Callable[[], T]) -> T:
    """`build()` once per process for the last `key` asked for, then the same object again.

    A Ray worker process runs many tasks one after another (on CPU; Ray gives each GPU task a
    fresh process), so the base model the first task loads serves the next ones with the same
    key. Only one object is kept: asking for another key drops it, bounding the memory held.
    """
    if key not in _CACHED:
        _CACHED.clear()
        _CACHED[key] = build()
    return _CACHED[key]
