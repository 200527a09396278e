"""`posttrain runs`: the history store read back as tables."""

from __future__ import annotations

import yaml
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text

from posttrain.errors import PosttrainError
from posttrain.report import run_detail, runs_table
from posttrain.rundir import STALE_GRACE_S, open_store
from posttrain.store import RunRecord, Store


def list_runs(store: str | None, output_root: str, limit: int) -> RenderableType:
    """The newest `limit` runs; a run whose heartbeat stopped is marked failed first, so a killed
    process does not show as running forever."""
    st = open_store(store, output_root)
    st.mark_stale_running(STALE_GRACE_S)
    return runs_table(st.list_runs(limit=limit))


def show_run(run: str | int, store: str | None, output_root: str) -> RenderableType:
    """One run, by id or by name (the newest of that name): its fields, final metrics, episodes,
    executor task attempts, and the config it ran with."""
    st = open_store(store, output_root)
    record = find_run(st, str(run))
    detail = run_detail(record, st.list_episodes(record.id), st.list_task_attempts(record.id))
    config = yaml.safe_dump(record.config, sort_keys=False, allow_unicode=True).rstrip()
    shown = Syntax(config, "yaml", theme="ansi_dark", word_wrap=True)
    return Group(detail, Text("config", style="bold"), shown)


def find_run(st: Store, run: str) -> RunRecord:
    """An integer is an id first (as `runs list` shows them), then a name; anything else a name."""
    if run.isdigit():
        try:
            return st.get_run(int(run))
        except PosttrainError:
            pass  # a run may be named "7"
    record = st.find_run(run)
    if record is None:
        raise PosttrainError(f"no run with id or name '{run}' in {st.url} (see `posttrain runs list`)")
    return record
