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

import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    exc,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from posttrain.errors import PosttrainError

__all__ = [
    "ATTEMPT_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "AgentMessageRecord",
    "AttemptStatus",
    "EpisodeRecord",
    "RunRecord",
    "RunStatus",
    "SelfEditRecord",
    "Store",
    "TaskAttemptRecord",
    "TrajectoryRecord",
    "default_store_url",
]

RunStatus = Literal["running", "completed", "failed", "diverged"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
# A task attempt is "running" until its worker records "ok" or "failed"; one whose worker died
# first stays "running" until the driver, once the task has its final result, marks it "lost".
AttemptStatus = Literal["running", "ok", "failed", "lost"]
ATTEMPT_STATUSES: tuple[str, ...] = get_args(AttemptStatus)

DEFAULT_STORE_PATH = Path("runs") / "posttrain.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_store_url() -> str:
    """`$POSTTRAIN_STORE` if set, else a SQLite file `runs/posttrain.db` under the current directory."""
    return os.environ.get("POSTTRAIN_STORE") or f"sqlite:///{DEFAULT_STORE_PATH}"


# ---------------------------------------------------------------- records handed to callers


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    name: str
    kind: str
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    run_dir: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    heartbeat_at: datetime | None


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    id: int
    run_id: int
    index: int
    kind: str
    status: str
    hparams: dict[str, Any]
    metrics: dict[str, Any]
    decisions: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AgentMessageRecord:
    id: int
    run_id: int
    episode_index: int | None
    role: str
    backend: str
    request: Any
    response: Any
    fallback: bool
    error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TrajectoryRecord:
    id: int
    run_id: int
    task: str
    scenario_id: str
    steps: list[Any]
    reward: float | None
    outcome: Any
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SelfEditRecord:
    id: int
    run_id: int
    iteration: int
    context_id: str
    sample_index: int
    text: str
    reward: float | None
    score_before: float | None
    score_after: float | None
    kept: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TaskAttemptRecord:
    id: int
    run_id: int
    stage: str
    task_key: str
    attempt: int
    status: str
    worker: str | None
    error: str | None
    duration_s: float | None
    created_at: datetime
    finished_at: datetime | None


# ---------------------------------------------------------------- tables


class _Base(DeclarativeBase):
    pass


_Json = JSON(none_as_null=True)
_Time = DateTime(timezone=True)


class _Run(_Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[Any] = mapped_column(_Json)
    metrics: Mapped[Any] = mapped_column(_Json)
    run_dir: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_Time)
    updated_at: Mapped[datetime] = mapped_column(_Time)
    heartbeat_at: Mapped[datetime | None] = mapped_column(_Time)


class _Episode(_Base):
    __tablename__ = "episodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    hparams: Mapped[Any] = mapped_column(_Json)
    metrics: Mapped[Any] = mapped_column(_Json)
    decisions: Mapped[Any] = mapped_column(_Json)
    created_at: Mapped[datetime] = mapped_column(_Time)


class _AgentMessage(_Base):
    __tablename__ = "agent_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    episode_index: Mapped[int | None] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(64))
    request: Mapped[Any] = mapped_column(_Json, nullable=True)
    response: Mapped[Any] = mapped_column(_Json, nullable=True)
    fallback: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_Time)


class _Trajectory(_Base):
    __tablename__ = "trajectories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(64))
    scenario_id: Mapped[str] = mapped_column(String(255))
    steps: Mapped[Any] = mapped_column(_Json)
    reward: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[Any] = mapped_column(_Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(_Time)


class _SelfEdit(_Base):
    __tablename__ = "self_edits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(Integer)
    context_id: Mapped[str] = mapped_column(String(255))
    sample_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Float)
    score_before: Mapped[float | None] = mapped_column(Float)
    score_after: Mapped[float | None] = mapped_column(Float)
    kept: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(_Time)


class _TaskAttempt(_Base):
    __tablename__ = "task_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(64))
    task_key: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(_Time)
    finished_at: Mapped[datetime | None] = mapped_column(_Time)


# ---------------------------------------------------------------- schema migrations
#
# MIGRATIONS[i] takes a database from schema version i to i + 1, inside the one transaction
# that also records the new version, so a crash mid-upgrade leaves the old version intact.
# Steps are append-only: never edit a released step. Steps 1 and 3 build from the live table
# classes above (step 1 names its five tables, so a table added later is not created twice);
# the first later step that alters a column of an existing table must first freeze those steps
# into a copy of today's definitions.

_V1_TABLES = ("runs", "episodes", "agent_messages", "trajectories", "self_edits")


