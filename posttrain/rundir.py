"""Run directories and their row in the store.

`runs/<name>/` is written as `runs/.<name>.partial/` and renamed only when the run is
complete, so a directory under its final name is always whole. A killed run leaves the
partial directory (with its checkpoints) and a `running` row whose heartbeat stops; `--resume`
picks both up again.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import PosttrainError
from posttrain.store import Store

HEARTBEAT_S = 15.0
STALE_GRACE_S = 300.0  # 20 missed heartbeats: the process is gone, not busy


def default_run_name(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class RunDir:
    """Paths of one run; `path` is where files go while it runs."""

    root: Path
    name: str

    @property
    def final(self) -> Path:
        return self.root / self.name

    @property
    def partial(self) -> Path:
        return self.root / f".{self.name}.partial"

    @property
    def path(self) -> Path:
        return self.final if self.final.exists() else self.partial

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @classmethod
    def start(cls, root: str | Path, name: str, resume: bool) -> RunDir:
        """Claim a run directory, refusing to overwrite a finished run or to clobber a killed one."""
        run = cls(Path(root), name)
        if run.final.exists():
            raise PosttrainError(f"run '{name}' is already complete at {run.final}; pick another --name")
        if resume and not run.partial.exists():
            raise PosttrainError(f"nothing to resume: {run.partial} does not exist (was the run started?)")
        if not resume and run.partial.exists():
            raise PosttrainError(
                f"an unfinished run '{name}' exists at {run.partial}; add --resume to continue it "
                "or delete that directory to start over"
            )
        run.partial.mkdir(parents=True, exist_ok=True)
        return run

    def finish(self) -> Path:
        """Rename the partial directory to its final name (atomic on one filesystem)."""
        os.replace(self.partial, self.final)
        return self.final

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path


class _Heartbeat:
    def __init__(self, store: Store, run_id: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(store, run_id), daemon=True)
        self._thread.start()

    def _beat(self, store: Store, run_id: int) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat only makes the run look stale sooner
                store.heartbeat(run_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextmanager
def tracked_run(
    store: Store,
    kind: str,
    run: RunDir,
    config: dict[str, Any],
    resume: bool,
    stale_grace_s: float = STALE_GRACE_S,
) -> Iterator[int]:
    """A store row for the run: `running` with a heartbeat, then `failed` if the body raises.

    The body sets completed/diverged itself; on resume the existing row is reused. A resume
    first fails every `running` row whose heartbeat is older than `stale_grace_s`: those
    processes were killed, and a store that still calls them running misleads whoever reads it.
    """
    if resume:
        store.mark_stale_running(stale_grace_s)
    existing = store.find_run(run.name) if resume else None
    if existing is not None:
        run_id = existing.id
        store.update_run(run_id, status="running", error="", run_dir=str(run.path))
    else:
        run_id = store.create_run(run.name, kind, config, str(run.path))
    beat = _Heartbeat(store, run_id)
    try:
        yield run_id
    except BaseException as exc:
        store.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        beat.stop()


ADAPTER_META = "posttrain.json"


def open_store(url: str | None, output_root: str) -> Store:
    """The configured store, else $POSTTRAIN_STORE, else a SQLite file beside the runs."""
    if url is None and not os.environ.get("POSTTRAIN_STORE"):
        Path(output_root).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(output_root) / 'posttrain.db'}"
    return Store(url)


def resumed_config(cls: type, cfg: Any, resume: bool) -> Any:
    """On resume the run's own config.yaml wins, so the continued run is the same run."""
    if not resume:
        return cfg
    name = cfg.run.name
    if name is None:
        raise PosttrainError("--resume needs the run's name: add --name NAME (see `posttrain runs list`)")
    saved = RunDir(Path(cfg.run.output_root), name).partial / "config.yaml"
    if not saved.exists():
        return cfg
    return cls.model_validate(yaml.safe_load(saved.read_text()))


def save_adapter(model: Any, out: Path, model_spec: str, info: dict[str, Any]) -> Path:
    """Save the PEFT adapter plus a note of the base it belongs to (so --model can be omitted)."""
    model.save_pretrained(str(out))
    (out / ADAPTER_META).write_text(json.dumps({"base_model": model_spec, **info}, indent=2) + "\n")
    return out


def adapter_base_model(adapter: str | Path) -> str | None:
    meta = Path(adapter) / ADAPTER_META
    return json.loads(meta.read_text()).get("base_model") if meta.exists() else None
