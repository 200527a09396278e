"""Who does what when `posttrain` runs as N processes under `accelerate launch`.

Every rank loads the model and trains (DDP, FSDP or DeepSpeed all-reduce the gradients),
but a run has one directory, one store row, one adapter and one report, so only the main
process (rank 0) writes them; the others wait at a barrier where they would read what it
wrote. Outside a launch (no WORLD_SIZE above 1 in the environment) every helper here is a
no-op and nothing initialises torch.distributed.

`--num-processes` keeps the configured global batch: `split_global_batch` turns the
configured per-step batch (batch_size x gradient_accumulation_steps examples) into a
per-device batch and accumulation that give the same number of examples per optimizer
step across all ranks, so N processes reproduce the single-process run.
"""

from __future__ import annotations

import os
from typing import Any

from posttrain.errors import ConfigError


def world_size() -> int:
    """Processes in this launch (torchrun/accelerate set WORLD_SIZE); 1 outside a launch."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return world_size() > 1


def _state() -> Any:
    import torch
    from accelerate import PartialState

    # The first PartialState fixes the backend of the process: on CPU it must be told so, or
    # it finds no GPU backend and settles for one process instead of gloo across all of them.
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=use_cpu or not torch.cuda.is_available())


def is_main_process() -> bool:
    """True on rank 0 of a launch and always in a plain single-process run."""
    return not is_distributed() or _state().is_main_process


def local_rank() -> int:
    """This process's index on its machine (its GPU under DDP); 0 outside a launch."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def wait_for_everyone() -> None:
    """Barrier across ranks; a no-op in a single-process run."""
    if is_distributed():
        _state().wait_for_everyone()


def gather_objects(items: list[Any]) -> list[Any]:
    """Every rank's `items`, concatenated in rank order, on every rank (a collective); `items` alone
    in one process."""
    if not is_distributed():
        return items
    _state()  # gather_object needs the process group up
    from accelerate.utils import gather_object

    return gather_object(items)


def split_global_batch(batch_size: int, gradient_accumulation_steps: int, processes: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) that keep batch_size x accumulation examples per step.

    With N processes each optimizer step must still see batch_size x accumulation examples
    (per-device batch x N x accumulation). The per-device batch stays as configured while the
    accumulation can absorb N (fewer sequential micro-steps, the memory per device the user
    sized); otherwise it becomes the largest divisor of the per-rank share not above it.
    Raises ConfigError when the global batch is not a multiple of N.
    """
    if processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {processes}")
    total = batch_size * gradient_accumulation_steps
    if total % processes:
        raise ConfigError(
            f"the global batch ({batch_size} examples x {gradient_accumulation_steps} accumulation steps "
            f"= {total}) cannot be split over {processes} processes: set the batch size or the "
            f"gradient accumulation steps so that their product is a multiple of {processes}"
        )
    per_step = total // processes
    per_device = max(b for b in range(1, min(batch_size, per_step) + 1) if per_step % b == 0)
    return per_device, per_step // per_device
