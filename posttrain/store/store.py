"""The history store: every run, episode, agent message, trajectory, self-edit and task attempt.

One SQLAlchemy code path serves a local SQLite file (the default, `runs/posttrain.db`) and
PostgreSQL (any other URL), so a Ray cluster can share one history by pointing
`POSTTRAIN_STORE` at a server. Readers get frozen dataclasses, never ORM objects, so nothing
a caller holds can lazily hit the database after the store is closed.

JSON columns: non-finite floats (a diverged loss) are stored as the strings "nan", "inf"
and "-inf" -- strict JSON has no NaN, PostgreSQL rejects it, and `float("nan")` reads the
string back. Scalar float columns (trajectory reward, self-edit scores) store a non-finite
value as NULL and read back None. Timestamps are timezone-aware UTC on the way in and on the way out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exc, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from posttrain.errors import PosttrainError
from posttrain.store.engine import READ_ONLY, default_store_url, make_engine
from posttrain.store.migrations import migrate
from posttrain.store.records import (
    ATTEMPT_STATUSES,
    RUN_STATUSES,
    AgentMessageRecord,
    AttemptStatus,
    EpisodeRecord,
    RunRecord,
    RunStatus,
    SelfEditRecord,
    TaskAttemptRecord,
    TrajectoryRecord,
    to_record,
)
from posttrain.store.schema import (
    AgentMessageRow,
    Base,
    EpisodeRow,
    RunRow,
    SelfEditRow,
    TaskAttemptRow,
    TrajectoryRow,
)
from posttrain.store.values import finite_or_none, jsonable, now_utc


def _hidden(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """Typed access to the history store; safe to use from many processes at once.

    Opening a store creates the database (and a SQLite file's parent folder) if needed and
    upgrades an older schema in place. Each process opens its own `Store`; instances are not
    picklable. Every write is its own committed transaction, so a crash loses at most the
    write in flight.
    """

    def __init__(self, url: str | None = None) -> None:
        self._raw_url = url or default_store_url()
        try:
            self.url: str = make_url(self._raw_url).render_as_string(hide_password=True)
            self._engine = make_engine(self._raw_url)
        except (exc.NoSuchModuleError, ImportError) as err:  # (NoSuchModuleError is an ArgumentError)
            raise PosttrainError(
                f"store URL '{_hidden(self._raw_url)}': its database driver is not installed ({err}); "
                "use sqlite:///... or install the driver"
            ) from err
        except exc.ArgumentError as err:
            raise PosttrainError(
                f"store URL '{self._raw_url}' is not a database URL (expected sqlite:///path/to/file.db "
                "or postgresql://user@host/db)"
            ) from err
        except OSError as err:  # the SQLite file's folder cannot be made
            raise PosttrainError(f"store URL '{self._raw_url}': {err.filename}: {err.strerror}") from err
        self._reader = self._engine.execution_options(**{READ_ONLY: True})
        try:
            self._migrate()
        except exc.DBAPIError as err:
            self._engine.dispose()
            raise PosttrainError(f"cannot open the history store {self.url}: {err.orig}") from err
        except BaseException:
            self._engine.dispose()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def connect_url(self) -> str:
        """The URL as given, password included, for worker processes that open their own `Store`
        (a Ray task recording its attempts); never print it, print `url`."""
        return self._raw_url

    def close(self) -> None:
        """Release pooled connections. Reopen with a new `Store` to use the database again."""
        self._engine.dispose()

    # ------------------------------------------------------------ schema

    def schema_version(self) -> int:
        """The schema version recorded in the database (equals `SCHEMA_VERSION` once opened)."""
        with self._reader.connect() as conn, conn.begin():
            return int(conn.execute(text("SELECT version FROM schema_version")).scalar_one())

    def _migrate(self) -> None:
        with self._engine.connect() as conn, conn.begin():
            migrate(conn, self.url)

    # ------------------------------------------------------------ plumbing

    def _write(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def _read(self) -> Session:
        return Session(self._reader)

    def _not_found(self, run_id: int) -> PosttrainError:
        return PosttrainError(f"run {run_id} not found in {self.url}")

    def _insert(self, row: Base, run_id: int) -> int:
        try:
            with self._write() as session, session.begin():
                session.add(row)
                session.flush()
                new_id: int = row.id  # type: ignore[attr-defined]
        except exc.IntegrityError:
            self.get_run(run_id)  # raises the readable "run N not found" when that is the cause
            raise
        return new_id

    # ------------------------------------------------------------ runs

    def create_run(self, name: str, kind: str, config: Mapping[str, Any], run_dir: str | None = None) -> int:
        """Record a new run with status "running" and a fresh heartbeat; returns its id."""
        now = now_utc()
        row = RunRow(
            name=name,
            kind=kind,
            status="running",
            config=jsonable(config, "config"),
            metrics={},
            run_dir=run_dir,
            error=None,
            created_at=now,
            updated_at=now,
            heartbeat_at=now,
        )
        with self._write() as session, session.begin():
            session.add(row)
            session.flush()
            return row.id

    def update_run(
        self,
        run_id: int,
        *,
        status: RunStatus | None = None,
        metrics: Mapping[str, Any] | None = None,
        error: str | None = None,
        run_dir: str | None = None,
    ) -> None:
        """Set the given fields; `metrics` replaces the stored dict (it is the run's final summary)."""
        values: dict[str, Any] = {"updated_at": now_utc()}
        if status is not None:
            if status not in RUN_STATUSES:
                raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
            values["status"] = status
        if metrics is not None:
            values["metrics"] = jsonable(metrics, "metrics")
        if error is not None:
            values["error"] = error
        if run_dir is not None:
            values["run_dir"] = run_dir
        self._update_run(run_id, values)

    def heartbeat(self, run_id: int) -> None:
        """Mark the run alive now; `mark_stale_running` fails runs whose heartbeat stops."""
        self._update_run(run_id, {"heartbeat_at": now_utc()})

    def _update_run(self, run_id: int, values: dict[str, Any]) -> None:
        with self._write() as session, session.begin():
            result = session.execute(update(RunRow).where(RunRow.id == run_id).values(**values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise self._not_found(run_id)

    def get_run(self, run_id: int) -> RunRecord:
        """The run with this id; raises `PosttrainError` naming the id and the store if missing."""
        with self._read() as session, session.begin():
            row = session.get(RunRow, run_id)
            if row is None:
                raise self._not_found(run_id)
            return to_record(RunRecord, row)

    def find_run(self, name: str) -> RunRecord | None:
        """The most recently created run with this name, or None."""
        with self._read() as session, session.begin():
            query = select(RunRow).where(RunRow.name == name).order_by(RunRow.id.desc()).limit(1)
            row = session.scalars(query).first()
            return None if row is None else to_record(RunRecord, row)

    def list_runs(self, limit: int = 50, kind: str | None = None) -> list[RunRecord]:
        """Newest first, at most `limit` runs, optionally only those of one kind."""
        query = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        with self._read() as session, session.begin():
            return [to_record(RunRecord, row) for row in session.scalars(query)]

    def mark_stale_running(self, grace_s: float) -> list[int]:
        """Fail every "running" run whose last heartbeat is older than `grace_s` seconds.

        Call it before listing runs, so a run whose process was killed does not show as
        running forever. Returns the ids it changed; their error becomes "stale heartbeat".
        """
        now = now_utc()
        cutoff = now - timedelta(seconds=grace_s)
        stale = (RunRow.status == "running") & (RunRow.heartbeat_at < cutoff)
        with self._write() as session, session.begin():
            ids = sorted(session.scalars(select(RunRow.id).where(stale).with_for_update()))
            if ids:
                session.execute(
                    update(RunRow)
                    .where(RunRow.id.in_(ids))
                    .values(status="failed", error="stale heartbeat", updated_at=now)
                )
            return ids

    # ------------------------------------------------------------ episodes

    def add_episode(
        self,
        run_id: int,
        index: int,
        kind: str,
        hparams: Mapping[str, Any],
        metrics: Mapping[str, Any],
        decisions: Mapping[str, Any],
        status: str = "completed",
    ) -> int:
        """Record one episode (kind "train", "seal", ...) of a run; returns its row id."""
        row = EpisodeRow(
            run_id=run_id,
            index=index,
            kind=kind,
            status=status,
            hparams=jsonable(hparams, "hparams"),
            metrics=jsonable(metrics, "metrics"),
            decisions=jsonable(decisions, "decisions"),
            created_at=now_utc(),
        )
        return self._insert(row, run_id)

    def list_episodes(self, run_id: int) -> list[EpisodeRecord]:
        """The run's episodes ordered by index (then insertion); [] for an unknown run."""
        query = select(EpisodeRow).where(EpisodeRow.run_id == run_id)
        query = query.order_by(EpisodeRow.index, EpisodeRow.id)
        with self._read() as session, session.begin():
            return [to_record(EpisodeRecord, row) for row in session.scalars(query)]

    # ------------------------------------------------------------ agent messages

    def add_agent_message(
        self,
        run_id: int,
        episode_index: int | None,
        role: str,
        backend: str,
        request: Any,
        response: Any,
        fallback: bool = False,
        error: str | None = None,
    ) -> int:
        """Record one agent request/response; `fallback` marks an answer from the rules backend."""
        row = AgentMessageRow(
            run_id=run_id,
            episode_index=episode_index,
            role=role,
            backend=backend,
            request=jsonable(request, "request"),
            response=jsonable(response, "response"),
            fallback=fallback,
            error=error,
            created_at=now_utc(),
        )
        return self._insert(row, run_id)

    def list_agent_messages(self, run_id: int) -> list[AgentMessageRecord]:
        """The run's agent messages in the order they were recorded."""
        query = select(AgentMessageRow).where(AgentMessageRow.run_id == run_id).order_by(AgentMessageRow.id)
        with self._read() as session, session.begin():
            return [to_record(AgentMessageRecord, row) for row in session.scalars(query)]

    def drop_agent_messages(self, run_id: int, from_episode: int) -> int:
        """Delete the run's agent messages of episode `from_episode` and later; returns how many.

        A resumed run repeats its first unfinished episode from the start, so the messages a killed
        attempt recorded for it would otherwise appear twice. Messages with no episode stay.
        """
        stale = (AgentMessageRow.run_id == run_id) & (AgentMessageRow.episode_index >= from_episode)
        with self._write() as session, session.begin():
            result = session.execute(delete(AgentMessageRow).where(stale))
            return int(result.rowcount)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ trajectories

    def add_trajectory(
        self,
        run_id: int,
        task: str,
        scenario_id: str,
        steps: Sequence[Any],
        reward: float,
        outcome: Any = None,
    ) -> int:
        """Record one agent rollout (its ReAct steps, scalar reward and task outcome)."""
        row = TrajectoryRow(
            run_id=run_id,
            task=task,
            scenario_id=scenario_id,
            steps=jsonable(list(steps), "steps"),
            reward=finite_or_none(reward),
            outcome=jsonable(outcome, "outcome"),
            created_at=now_utc(),
        )
        return self._insert(row, run_id)

    def list_trajectories(self, run_id: int) -> list[TrajectoryRecord]:
        """The run's trajectories in the order they were recorded."""
        query = select(TrajectoryRow).where(TrajectoryRow.run_id == run_id).order_by(TrajectoryRow.id)
        with self._read() as session, session.begin():
            return [to_record(TrajectoryRecord, row) for row in session.scalars(query)]

    # ------------------------------------------------------------ self-edits

    def add_self_edit(
        self,
        run_id: int,
        iteration: int,
        context_id: str,
        sample_index: int,
        text: str,
        reward: float | None = None,
        score_before: float | None = None,
        score_after: float | None = None,
        kept: bool = False,
    ) -> int:
        """Record one SEAL self-edit sample; `kept` marks those ReST-EM trains on."""
        row = SelfEditRow(
            run_id=run_id,
            iteration=iteration,
            context_id=context_id,
            sample_index=sample_index,
            text=text,
            reward=finite_or_none(reward),
            score_before=finite_or_none(score_before),
            score_after=finite_or_none(score_after),
            kept=kept,
            created_at=now_utc(),
        )
        return self._insert(row, run_id)

    def list_self_edits(self, run_id: int) -> list[SelfEditRecord]:
        """The run's self-edits ordered by iteration, then insertion."""
        query = select(SelfEditRow).where(SelfEditRow.run_id == run_id)
        query = query.order_by(SelfEditRow.iteration, SelfEditRow.id)
        with self._read() as session, session.begin():
            return [to_record(SelfEditRecord, row) for row in session.scalars(query)]

    # ------------------------------------------------------------ task attempts

    def start_task_attempt(self, run_id: int, stage: str, task_key: str, worker: str | None = None) -> int:
        """Record that a worker began a task (stage "tune.train", key "episode0/proposal1", ...).

        The attempt number is one more than the task's earlier attempts, counted in the same
        transaction; attempts of one task run one after another, so numbers never collide.
        Returns the row id for `finish_task_attempt`.
        """
        same_task = (
            (TaskAttemptRow.run_id == run_id)
            & (TaskAttemptRow.stage == stage)
            & (TaskAttemptRow.task_key == task_key)
        )
        try:
            with self._write() as session, session.begin():
                count = select(func.count()).select_from(TaskAttemptRow).where(same_task)
                earlier = session.scalar(count) or 0
                row = TaskAttemptRow(
                    run_id=run_id,
                    stage=stage,
                    task_key=task_key,
                    attempt=earlier + 1,
                    status="running",
                    worker=worker,
                    error=None,
                    duration_s=None,
                    created_at=now_utc(),
                    finished_at=None,
                )
                session.add(row)
                session.flush()
                return row.id
        except exc.IntegrityError:
            self.get_run(run_id)  # raises the readable "run N not found" when that is the cause
            raise

    def finish_task_attempt(
        self,
        attempt_id: int,
        status: AttemptStatus,
        error: str | None = None,
        duration_s: float | None = None,
    ) -> None:
        """Close an attempt as "ok", "failed" (with the error) or "lost"."""
        if status not in ATTEMPT_STATUSES or status == "running":
            raise ValueError(f"an attempt finishes as ok, failed or lost, got {status!r}")
        values = {
            "status": status,
            "error": error,
            "duration_s": finite_or_none(duration_s),
            "finished_at": now_utc(),
        }
        with self._write() as session, session.begin():
            result = session.execute(
                update(TaskAttemptRow).where(TaskAttemptRow.id == attempt_id).values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise PosttrainError(f"task attempt {attempt_id} not found in {self.url}")

    def mark_lost_attempts(self, run_id: int, stage: str, task_keys: Sequence[str]) -> int:
        """Mark the still-"running" attempts of these tasks "lost" (their worker died before it could
        record an outcome). Call it once the tasks have their final result; returns how many."""
        if not task_keys:
            return 0
        lost = (
            (TaskAttemptRow.run_id == run_id)
            & (TaskAttemptRow.stage == stage)
            & (TaskAttemptRow.task_key.in_(list(task_keys)))
            & (TaskAttemptRow.status == "running")
        )
        values = {
            "status": "lost",
            "error": "the worker died before recording an outcome",
            "finished_at": now_utc(),
        }
        with self._write() as session, session.begin():
            result = session.execute(update(TaskAttemptRow).where(lost).values(**values))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def list_task_attempts(self, run_id: int) -> list[TaskAttemptRecord]:
        """The run's task attempts in the order they started."""
        query = select(TaskAttemptRow).where(TaskAttemptRow.run_id == run_id).order_by(TaskAttemptRow.id)
        with self._read() as session, session.begin():
            return [to_record(TaskAttemptRecord, row) for row in session.scalars(query)]
