"""`posttrain runs`: the history store read back as tables."""

from __future__ import annotations

from rich.console import RenderableType

from posttrain.report import run_detail, runs_table
from posttrain.rundir import STALE_GRACE_S, open_store


def list_runs(store: str | None, output_root: str, limit: int) -> RenderableType:
    """The newest `limit` runs; a run whose heartbeat stopped is marked failed first, so a killed
    process does not show as running forever."""
    st = open_store(store, output_root)
    st.mark_stale_running(STALE_GRACE_S)
    return runs_table(st.list_runs(limit=limit))


def show_run(run_id: int, store: str | None, output_root: str) -> RenderableType:
    """One run with its config, final metrics, episodes and executor task attempts."""
    st = open_store(store, output_root)
    return run_detail(st.get_run(run_id), st.list_episodes(run_id), st.list_task_attempts(run_id))
