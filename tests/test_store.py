"""The history store on real databases: SQLite files always, PostgreSQL when one is configured."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from posttrain.errors import PosttrainError
from posttrain.rundir import RunDir, tracked_run
from posttrain.store import SCHEMA_VERSION, Store, default_store_url

# ---------------------------------------------------------------- backend fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    url = os.environ.get("POSTTRAIN_TEST_PG_URL")
    if not url:
        pytest.skip("PostgreSQL not available: set POSTTRAIN_TEST_PG_URL")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    # A PostgreSQL test database is shared between tests, so tests use unique names and
    # check their own rows, never global counts.
    with Store(store_url) as opened:
        yield opened


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- round trips


def test_every_table_round_trips_and_survives_reopening(store: Store, store_url: str) -> None:
    name = _unique("sft")
    run_id = store.create_run(name, "sft", {"lr": 2e-4, "lora": {"r": 8}}, "runs/x")
    store.update_run(run_id, status="completed", metrics={"eval_loss": 1.25, "perplexity": 3.49})
    store.add_episode(run_id, 1, "seal", {"lr": 1e-4}, {"eval_loss": 1.5}, {"judge": "stop"})
    store.add_episode(run_id, 0, "train", {"lr": 2e-4, "epochs": 2}, {"eval_loss": 1.75}, {"judge": "go"})
    request = [{"role": "user", "content": "pick an lr"}]
    store.add_agent_message(run_id, 0, "tuner", "rules", request, {"lr": 2e-4}, True, "schema mismatch")
    store.add_agent_message(run_id, None, "judge", "openai", request, None)
    steps = [{"thought": "add", "tool": "calculator", "args": {"expr": "2+2"}, "observation": "4"}]
    store.add_trajectory(run_id, "tool_use", "calc-7", steps, 0.75, {"answer": "4", "correct": True})
    store.add_self_edit(run_id, 1, "ctx-3", 2, "Q: who? A: Ada", 0.5, 0.25, 0.75, True)
    store.close()

    reopened = Store(store_url)
    run = reopened.get_run(run_id)
    assert (run.name, run.kind, run.status, run.run_dir, run.error) == (
        name,
        "sft",
        "completed",
        "runs/x",
        None,
    )
    assert run.config == {"lr": 2e-4, "lora": {"r": 8}}
    assert run.metrics == {"eval_loss": 1.25, "perplexity": 3.49}
    assert run.created_at.tzinfo is UTC and run.updated_at >= run.created_at
    assert abs((datetime.now(UTC) - run.created_at).total_seconds()) < 60

    episodes = reopened.list_episodes(run_id)
    assert [(e.index, e.kind, e.status) for e in episodes] == [
        (0, "train", "completed"),
        (1, "seal", "completed"),
    ]
    assert episodes[0].hparams == {"lr": 2e-4, "epochs": 2}
    assert episodes[0].metrics == {"eval_loss": 1.75}
    assert episodes[1].decisions == {"judge": "stop"}

    messages = reopened.list_agent_messages(run_id)
    assert [(m.role, m.backend, m.episode_index, m.fallback) for m in messages] == [
        ("tuner", "rules", 0, True),
        ("judge", "openai", None, False),
    ]
    assert messages[0].request == request and messages[0].response == {"lr": 2e-4}
    assert messages[0].error == "schema mismatch" and messages[1].error is None
    assert messages[1].response is None

    (trajectory,) = reopened.list_trajectories(run_id)
    assert (trajectory.task, trajectory.scenario_id, trajectory.reward) == ("tool_use", "calc-7", 0.75)
    assert trajectory.steps == steps and trajectory.outcome == {"answer": "4", "correct": True}

    (edit,) = reopened.list_self_edits(run_id)
    assert (edit.iteration, edit.context_id, edit.sample_index, edit.text) == (
        1,
        "ctx-3",
        2,
        "Q: who? A: Ada",
    )
    assert (edit.reward, edit.score_before, edit.score_after, edit.kept) == (0.5, 0.25, 0.75, True)
    reopened.close()


def test_task_attempts_are_numbered_per_task_and_closed_once(store: Store) -> None:
    run_id = store.create_run(_unique("tune"), "tune", {}, None)
    first = store.start_task_attempt(run_id, "tune.train", "episode0/proposal1", worker="node-a:101")
    other = store.start_task_attempt(run_id, "tune.train", "episode0/proposal0", worker="node-b:102")
    store.finish_task_attempt(first, "failed", error="RuntimeError: CUDA out of memory.", duration_s=0.25)
    second = store.start_task_attempt(run_id, "tune.train", "episode0/proposal1", worker="node-a:103")
    store.finish_task_attempt(second, "ok", duration_s=math.nan)
    # proposal0's worker died: its attempt stays "running" until the driver marks it lost
    assert store.mark_lost_attempts(run_id, "tune.train", ["episode0/proposal0", "episode0/proposal1"]) == 1
    assert store.mark_lost_attempts(run_id, "tune.train", []) == 0

    attempts = store.list_task_attempts(run_id)
    assert [(a.task_key, a.attempt, a.status) for a in attempts] == [
        ("episode0/proposal1", 1, "failed"),
        ("episode0/proposal0", 1, "lost"),
        ("episode0/proposal1", 2, "ok"),
    ]
    assert attempts[0].error == "RuntimeError: CUDA out of memory." and attempts[0].duration_s == 0.25
    assert attempts[0].worker == "node-a:101" and attempts[0].finished_at is not None
    assert attempts[1].error and "died" in attempts[1].error
    assert attempts[2].duration_s is None and attempts[2].error is None  # NaN stores as NULL
    assert all(a.created_at.tzinfo is UTC for a in attempts)
    assert [a.id for a in attempts] == [first, other, second]
    with pytest.raises(ValueError, match="ok, failed or lost"):
        store.finish_task_attempt(first, "running")
    with pytest.raises(PosttrainError, match="task attempt 987654 not found"):
        store.finish_task_attempt(987654, "ok")
    with pytest.raises(PosttrainError, match="run 987654 not found"):
        store.start_task_attempt(987654, "tune.train", "x")


def test_non_finite_floats_are_stored_as_strings_in_json_and_null_in_columns(store: Store) -> None:
    run_id = store.create_run(_unique("dpo"), "dpo", {"beta": 0.1}, None)
    store.update_run(run_id, status="diverged", metrics={"loss": math.nan, "grad_norm": math.inf, "ok": 1.0})
    store.add_episode(run_id, 0, "train", {}, {"eval_loss": -math.inf, "curve": [1.0, math.nan]}, {})
    store.add_trajectory(run_id, "meetings", "m-1", [], math.nan)
    store.add_self_edit(run_id, 0, "c", 0, "t", reward=math.inf, score_before=0.5, score_after=math.nan)

    assert store.get_run(run_id).metrics == {"loss": "nan", "grad_norm": "inf", "ok": 1.0}
    assert store.list_episodes(run_id)[0].metrics == {"eval_loss": "-inf", "curve": [1.0, "nan"]}
    assert math.isnan(float(store.get_run(run_id).metrics["loss"]))  # the string reads back as NaN
    assert store.list_trajectories(run_id)[0].reward is None
    edit = store.list_self_edits(run_id)[0]
    assert (edit.reward, edit.score_before, edit.score_after) == (None, 0.5, None)


def test_unjsonable_values_name_where_they_are(store: Store) -> None:
    with pytest.raises(TypeError, match=r"config\.opt\[1\]: object is not JSON-serialisable"):
        store.create_run(_unique("bad"), "sft", {"opt": [1, object()]}, None)


def test_missing_run_is_a_readable_error(store: Store) -> None:
    with pytest.raises(PosttrainError, match="^" + re.escape(f"run 987654 not found in {store.url}") + "$"):
        store.get_run(987654)
    with pytest.raises(PosttrainError, match="run 987654 not found"):
        store.update_run(987654, status="failed")
    with pytest.raises(PosttrainError, match="run 987654 not found"):
        store.add_episode(987654, 0, "train", {}, {}, {})
    with pytest.raises(PosttrainError, match="run 987654 not found"):
        store.heartbeat(987654)


def test_update_run_sets_only_given_fields(store: Store) -> None:
    run_id = store.create_run(_unique("rl"), "rl", {}, None)
    before = store.get_run(run_id)
    assert (before.status, before.metrics, before.heartbeat_at) == ("running", {}, before.created_at)
    store.update_run(run_id, metrics={"reward": 0.5})
    store.update_run(run_id, status="failed", error="OOM at step 12", run_dir="runs/rl-1")
    after = store.get_run(run_id)
    assert (after.status, after.metrics, after.error, after.run_dir) == (
        "failed",
        {"reward": 0.5},
        "OOM at step 12",
        "runs/rl-1",
    )
    assert after.updated_at > before.updated_at
    with pytest.raises(ValueError, match="running, completed, failed, diverged"):
        store.update_run(run_id, status="done")  # type: ignore[arg-type]


def test_find_run_and_list_runs(store: Store) -> None:
    name, kind = _unique("twice"), _unique("kind")
    first = store.create_run(name, kind, {"n": 1}, None)
    second = store.create_run(name, kind, {"n": 2}, None)
    other = store.create_run(_unique("other"), kind, {}, None)
    found = store.find_run(name)
    assert found is not None and found.id == second and found.config == {"n": 2}
    assert store.find_run(_unique("absent")) is None
    assert [r.id for r in store.list_runs(kind=kind)] == [other, second, first]
    assert [r.id for r in store.list_runs(limit=2, kind=kind)] == [other, second]
    assert store.list_runs(limit=1)[0].id == other


# Wide enough that a starved test process (a loaded CI box) does not make fresh rows look stale.
GRACE_S = 1.5


def test_mark_stale_running_fails_only_silent_running_runs(store: Store) -> None:
    silent = store.create_run(_unique("silent"), "sft", {}, None)
    beating = store.create_run(_unique("beating"), "sft", {}, None)
    finished = store.create_run(_unique("finished"), "sft", {}, None)
    store.update_run(finished, status="completed")
    time.sleep(GRACE_S + 0.3)
    store.heartbeat(beating)
    fresh = store.create_run(_unique("fresh"), "sft", {}, None)

    stale = store.mark_stale_running(grace_s=GRACE_S)

    assert silent in stale and not {beating, finished, fresh} & set(stale)
    assert (store.get_run(silent).status, store.get_run(silent).error) == ("failed", "stale heartbeat")
    assert [store.get_run(i).status for i in (beating, finished, fresh)] == [
        "running",
        "completed",
        "running",
    ]
    assert silent not in store.mark_stale_running(grace_s=GRACE_S)  # already failed: not reported twice


def test_resume_fails_runs_whose_heartbeat_stopped_and_revives_its_own(store: Store, tmp_path: Path) -> None:
    dead = store.create_run(_unique("dead"), "sft", {}, None)
    name = _unique("resumed")
    killed = store.create_run(name, "sft", {}, None)
    time.sleep(GRACE_S + 0.3)

    with tracked_run(store, "sft", RunDir(tmp_path, name), {}, resume=True, stale_grace_s=GRACE_S) as run_id:
        assert run_id == killed
        assert (store.get_run(dead).status, store.get_run(dead).error) == ("failed", "stale heartbeat")
        assert store.get_run(killed).status == "running"


def test_default_url_comes_from_env_then_runs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTTRAIN_STORE", raising=False)
    assert default_store_url() == "sqlite:///runs/posttrain.db"
    with Store() as store:
        store.create_run("r", "sft", {}, None)
    assert (tmp_path / "runs" / "posttrain.db").is_file()

    monkeypatch.setenv("POSTTRAIN_STORE", f"sqlite:///{tmp_path / 'elsewhere' / 'h.db'}")
    with Store() as store:
        assert store.list_runs() == []
    assert (tmp_path / "elsewhere" / "h.db").is_file()


def test_sqlite_file_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with Store(f"sqlite:///{path}") as store, store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_write_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = Store(f"sqlite:///{path}")
    store.create_run("r", "sft", {}, None)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)  # timeout=0: fail instead of waiting
    with store._engine.connect() as conn, conn.begin():  # a write transaction that has run nothing yet
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.execute("BEGIN IMMEDIATE")
        assert other.execute("SELECT count(*) FROM runs").fetchone() == (1,)  # WAL: readers go on
    with store._reader.connect() as conn, conn.begin():  # a read transaction leaves the lock free
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 1
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    other.close()
    store.close()


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(PosttrainError, match=rf"cannot open the history store sqlite:///{path}: file is not"):
        Store(f"sqlite:///{path}")


# ---------------------------------------------------------------- schema versions

# Schema version 1 exactly as step 1 created it, frozen here so the upgrade test stays honest
# when the live table classes change.
_V1_DDL = """
CREATE TABLE runs (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, kind VARCHAR(64) NOT NULL,
  status VARCHAR(16) NOT NULL, config JSON NOT NULL, metrics JSON NOT NULL, run_dir TEXT, error TEXT,
  created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, heartbeat_at DATETIME);
