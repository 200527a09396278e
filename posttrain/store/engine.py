"""Where the history store lives and how its database is opened (SQLite or PostgreSQL)."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

DEFAULT_STORE_PATH = Path("runs") / "posttrain.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_store_url() -> str:
    """`$POSTTRAIN_STORE` if set, else a SQLite file `runs/posttrain.db` under the current directory."""
    return os.environ.get("POSTTRAIN_STORE") or f"sqlite:///{DEFAULT_STORE_PATH}"


READ_ONLY = "posttrain_read_only"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get WAL, a busy timeout and BEGIN IMMEDIATE writes.

    A connection opened with the execution option `READ_ONLY` begins a deferred (reading)
    transaction instead.
    """
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
        _switch_to_wal(cursor)
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
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _switch_to_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode = WAL`, retried while another process holds the lock.

    The switch needs the database to itself, and SQLite can answer "database is locked" at once
    instead of waiting in busy_timeout: in the suite, five processes opening one fresh file
    together lost the race now and then (test_concurrent_writers_lose_nothing_even_when_one_is_killed
    failed once in a fresh-clone run under load). Once a file is in WAL mode the pragma is a no-op.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