def _step1_create_tables(conn: Connection) -> None:
    tables = [_Base.metadata.tables[name] for name in _V1_TABLES]
    _Base.metadata.create_all(conn, tables=tables, checkfirst=False)


def _step2_add_indexes(conn: Connection) -> None:
    # Plain DDL rather than Index objects: an Index bound to the live tables would be created
    # again by step 1 on the next fresh database. "index" is quoted: it is a keyword.
    for name, table, columns in (
        ("ix_runs_name", "runs", "name"),
        ("ix_runs_status_heartbeat", "runs", "status, heartbeat_at"),
        ("ix_episodes_run", "episodes", 'run_id, "index"'),
        ("ix_agent_messages_run", "agent_messages", "run_id"),
        ("ix_trajectories_run", "trajectories", "run_id"),
        ("ix_self_edits_run", "self_edits", "run_id, iteration"),
    ):
        conn.exec_driver_sql(f"CREATE INDEX {name} ON {table} ({columns})")


def _step3_task_attempts(conn: Connection) -> None:
    _Base.metadata.tables["task_attempts"].create(conn, checkfirst=False)
    conn.exec_driver_sql("CREATE INDEX ix_task_attempts_run ON task_attempts (run_id, stage, task_key)")


MIGRATIONS: tuple[Callable[[Connection], None], ...] = (
    _step1_create_tables,
    _step2_add_indexes,
    _step3_task_attempts,
)
SCHEMA_VERSION = len(MIGRATIONS)


# ---------------------------------------------------------------- JSON and time helpers


