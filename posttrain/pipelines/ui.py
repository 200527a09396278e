"""`posttrain ui`: a local, read-only web page over the history store and the run folders.

`/` lists the runs; `/runs/<id or name>` shows one run (curves, decision timeline, self-edits,
trajectories, attempts); `/api/runs/<id or name>` is the same run as JSON. The standard
library's threading HTTP server is enough for one person's browser and starts instantly; it
never writes to the store (a dead run shows its last heartbeat rather than being marked failed).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import asdict
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from posttrain.errors import PosttrainError
from posttrain.report.html import page, runs_page
from posttrain.report.run_page import RunData, run_page
from posttrain.rundir import open_store
from posttrain.store import Store

log = logging.getLogger(__name__)
MAX_RUNS = 500


def serve_ui(store_url: str | None, runs_root: str, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the dashboard until interrupted. Port 0 takes any free port; the URL is printed
    either way (the first line of output, for scripts that start it)."""
    if not _is_loopback(host):
        log.warning("posttrain ui has no login: anyone who can reach %s:%s can read every run", host, port)
    store = open_store(store_url, runs_root)
    server = make_server(store, Path(runs_root), host, port)
    bound_host, bound_port = server.server_address[:2]
    print(f"posttrain ui: http://{bound_host}:{bound_port}/  (store {store.url}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        store.close()


def make_server(store: Store, runs_root: Path, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP server over an open store (bound, not yet serving)."""
    handler = type("UIHandler", (_Handler,), {"store": store, "runs_root": runs_root})
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        reason = f"posttrain ui cannot listen on {host}:{port}: {err.strerror}"
        raise PosttrainError(f"{reason}; pick another --port (0: any free one)") from err


def load_run(store: Store, key: str, runs_root: Path) -> RunData:
    """One run's records and metrics files, by id or by name (the newest run of that name)."""
    run = store.get_run(int(key)) if key.isdigit() else store.find_run(key)
    if run is None:
        raise PosttrainError(f"no run named {key!r} in {store.url}")
    folder = run_folder(run.run_dir, run.name, runs_root)
    return RunData(
        run=run,
        episodes=store.list_episodes(run.id),
        messages=store.list_agent_messages(run.id),
        self_edits=store.list_self_edits(run.id),
        trajectories=store.list_trajectories(run.id),
        attempts=store.list_task_attempts(run.id),
        curves=read_curves(folder) if folder else {},
        run_dir=folder,
    )


def run_folder(recorded: str | None, name: str, runs_root: Path) -> Path | None:
    """Where the run's files are now: the recorded path (relative to where it was trained, which
    may be here), else `<runs>/<name>` or its `.partial` twin; None when none exists."""
    candidates = []
    if recorded:
        candidates += [Path(recorded), runs_root / Path(recorded).name]
    candidates += [runs_root / name, runs_root / f".{name}.partial"]
    return next((c for c in candidates if c.is_dir()), None)


def read_curves(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Per-step metric rows by stage: `metrics_<stage>.jsonl` files, and `metrics.jsonl` split by
    its rows' "stage" key (rlhf joins its stages there; a stage with its own file is not repeated)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("metrics_*.jsonl")):
        groups[path.stem.removeprefix("metrics_")] = _jsonl(path)
    own_file = set(groups)
    joined = folder / "metrics.jsonl"
    if joined.exists():
        for row in _jsonl(joined):
            stage = str(row.get("stage", ""))
            if stage not in own_file:
                groups.setdefault(stage, []).append(row)
    return {k: v for k, v in groups.items() if v}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill mid-write: the rest of the file is still good
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    store: Store
    runs_root: Path

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        path = unquote(urlsplit(self.path).path).rstrip("/") or "/"
        try:
            if path == "/":
                self._send(200, runs_page(self.store.list_runs(limit=MAX_RUNS), self.store.url))
            elif path.startswith("/runs/"):
                self._send(200, run_page(load_run(self.store, path.removeprefix("/runs/"), self.runs_root)))
            elif path.startswith("/api/runs/"):
                data = load_run(self.store, path.removeprefix("/api/runs/"), self.runs_root)
                body = json.dumps(asdict(data), default=str, ensure_ascii=False)
                self._send(200, body, "application/json")
            else:
                self._send(404, page("not found", f"<h1>Not found</h1><p>No page at {escape(path)}.</p>"))
        except PosttrainError as err:
            self._send(404, page("not found", f"<h1>Not found</h1><p>{escape(str(err))}</p>"))

    def _send(self, status: int, body: str, content_type: str = "text/html; charset=utf-8") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        log.debug("ui %s", format % args)
