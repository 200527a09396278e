"""Schema versions of the history store and the steps that upgrade a database in place."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection

from posttrain.errors import PosttrainError
from posttrain.store.schema import Base

# MIGRATIONS[i] takes a database from schema version i to i + 1, inside the one transaction
# that also records the new version, so a crash mid-upgrade leaves the old version intact.
# Steps are append-only: never edit a released step. Steps 1 and 3 build from the live table
# classes in schema.py (step 1 names its five tables, so a table added later is not created twice);
# the first later step that alters a column of an existing table must first freeze those steps
# into a copy of today's definitions.

_V1_TABLES = ("runs", "episodes", "agent_messages", "trajectories", "self_edits")


def _step1_create_tables(conn: Connection) -> None:
    tables = [Base.metadata.tables[name] for name in _V1_TABLES]
    Base.metadata.create_all(conn, tables=tables, checkfirst=False)


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
    Base.metadata.tables["task_attempts"].create(conn, checkfirst=False)
    conn.exec_driver_sql("CREATE INDEX ix_task_attempts_run ON task_attempts (run_id, stage, task_key)")


MIGRATIONS: tuple[Callable[[Connection], None], ...] = (
    _step1_create_tables,
    _step2_add_indexes,
    _step3_task_attempts,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: Connection, url: str) -> None:
    """Bring the database behind `conn` up to `SCHEMA_VERSION` inside the caller's transaction.

    Raises `PosttrainError` naming `url` when the database is newer than this posttrain.
    """
    if conn.dialect.name == "postgresql":
        # Serialise concurrent first opens; CREATE TABLE IF NOT EXISTS races on PostgreSQL.
        conn.execute(text("SELECT pg_advisory_xact_lock(7405417320)"))
    conn.execute(text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
    found = conn.execute(text("SELECT max(version) FROM schema_version")).scalar()
    version = int(found) if found is not None else 0
    if version > SCHEMA_VERSION:
        raise PosttrainError(
            f"{url} has history-store schema version {version}, but this posttrain "
            f"only knows versions up to {SCHEMA_VERSION}; upgrade posttrain, or point "
            f"POSTTRAIN_STORE at another database"
        )
    if version == SCHEMA_VERSION:
        return
    for step in MIGRATIONS[version:]:
        step(conn)
    conn.execute(text("DELETE FROM schema_version"))
    conn.execute(text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": SCHEMA_VERSION})
