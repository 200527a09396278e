"""The lifecycle every pipeline's run shares, so each pipeline file holds only its own steps.

A run goes: `resumed(cfg, resume)` (on `--resume` the run's own config.yaml wins) → the
pipeline validates its data with that config → `open_run(...)` claims the run directory,
writes config.yaml, opens the store row with its heartbeat, the executor and the device →
the pipeline's steps → `run.finish(summary, ...)`. Validation comes before `open_run`, so a
start that fails it creates nothing. An exception inside the block marks the row failed
(`tracked_run`) and leaves the partial directory for `--resume`.

Under `--launcher accelerate` every rank opens the run: rank 0 alone claims the directory,
writes config.yaml and owns the store row; `finish` waits for every rank before it renames.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from posttrain.config import ModelSettings, RunSettings, dump_config, resumed_config
from posttrain.distributed import is_main_process, wait_for_everyone
from posttrain.executors import AttemptLog, Executor, open_executor
from posttrain.models import DeviceSettings, ResidentModel, device_settings
from posttrain.rundir import RunDir, default_run_name, open_run_store, resume_dir, tracked_run
from posttrain.store import Store

C = TypeVar("C", bound=BaseModel)
Report = Callable[[Path, dict[str, Any]], Any]


def resumed(cfg: C, resume: bool) -> C:
    """The config the run goes on with: on `resume` the saved config.yaml of the partial
    directory `cfg.run.name` (so the continued run is the same run), else `cfg`."""
    return resumed_config(cfg, _resume_dir(cfg.run, resume))  # type: ignore[attr-defined]


class RecipeConfig(Protocol):
    """What open_run needs of a recipe config: every recipe has the shared `run` and `model` sections."""

    run: RunSettings
    model: ModelSettings

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


def _resume_dir(r: RunSettings, resume: bool) -> Path | None:
    return resume_dir(r.output_root, r.name, resume)


def _claim(r: RunSettings, resume: bool, default_name: str) -> tuple[RunDir, Store | None]:
    """The run directory (rank 0 claims it) and the store (None off rank 0)."""
    run_dir = RunDir.start(r.output_root, r.name or default_run_name(default_name), resume)
    return run_dir, open_run_store(r.store, r.output_root)


def _device(m: ModelSettings) -> DeviceSettings:
    return device_settings(m.device, m.dtype, m.attn_implementation, m.use_kernels)


@dataclass
class Run:
    """An open run: its directory, store row (None off rank 0), device and resident base."""

    dir: RunDir
    kind: str
    model_name: str
    settings: DeviceSettings
    store: Store | None
    run_id: int | None
    executor: Executor | None = None

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def name(self) -> str:
        return self.dir.name

    @cached_property
    def resident(self) -> ResidentModel:
        """The base model, loaded on first use and then kept for the whole run."""
        return ResidentModel(self.model_name, self.settings)

    def metric_rows(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl ([] before the first step is logged)."""
        path = self.dir.metrics
        return [json.loads(x) for x in path.read_text().splitlines() if x] if path.exists() else []

    def finish(
        self,
        summary: dict[str, Any],
        *,
        status: str = "completed",
        error: str | None = None,
        report: Report | None = None,
    ) -> dict[str, Any]:
        """Close the run; returns `{"run", "status", **summary, "run_dir"}` (also summary.json).

        Completed: `report(path, summary)` writes report.md and plots, then summary.json, the
        directory is renamed to its final name and the row marked completed. Any other status
        (diverged) records `error` and keeps the `.partial` name: it is not a complete run. Call
        it on every rank; only rank 0 writes (the others get the summary without `run_dir`).
        """
        wait_for_everyone()  # no rank still writes into the partial directory when rank 0 renames it
        summary = {"run": self.name, "status": status, **summary}
        if self.store is None or self.run_id is None:
            return summary
        if status != "completed":
            summary["error"] = error
            self.dir.write_json("summary.json", summary)
            self.store.update_run(self.run_id, status=status, error=error, metrics=summary)
            summary["run_dir"] = str(self.path)
            return summary
        if report is not None:
            report(self.path, summary)
        self.dir.write_json("summary.json", summary)
        final = self.dir.finish()
        summary["run_dir"] = str(final)
        self.store.update_run(self.run_id, status="completed", metrics=summary, run_dir=str(final))
        return summary


@contextmanager
def open_run(
    kind: str,
    cfg: RecipeConfig,
    resume: bool,
    *,
    default_name: str | None = None,
    executor: dict[str, Any] | None = None,
) -> Iterator[Run]:
    """Claim `cfg.run`'s directory and store row for the block; `cfg` is the `resumed` config.

    `kind` names the run in the store (and, unless `default_name`, its default name
    `<kind>-<timestamp>`). `executor` (the config's executor block as keywords) opens an
    executor whose workers log their attempts under this run. The block must end in
    `run.finish(...)`; leaving it by an exception marks the row failed.
    """
    run_dir, store = _claim(cfg.run, resume, default_name or kind)
    if is_main_process():
        dump_config(cfg, run_dir.path / "config.yaml")  # type: ignore[arg-type]
    with contextlib.ExitStack() as stack:
        run_id = stack.enter_context(tracked_run(store, kind, run_dir, cfg.model_dump(mode="json"), resume))
        opened = None
        if executor is not None:
            log = AttemptLog.for_store(store.connect_url, run_id) if store and run_id is not None else None
            opened = stack.enter_context(open_executor(**executor, log=log))
        settings = _device(cfg.model)
        yield Run(run_dir, kind, cfg.model.name, settings, store, run_id, opened)
