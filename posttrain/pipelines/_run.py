"""The lifecycle every pipeline's run shares, so each pipeline file holds only its own steps.

A run goes: `resumed(cfg, resume)` (on `--resume` the run's own config.yaml wins) → the
pipeline validates its data with that config → `open_run(...)` claims the run directory,
writes config.yaml, opens the store row with its heartbeat, the executor and the device →
the pipeline's steps → `run.finish(summary, ...)`. Validation comes before `open_run`, and
`open_run` checks the machine (device, reporters, LoRA targets) and opens the store before it
claims the folder, so a start that fails them creates nothing. An exception inside the block
marks the row failed (`tracked_run`) and leaves the partial directory for `--resume`, unless
it is a user error (`PosttrainError`) on a fresh start before anything was written. A resume
first sets aside a corrupt newest checkpoint, so training continues from the previous one.

Under `--launcher accelerate` every rank opens the run: rank 0 alone claims the directory,
writes config.yaml and owns the store row; `finish` waits for every rank before it renames.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from posttrain.config import ModelSettings, RunSettings, dump_config, resumed_config
from posttrain.config.constants import REPORTERS
from posttrain.distributed import is_main_process, wait_for_everyone
from posttrain.errors import ConfigError, PosttrainError
from posttrain.executors import AttemptLog, Executor, open_executor
from posttrain.models import DeviceSettings, ResidentModel, check_target_modules, device_settings
from posttrain.rundir import RunDir, default_run_name, open_run_store, resume_dir, tracked_run
from posttrain.store import Store
from posttrain.train.loop import COMPLETE_MARKER, checkpoint_step

C = TypeVar("C", bound=BaseModel)
Report = Callable[[Path, dict[str, Any]], Any]
_log = logging.getLogger(__name__)


def resumed(cfg: C, resume: bool) -> C:
    """The config the run goes on with: on `resume` the saved config.yaml of the partial
    directory `cfg.run.name` (so the continued run is the same run), else `cfg`. A run killed
    before it trained takes this command's flags and `--set` over its saved file."""
    partial = _resume_dir(cfg.run, resume)  # type: ignore[attr-defined]
    if partial is None:
        return cfg
    trained = RunDir(partial.parent, cfg.run.name).trained()  # type: ignore[attr-defined]
    return resumed_config(cfg, partial, trained=trained)


class RecipeConfig(Protocol):
    """What open_run needs of a recipe config: every recipe has the shared `run` and `model` sections."""

    run: RunSettings
    model: ModelSettings

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


def _resume_dir(r: RunSettings, resume: bool) -> Path | None:
    return resume_dir(r.output_root, r.name, resume)


def _claim(r: RunSettings, resume: bool, default_name: str) -> tuple[RunDir, Store | None]:
    """The store (None off rank 0), then the run directory (rank 0 claims it): a store that
    cannot open must not leave a folder behind."""
    store = open_run_store(r.store, r.output_root)
    try:
        run_dir = RunDir.start(r.output_root, r.name or default_run_name(default_name), resume)
    except BaseException:
        if store is not None:
            store.close()
        raise
    return run_dir, store


def _device(m: ModelSettings) -> DeviceSettings:
    return device_settings(m.device, m.dtype, m.attn_implementation, m.use_kernels)


def _preflight(cfg: RecipeConfig) -> DeviceSettings:
    """Everything about the machine and the model a config names that can fail before any folder
    exists or weight loads: the device, every `report_to` installed, every LoRA target in the model."""
    settings = _device(cfg.model)
    for key, value in _leaves(cfg.model_dump(mode="json")):
        name = key.rsplit(".", 1)[-1]
        if name == "report_to" and isinstance(value, str):
            modules = REPORTERS.get(value, ())
            if modules and not any(importlib.util.find_spec(m) for m in modules):
                raise ConfigError(f"{key}={value}: the `{modules[0]}` package is not installed (or use none)")
        if name == "target_modules" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            check_target_modules(cfg.model.name, value, key)
    return settings


def _leaves(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _checkpoint_problem(ckpt: Path) -> str | None:
    """What makes a checkpoint marked complete unusable (a file cut short by a full disk or a
    copy), or None when every weight, state and JSON file in it reads back."""
    for path in sorted(p for p in ckpt.rglob("*") if p.is_file()):
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                load_file(str(path))
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(path) as zf:  # torch.save writes a zip archive
                    if zf.testzip() is not None:
                        return f"{path.name} is corrupt"
        except Exception as exc:  # every reader has its own error type for a truncated file
            return f"{path.name} is unreadable ({type(exc).__name__})"
    return None


def _set_aside_corrupt_checkpoints(root: Path) -> None:
    """Move a corrupt newest complete checkpoint out of the way (as `corrupt-checkpoint-N`), with a
    warning, so the resume continues from the previous complete one instead of crashing in HF."""
    groups: dict[Path, list[Path]] = {}
    for marker in root.rglob(f"checkpoint-*/{COMPLETE_MARKER}"):
        groups.setdefault(marker.parent.parent, []).append(marker.parent)
    for found in groups.values():
        for ckpt in sorted(found, key=checkpoint_step, reverse=True):
            problem = _checkpoint_problem(ckpt)
            if problem is None:
                break
            aside = ckpt.with_name(f"corrupt-{ckpt.name}")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(ckpt, aside)
            _log.warning(
                "%s: %s; resuming from the previous complete checkpoint (this one kept as %s)",
                ckpt,
                problem,
                aside.name,
            )


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
    settings = _preflight(cfg)
    run_dir, store = _claim(cfg.run, resume, default_name or kind)
    if is_main_process():
        dump_config(cfg, run_dir.path / "config.yaml")  # type: ignore[arg-type]
        if resume:
            _set_aside_corrupt_checkpoints(run_dir.path)
    try:
        with contextlib.ExitStack() as stack:
            config = cfg.model_dump(mode="json")
            run_id = stack.enter_context(tracked_run(store, kind, run_dir, config, resume))
            opened = None
            if executor is not None:
                logged = store is not None and run_id is not None
                log = AttemptLog.for_store(store.connect_url, run_id) if logged else None  # type: ignore[union-attr]
                opened = stack.enter_context(open_executor(**executor, log=log))
            yield Run(run_dir, kind, cfg.model.name, settings, store, run_id, opened)
    except PosttrainError:
        if not resume:  # a user error before any training: nothing to resume, so no folder left behind
            run_dir.discard()
        raise
