"""Run directories and their row in the store.

`runs/<name>/` is written as `runs/.<name>.partial/` and renamed only when the run is
complete, so a directory under its final name is always whole. A killed run leaves the
partial directory (with its checkpoints) and a `running` row whose heartbeat stops; `--resume`
picks both up again.

Under `--launcher accelerate` every rank uses the same directory (HF writes each rank's RNG
state into the shared checkpoints) but only rank 0 claims it, owns the store row and writes
the adapter, so the helpers here are called on every rank and decide that themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.distributed import is_distributed, is_main_process, wait_for_everyone
from posttrain.errors import ConfigError, PosttrainError
from posttrain.store import Store

HEARTBEAT_S = 15.0
STALE_GRACE_S = 300.0  # 20 missed heartbeats: the process is gone, not busy
RUN_STAMP_ENV = "POSTTRAIN_RUN_STAMP"  # set by the launcher: one default run name for all its ranks


def default_run_name(kind: str) -> str:
    """`<kind>-<timestamp>`; the ranks of a launch share the launcher's timestamp."""
    return f"{kind}-{os.environ.get(RUN_STAMP_ENV) or time.strftime('%Y%m%d-%H%M%S')}"


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
        """Claim a run directory, refusing to overwrite a finished run or to clobber a killed one.

        Under a launch rank 0 claims it and the other ranks join it after a barrier.
        """
        run = cls(Path(root), name)
        if is_main_process():
            run._claim(resume)
        wait_for_everyone()
        return run

    def _claim(self, resume: bool) -> None:
        if self.final.exists():
            raise PosttrainError(
                f"run '{self.name}' is already complete at {self.final}; pick another --name"
            )
        if resume and not self.partial.exists():
            raise PosttrainError(f"nothing to resume: {self.partial} does not exist (was the run started?)")
        if not resume and self.partial.exists():
            raise PosttrainError(
                f"an unfinished run '{self.name}' exists at {self.partial}; add --resume to continue it "
                "or delete that directory to start over"
            )
        try:
            self.partial.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PosttrainError(
                f"cannot create the run folder {self.partial}: {exc.strerror or exc} (check --output-dir)"
            ) from exc

    def trained(self) -> bool:
        """Whether the partial run holds anything but its config.yaml: a run killed before its first
        step has nothing to continue, so its resume may take new settings."""
        return any(p.is_file() and p.name != "config.yaml" for p in self.partial.rglob("*"))

    def discard(self) -> None:
        """Remove the partial folder of a start that failed before it trained (rank 0 only)."""
        if is_main_process() and self.partial.exists() and not self.trained():
            shutil.rmtree(self.partial, ignore_errors=True)

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
    store: Store | None,
    kind: str,
    run: RunDir,
    config: dict[str, Any],
    resume: bool,
    stale_grace_s: float = STALE_GRACE_S,
) -> Iterator[int | None]:
    """A store row for the run: `running` with a heartbeat, then `failed` if the body raises.

    The body sets completed/diverged itself; on resume the existing row is reused. A resume
    first fails every `running` row whose heartbeat is older than `stale_grace_s`: those
    processes were killed, and a store that still calls them running misleads whoever reads it.
    Without a store (ranks other than 0 of a launch, see `open_run_store`) there is no row:
    yields None.
    """
    if store is None:
        yield None
        return
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


def resume_dir(output_root: str | Path, name: str | None, resume: bool) -> Path | None:
    """The partial directory a `--resume` continues, for `posttrain.config.resumed_config`;
    None when not resuming."""
    if not resume:
        return None
    if name is None:
        raise PosttrainError("--resume needs the run's name: add --name NAME (see `posttrain runs list`)")
    return RunDir(Path(output_root), name).partial


def open_run_store(url: str | None, output_root: str) -> Store | None:
    """`open_store` on rank 0 of a launch (and in every single-process run); None on the others."""
    return open_store(url, output_root) if is_main_process() else None