CREATE TABLE episodes (id INTEGER NOT NULL PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id)
  ON DELETE CASCADE, "index" INTEGER NOT NULL, kind VARCHAR(32) NOT NULL, status VARCHAR(16) NOT NULL,
  hparams JSON NOT NULL, metrics JSON NOT NULL, decisions JSON NOT NULL, created_at DATETIME NOT NULL);
CREATE TABLE agent_messages (id INTEGER NOT NULL PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id)
  ON DELETE CASCADE, episode_index INTEGER, role VARCHAR(64) NOT NULL, backend VARCHAR(64) NOT NULL,
  request JSON, response JSON, fallback BOOLEAN NOT NULL, error TEXT, created_at DATETIME NOT NULL);
CREATE TABLE trajectories (id INTEGER NOT NULL PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id)
  ON DELETE CASCADE, task VARCHAR(64) NOT NULL, scenario_id VARCHAR(255) NOT NULL, steps JSON NOT NULL,
  reward FLOAT, outcome JSON, created_at DATETIME NOT NULL);
CREATE TABLE self_edits (id INTEGER NOT NULL PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id)
  ON DELETE CASCADE, iteration INTEGER NOT NULL, context_id VARCHAR(255) NOT NULL,
  sample_index INTEGER NOT NULL, text TEXT NOT NULL, reward FLOAT, score_before FLOAT, score_after FLOAT,
  kept BOOLEAN NOT NULL, created_at DATETIME NOT NULL);
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
INSERT INTO runs VALUES (1, 'old-run', 'sft', 'completed', '{"lr": 0.001}', '{"eval_loss": 2.5}', NULL, NULL,
  '2025-01-02 03:04:05.000000', '2025-01-02 03:04:06.000000', '2025-01-02 03:04:06.000000');
