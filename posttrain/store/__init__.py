"""The history store (SQLite or PostgreSQL): `Store` and the frozen records its readers return.

store.py holds the `Store` API; records.py what readers get; schema.py the tables;
migrations.py the schema versions; engine.py where the database is and how it is opened;
values.py how JSON, floats and timestamps are stored.
"""

from posttrain.store.engine import default_store_url
from posttrain.store.migrations import SCHEMA_VERSION
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
)
from posttrain.store.store import Store

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
