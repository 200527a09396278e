"""`posttrain seal --resume`: outer-iteration checkpoints and continuing a killed run from them.

After every outer iteration the run writes `checkpoints/iteration<i>/` (atomically: a temporary
directory renamed into place) with the generator adapter's weights and every finished
iteration's metrics row. A resumed run loads the newest one, trims self_edits.jsonl and
metrics.jsonl back to the iterations it holds and continues with the next iteration.

Every random choice of an iteration derives from the master seed and the iteration index
(contexts, sampling, inner and M-step seeds), and the generator's weights are restored
exactly, so on the same machine and software a resumed run repeats the uninterrupted run's
self-edits, rewards and generator bit for bit; an iteration cut short by the kill is redone
from its start. Not repeated: `elapsed_s`/`runtime_s`, and results on a GPU whose kernels are
not deterministic (as for any two runs there).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from posttrain.rundir import RunDir
from posttrain.store import Store
from posttrain.train.restem import GENERATOR, GeneratorAdapter

STATE = "state.json"
WEIGHTS = "generator.safetensors"


def _generator_params(generator: GeneratorAdapter) -> dict[str, torch.Tensor]:
    return {n: p for n, p in generator.model.named_parameters() if f".{GENERATOR}." in n}


def save_iteration(run: RunDir, generator: GeneratorAdapter, history: list[dict[str, Any]]) -> Path:
    """Checkpoint the run after `history[-1]`'s iteration; older checkpoints are removed."""
    root = run.checkpoints
    final = root / f"iteration{len(history) - 1}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {n: p.detach().cpu().contiguous() for n, p in _generator_params(generator).items()}, tmp / WEIGHTS
    )
    state = {"history": history, "trained_rounds": generator.trained_rounds}
    (tmp / STATE).write_text(json.dumps(state))
    os.replace(tmp, final)
    for old in root.glob("iteration*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def restore_iterations(run: RunDir, generator: GeneratorAdapter) -> list[dict[str, Any]]:
    """Load the newest checkpoint into `generator`; returns the finished iterations' rows ([] if none)."""
    done = sorted(
        (p for p in run.checkpoints.glob("iteration*") if (p / STATE).exists()),
        key=lambda p: int(p.name.removeprefix("iteration")),
    )
    history: list[dict[str, Any]] = []
    if done:
        state = json.loads((done[-1] / STATE).read_text())
        history = state["history"]
        saved = load_file(done[-1] / WEIGHTS)
        params = _generator_params(generator)
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value.to(params[name].device))
        generator.trained_rounds = state["trained_rounds"]
    for name in ("self_edits.jsonl", "metrics.jsonl"):
        _trim(run.path / name, len(history))
    return history


def _trim(path: Path, iterations: int) -> None:
    """Keep the rows of the first `iterations` iterations (a killed iteration may have left some)."""
    if not path.exists():
        return
    keep = [
        line for line in path.read_text().splitlines() if line and json.loads(line)["iteration"] < iterations
    ]
    path.write_text("".join(line + "\n" for line in keep))


def recorded_keys(store: Store, run_id: int) -> set[tuple]:
    """Store rows the killed attempt wrote: (iteration, context, sample) per self-edit, ("episode", i)."""
    keys: set[tuple] = {(e.iteration, e.context_id, e.sample_index) for e in store.list_self_edits(run_id)}
    keys |= {("episode", e.index) for e in store.list_episodes(run_id)}
    return keys