INSERT INTO episodes VALUES (1, 1, 0, 'train', 'completed', '{}', '{"eval_loss": 2.5}', '{}',
  '2025-01-02 03:04:05.500000');
"""


def _sqlite(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


def _indexes(path: Path) -> set[str]:
    rows = _sqlite(path, "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'")
    return {str(name) for (name,) in rows}


def _make_v1(path: Path, extra_sql: str = "") -> None:
    conn = sqlite3.connect(path)
    conn.executescript(_V1_DDL + extra_sql)
    conn.close()


def test_fresh_database_records_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.touch()  # an empty file is a version-0 database
    with Store(f"sqlite:///{path}") as store:
        assert store.schema_version() == SCHEMA_VERSION == 3
    assert _sqlite(path, "SELECT version FROM schema_version") == [(3,)]
    assert len(_indexes(path)) == 7


def test_version_1_file_is_upgraded_in_place_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _make_v1(path)
    assert _indexes(path) == set()

    with Store(f"sqlite:///{path}") as store:
        assert store.schema_version() == 3
        old = store.get_run(1)
        assert (old.name, old.config, old.metrics) == ("old-run", {"lr": 0.001}, {"eval_loss": 2.5})
        assert old.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert [e.metrics for e in store.list_episodes(1)] == [{"eval_loss": 2.5}]
        new_id = store.create_run("new-run", "sft", {}, None)
        assert new_id == 2

    assert _sqlite(path, "SELECT version FROM schema_version") == [(3,)]
    assert {"ix_runs_name", "ix_episodes_run", "ix_self_edits_run", "ix_task_attempts_run"} <= _indexes(path)


def test_version_2_file_gains_the_task_attempts_table(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    _make_v1(path)
    Store(f"sqlite:///{path}").close()  # today's code takes it to the newest version ...
    _sqlite(path, "DROP TABLE task_attempts")  # ... so step back to exactly what version 2 had
    _sqlite(path, "UPDATE schema_version SET version = 2")
    with Store(f"sqlite:///{path}") as store:
        assert store.schema_version() == 3
        attempt = store.start_task_attempt(1, "tune.train", "episode0/proposal0")
        store.finish_task_attempt(attempt, "ok", duration_s=1.5)
        assert [(a.attempt, a.status) for a in store.list_task_attempts(1)] == [(1, "ok")]
        assert store.get_run(1).name == "old-run"


def test_a_failing_upgrade_rolls_back_to_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    # A stray index with step 2's name makes step 2 fail halfway through its index list.
    _make_v1(path, "CREATE INDEX ix_trajectories_run ON trajectories (task);")
    with pytest.raises(PosttrainError, match="index ix_trajectories_run already exists"):
        Store(f"sqlite:///{path}")
    assert _sqlite(path, "SELECT version FROM schema_version") == [(1,)]
    assert _indexes(path) == {"ix_trajectories_run"}  # the indexes step 2 made before failing are gone


def test_newer_schema_is_refused_naming_file_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with Store(f"sqlite:///{path}") as store:
        store.create_run("r", "sft", {}, None)
    _sqlite(path, "UPDATE schema_version SET version = 7")
    with pytest.raises(PosttrainError) as err:
        Store(f"sqlite:///{path}")
    message = str(err.value)
    assert str(path) in message
    assert "schema version 7" in message and "versions up to 3" in message
    assert _sqlite(path, "SELECT count(*) FROM runs") == [(1,)]  # untouched


# ---------------------------------------------------------------- many writer processes

N_WRITERS = 4
ROWS_PER_WRITER = 40


def _writer(url: str, name: str, n_rows: int, go: Any, progress: Any) -> None:
    """One writer process; `progress` goes from -1 (not started) to 0 (imported) to rows written."""
    progress.value = 0
    go.wait()
    store = Store(url)  # all five open the fresh file at once: WAL switch and schema creation race
    run_id = store.create_run(name, "concurrency", {"writer": name}, None)
    for i in range(n_rows):
        store.add_episode(run_id, i, "train", {"lr": 1e-4 * (i + 1)}, {"eval_loss": 1.0 / (i + 1)}, {})
        store.add_agent_message(run_id, i, "tuner", "rules", {"episode": i}, {"lr": 1e-4 * (i + 1)})
        with progress.get_lock():
            progress.value += 1
    store.heartbeat(run_id)
    store.close()


def test_concurrent_writers_lose_nothing_even_when_one_is_killed(store_url: str) -> None:
    url, prefix = store_url, _unique("c")
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    progress = [ctx.Value("i", -1) for _ in range(N_WRITERS + 1)]
    writers = [
        ctx.Process(target=_writer, args=(url, f"{prefix}-writer-{i}", ROWS_PER_WRITER, go, progress[i]))
        for i in range(N_WRITERS)
    ]
    victim = ctx.Process(target=_writer, args=(url, f"{prefix}-victim", 100_000, go, progress[N_WRITERS]))
    for process in [*writers, victim]:
        process.start()
    deadline = time.monotonic() + 60
    while min(p.value for p in progress) < 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # spawned interpreters take a while to import; start everyone together
    go.set()

    while progress[N_WRITERS].value < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(p.is_alive() for p in writers), "the kill must land while the others still write"
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    for process in writers:
        process.join(60)
    assert victim.exitcode == -signal.SIGKILL
    assert [p.exitcode for p in writers] == [0] * N_WRITERS

    if url.startswith("sqlite:///"):
        assert _sqlite(Path(url.removeprefix("sqlite:///")), "PRAGMA integrity_check") == [("ok",)]
    with Store(url) as store:
        for i in range(N_WRITERS):
            run = store.find_run(f"{prefix}-writer-{i}")
            assert run is not None
            episodes = store.list_episodes(run.id)
            messages = store.list_agent_messages(run.id)
            assert [e.index for e in episodes] == list(range(ROWS_PER_WRITER))
            assert [m.episode_index for m in messages] == list(range(ROWS_PER_WRITER))
            assert episodes[-1].metrics == {"eval_loss": 1.0 / ROWS_PER_WRITER}
        victim_run = store.find_run(f"{prefix}-victim")
        assert victim_run is not None
        # Every write is its own transaction: the victim left a clean prefix, nothing torn.
        written = [e.index for e in store.list_episodes(victim_run.id)]
        assert len(written) >= 10 and written == list(range(len(written)))
        assert len(store.list_agent_messages(victim_run.id)) in (len(written) - 1, len(written))
        # The database still takes writes after the kill.
        store.add_episode(victim_run.id, len(written), "train", {}, {}, {})
        assert len(store.list_episodes(victim_run.id)) == len(written) + 1