def save_adapter(model: Any, out: Path, model_spec: str, info: dict[str, Any]) -> Path:
    """Save the PEFT adapter plus a note of the base it belongs to (so --model can be omitted).

    Call it on every rank of a launch: sharded adapters (FSDP, ZeRO-3) are gathered by all of
    them, rank 0 writes, and the others wait until the files exist.
    """
    state = _gathered_adapter_state(model)
    if is_main_process():
        model.save_pretrained(str(out), **({} if state is None else {"state_dict": state}))
        write_adapter_meta(out, model_spec, info)
    wait_for_everyone()
    return out


def _is_adapter_key(name: str) -> bool:
    return "lora_" in name or "modules_to_save" in name


def _gathered_adapter_state(model: Any) -> dict[str, Any] | None:
    """The adapter tensors whole, when a launch shards them; None when every rank holds them whole.

    FSDP2 turns parameters into DTensors (`full_tensor()` all-gathers one); ZeRO-3 leaves
    empty placeholders with a `ds_id` until its GatheredParameters context fills them.
    """
    if not is_distributed():
        return None
    trainable = [p for p in model.parameters() if p.requires_grad]
    if any(hasattr(p, "ds_id") for p in trainable):
        import deepspeed

        with deepspeed.zero.GatheredParameters(trainable, modifier_rank=None):
            return {k: v.detach().clone() for k, v in model.state_dict().items() if _is_adapter_key(k)}
    from torch.distributed.tensor import DTensor

    state = {k: v for k, v in model.state_dict().items() if _is_adapter_key(k)}
    if not any(isinstance(v, DTensor) for v in state.values()):
        return None
    return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}


def write_adapter_meta(out: Path, model_spec: str, info: dict[str, Any]) -> None:
    """The note beside an adapter that names its base, so `--model` can be left out later."""
    (out / ADAPTER_META).write_text(json.dumps({"base_model": model_spec, **info}, indent=2) + "\n")


def adapter_meta(adapter: str | Path | None) -> dict[str, Any]:
    """The adapter's note (base model, kind, how it was trained); {} when there is none."""
    meta = Path(adapter) / ADAPTER_META if adapter is not None else None
    if meta is None or not meta.is_file():  # also "not saved yet": rlhf asks whether a stage is done
        return {}
    from posttrain.models import read_json_object  # torch: `posttrain serve` binds its port first

    return read_json_object(meta)


def adapter_tool_format(adapter: str | Path | None) -> str:
    """How the adapter was trained to see tools and write calls (align's `data.tool_format`): one
    trained on the model's chat-template format must be prompted and parsed in that format, or it
    is used in a format it never saw. Adapters from before the key existed are Thought→Action."""
    return str(adapter_meta(adapter).get("tool_format", "react"))


def adapter_base_model(adapter: str | Path) -> str | None:
    """The base model an adapter was trained on, from its note; None when it has none."""
    return adapter_meta(adapter).get("base_model")


RELEVANCE_DIR = "relevance_adapter"
"""Where `posttrain align` saves the relevance gate's trained scorer, beside sft_adapter/ and adapter/."""


def gate_scorer_adapter(
    scorer: str, adapter: str | Path | None, given: Path | None, gate: object
) -> Path | None:
    """The trained relevance scorer a gate of `scorer` reads: `given`, else the relevance_adapter/
    an align run saved beside `adapter`; None for the other scorers, or without a `gate`. A
    ConfigError (exit 2) names what is missing before any model loads."""
    if scorer != "trained" or gate is None:
        if given is not None:
            raise ConfigError(
                "--relevance-adapter is read by --relevance-gate with --relevance-gate-scorer trained"
            )
        return None
    found = (
        given
        if given is not None
        else (Path(adapter).parent / RELEVANCE_DIR if adapter is not None else None)
    )
    if found is None or not (found / "adapter_config.json").is_file():
        where = f"{found}: no adapter_config.json" if found is not None else "no --adapter to look beside"
        raise ConfigError(
            f"--relevance-gate-scorer trained reads a trained scorer ({where}); give --relevance-adapter "
            f"DIR, the {RELEVANCE_DIR}/ of an align run with evaluation.relevance_gate_scorer: trained"
        )
    return found
