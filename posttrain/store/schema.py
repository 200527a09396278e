"""The history store's tables (SQLAlchemy ORM). Only the store package uses these classes;
callers get the frozen records of `records.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


_Json = JSON(none_as_null=True)
_Time = DateTime(timezone=True)


class RunRow(Base):
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


class EpisodeRow(Base):
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


class AgentMessageRow(Base):
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


class TrajectoryRow(Base):
    __tablename__ = "trajectories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(64))
    scenario_id: Mapped[str] = mapped_column(String(255))
    steps: Mapped[Any] = mapped_column(_Json)
    reward: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[Any] = mapped_column(_Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(_Time)


class SelfEditRow(Base):
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


class TaskAttemptRow(Base):
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