def _jsonable(value: Any, where: str = "value") -> Any:
    """Plain JSON data: non-finite floats become "nan"/"inf"/"-inf"; numpy/torch scalars unwrap."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        return _jsonable(item(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable; convert it before storing")


def _finite_or_none(value: float | None) -> float | None:
    # Scalar REAL columns cannot hold a string, and SQLite would turn NaN into NULL anyway.
    return None if value is None or not math.isfinite(value) else float(value)


def _now() -> datetime:
    return datetime.now(UTC)


_R = TypeVar(
    "_R", RunRecord, EpisodeRecord, AgentMessageRecord, TrajectoryRecord, SelfEditRecord, TaskAttemptRecord
)


def _record(cls: type[_R], row: _Base) -> _R:
    """Copy a row into its frozen record, field by field, with timestamps made UTC-aware."""
    values = {f.name: getattr(row, f.name) for f in fields(cls)}
    for name, value in values.items():
        if isinstance(value, datetime):
            # SQLite keeps no offset; everything we write is UTC, so a naive value read back is UTC.
            values[name] = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return cls(**values)


# ---------------------------------------------------------------- engine

_READ_ONLY = "posttrain_read_only"


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    serializer = functools.partial(json.dumps, allow_nan=False, ensure_ascii=False)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, json_serializer=serializer, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if in_memory:  # one shared connection, or every checkout would see a new empty database
        engine = create_engine(parsed, json_serializer=serializer, poolclass=StaticPool)
    else:
        engine = create_engine(parsed, json_serializer=serializer)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 driver so the "begin" hook below decides its kind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL itself needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers never block the writer, and a SIGKILLed writer leaves no hot journal.
        cursor.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable against process crashes in WAL mode; only a power cut can drop
        # the last commits. FULL would fsync every episode row for no gain here.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writes take the write lock up front with BEGIN IMMEDIATE. Under a plain (deferred)
        # BEGIN, a transaction that reads before it writes (mark_stale_running, a schema
        # upgrade) must upgrade its read lock at the first write; if another process committed
        # since its read, SQLite fails at once with "database is locked" -- busy_timeout does
        # not cover that upgrade. With 4 writer processes on this machine, 2 of the 4 lost
        # every such transaction under BEGIN and none under BEGIN IMMEDIATE, which instead
        # waits in busy_timeout. Reads keep a deferred BEGIN: in WAL they never block anyone.
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# ---------------------------------------------------------------- the store


class Store:
    """Typed access to the history store; safe to use from many processes at once.

    Opening a store creates the database (and a SQLite file's parent folder) if needed and
    upgrades an older schema in place. Each process opens its own `Store`; instances are not
    picklable. Every write is its own committed transaction, so a crash loses at most the
    write in flight.
    """

    def __init__(self, url: str | None = None) -> None:
        self._raw_url = url or default_store_url()
        self.url: str = make_url(self._raw_url).render_as_string(hide_password=True)
        self._engine = _make_engine(self._raw_url)
        self._reader = self._engine.execution_options(**{_READ_ONLY: True})
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
            if conn.dialect.name == "postgresql":
                # Serialise concurrent first opens; CREATE TABLE IF NOT EXISTS races on PostgreSQL.
                conn.execute(text("SELECT pg_advisory_xact_lock(7405417320)"))
            conn.execute(text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
            found = conn.execute(text("SELECT max(version) FROM schema_version")).scalar()
            version = int(found) if found is not None else 0
            if version > SCHEMA_VERSION:
                raise PosttrainError(
                    f"{self.url} has history-store schema version {version}, but this posttrain "
                    f"only knows versions up to {SCHEMA_VERSION}; upgrade posttrain, or point "
                    f"POSTTRAIN_STORE at another database"
                )
            if version == SCHEMA_VERSION:
                return
            for step in MIGRATIONS[version:]:
                step(conn)
            conn.execute(text("DELETE FROM schema_version"))
            conn.execute(text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": SCHEMA_VERSION})

    # ------------------------------------------------------------ plumbing

    def _write(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def _read(self) -> Session:
        return Session(self._reader)

    def _not_found(self, run_id: int) -> PosttrainError:
        return PosttrainError(f"run {run_id} not found in {self.url}")

    def _insert(self, row: _Base, run_id: int) -> int:
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
        now = _now()
        row = _Run(
            name=name,
            kind=kind,
            status="running",
            config=_jsonable(config, "config"),
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
        values: dict[str, Any] = {"updated_at": _now()}
        if status is not None:
            if status not in RUN_STATUSES:
                raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
            values["status"] = status
        if metrics is not None:
            values["metrics"] = _jsonable(metrics, "metrics")
        if error is not None:
            values["error"] = error
        if run_dir is not None:
            values["run_dir"] = run_dir
        self._update_run(run_id, values)

    def heartbeat(self, run_id: int) -> None:
        """Mark the run alive now; `mark_stale_running` fails runs whose heartbeat stops."""
        self._update_run(run_id, {"heartbeat_at": _now()})

    def _update_run(self, run_id: int, values: dict[str, Any]) -> None:
        with self._write() as session, session.begin():
            result = session.execute(update(_Run).where(_Run.id == run_id).values(**values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise self._not_found(run_id)

    def get_run(self, run_id: int) -> RunRecord:
        """The run with this id; raises `PosttrainError` naming the id and the store if missing."""
        with self._read() as session, session.begin():
            row = session.get(_Run, run_id)
            if row is None:
                raise self._not_found(run_id)
            return _record(RunRecord, row)

    def find_run(self, name: str) -> RunRecord | None:
        """The most recently created run with this name, or None."""
        with self._read() as session, session.begin():
            query = select(_Run).where(_Run.name == name).order_by(_Run.id.desc()).limit(1)
            row = session.scalars(query).first()
            return None if row is None else _record(RunRecord, row)

    def list_runs(self, limit: int = 50, kind: str | None = None) -> list[RunRecord]:
        """Newest first, at most `limit` runs, optionally only those of one kind."""
        query = select(_Run).order_by(_Run.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(_Run.kind == kind)
        with self._read() as session, session.begin():
            return [_record(RunRecord, row) for row in session.scalars(query)]

    def mark_stale_running(self, grace_s: float) -> list[int]:
        """Fail every "running" run whose last heartbeat is older than `grace_s` seconds.

        Call it before listing runs, so a run whose process was killed does not show as
        running forever. Returns the ids it changed; their error becomes "stale heartbeat".
        """
        now = _now()
        cutoff = now - timedelta(seconds=grace_s)
        stale = (_Run.status == "running") & (_Run.heartbeat_at < cutoff)
        with self._write() as session, session.begin():
            ids = sorted(session.scalars(select(_Run.id).where(stale).with_for_update()))
            if ids:
                session.execute(
                    update(_Run)
                    .where(_Run.id.in_(ids))
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
        row = _Episode(
            run_id=run_id,
            index=index,
            kind=kind,
            status=status,
            hparams=_jsonable(hparams, "hparams"),
            metrics=_jsonable(metrics, "metrics"),
            decisions=_jsonable(decisions, "decisions"),
            created_at=_now(),
        )
        return self._insert(row, run_id)

    def list_episodes(self, run_id: int) -> list[EpisodeRecord]:
        """The run's episodes ordered by index (then insertion); [] for an unknown run."""
        query = select(_Episode).where(_Episode.run_id == run_id).order_by(_Episode.index, _Episode.id)
        with self._read() as session, session.begin():
            return [_record(EpisodeRecord, row) for row in session.scalars(query)]

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
        row = _AgentMessage(
            run_id=run_id,
            episode_index=episode_index,
            role=role,
            backend=backend,
            request=_jsonable(request, "request"),
            response=_jsonable(response, "response"),
            fallback=fallback,
            error=error,
            created_at=_now(),
        )
        return self._insert(row, run_id)

    def list_agent_messages(self, run_id: int) -> list[AgentMessageRecord]:
        """The run's agent messages in the order they were recorded."""
        query = select(_AgentMessage).where(_AgentMessage.run_id == run_id).order_by(_AgentMessage.id)
        with self._read() as session, session.begin():
            return [_record(AgentMessageRecord, row) for row in session.scalars(query)]

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
        row = _Trajectory(
            run_id=run_id,
            task=task,
            scenario_id=scenario_id,
            steps=_jsonable(list(steps), "steps"),
            reward=_finite_or_none(reward),
            outcome=_jsonable(outcome, "outcome"),
            created_at=_now(),
        )
        return self._insert(row, run_id)

    def list_trajectories(self, run_id: int) -> list[TrajectoryRecord]:
        """The run's trajectories in the order they were recorded."""
        query = select(_Trajectory).where(_Trajectory.run_id == run_id).order_by(_Trajectory.id)
        with self._read() as session, session.begin():
            return [_record(TrajectoryRecord, row) for row in session.scalars(query)]

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
        row = _SelfEdit(
            run_id=run_id,
            iteration=iteration,
            context_id=context_id,
            sample_index=sample_index,
            text=text,
            reward=_finite_or_none(reward),
            score_before=_finite_or_none(score_before),
            score_after=_finite_or_none(score_after),
            kept=kept,
            created_at=_now(),
        )
        return self._insert(row, run_id)

    def list_self_edits(self, run_id: int) -> list[SelfEditRecord]:
        """The run's self-edits ordered by iteration, then insertion."""
        query = select(_SelfEdit).where(_SelfEdit.run_id == run_id)
        query = query.order_by(_SelfEdit.iteration, _SelfEdit.id)
        with self._read() as session, session.begin():
            return [_record(SelfEditRecord, row) for row in session.scalars(query)]

    # ------------------------------------------------------------ task attempts

    def start_task_attempt(self, run_id: int, stage: str, task_key: str, worker: str | None = None) -> int:
        """Record that a worker began a task (stage "tune.train", key "episode0/proposal1", ...).

        The attempt number is one more than the task's earlier attempts, counted in the same
        transaction; attempts of one task run one after another, so numbers never collide.
        Returns the row id for `finish_task_attempt`.
        """
        same_task = (
            (_TaskAttempt.run_id == run_id)
            & (_TaskAttempt.stage == stage)
            & (_TaskAttempt.task_key == task_key)
        )
        try:
            with self._write() as session, session.begin():
                earlier = session.scalar(select(func.count()).select_from(_TaskAttempt).where(same_task)) or 0
                row = _TaskAttempt(
                    run_id=run_id,
                    stage=stage,
                    task_key=task_key,
                    attempt=earlier + 1,
                    status="running",
                    worker=worker,
                    error=None,
                    duration_s=None,
                    created_at=_now(),
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
            "duration_s": _finite_or_none(duration_s),
            "finished_at": _now(),
        }
        with self._write() as session, session.begin():
            result = session.execute(
                update(_TaskAttempt).where(_TaskAttempt.id == attempt_id).values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise PosttrainError(f"task attempt {attempt_id} not found in {self.url}")

    def mark_lost_attempts(self, run_id: int, stage: str, task_keys: Sequence[str]) -> int:
        """Mark the still-"running" attempts of these tasks "lost" (their worker died before it could
        record an outcome). Call it once the tasks have their final result; returns how many."""
        if not task_keys:
            return 0
        lost = (
            (_TaskAttempt.run_id == run_id)
            & (_TaskAttempt.stage == stage)
            & (_TaskAttempt.task_key.in_(list(task_keys)))
            & (_TaskAttempt.status == "running")
        )
        values = {
            "status": "lost",
            "error": "the worker died before recording an outcome",
            "finished_at": _now(),
        }
        with self._write() as session, session.begin():
            result = session.execute(update(_TaskAttempt).where(lost).values(**values))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def list_task_attempts(self, run_id: int) -> list[TaskAttemptRecord]:
        """The run's task attempts in the order they started."""
        query = select(_TaskAttempt).where(_TaskAttempt.run_id == run_id).order_by(_TaskAttempt.id)
        with self._read() as session, session.begin():
            return [_record(TaskAttemptRecord, row) for row in session.scalars(query)]
