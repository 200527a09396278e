"""What readers of the history store get: frozen dataclasses, never ORM objects, so nothing a
caller holds can lazily hit the database after the store is closed. Also the run and attempt
status vocabularies the store enforces."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args

RunStatus = Literal["running", "completed", "failed", "diverged"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
# A task attempt is "running" until its worker records "ok" or "failed"; one whose worker died
# first stays "running" until the driver, once the task has its final result, marks it "lost".
AttemptStatus = Literal["running", "ok", "failed", "lost"]
ATTEMPT_STATUSES: tuple[str, ...] = get_args(AttemptStatus)


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


_R = TypeVar(
    "_R", RunRecord, EpisodeRecord, AgentMessageRecord, TrajectoryRecord, SelfEditRecord, TaskAttemptRecord
)


def to_record(cls: type[_R], row: Any) -> _R:
    """Copy a row into its frozen record, field by field, with timestamps made UTC-aware."""
    values = {f.name: getattr(row, f.name) for f in fields(cls)}
    for name, value in values.items():
        if isinstance(value, datetime):
            # SQLite keeps no offset; everything we write is UTC, so a naive value read back is UTC.
            values[name] = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return cls(**values)
