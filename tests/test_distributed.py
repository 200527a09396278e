"""posttrain.distributed: the global batch split over N processes, and the single-process no-ops."""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrain.distributed import is_main_process, split_global_batch, wait_for_everyone, world_size
from posttrain.errors import ConfigError
from posttrain.train.args import TrainArgs


@pytest.mark.parametrize(
    ("batch", "accumulation", "processes", "expected"),
    [
        (4, 1, 1, (4, 1)),  # one process: as configured
        (4, 1, 2, (2, 1)),  # no accumulation to absorb N: the per-device batch halves
        (4, 2, 2, (4, 1)),  # accumulation absorbs N: same memory per device, fewer micro-steps
        (4, 8, 4, (4, 2)),
        (6, 2, 4, (3, 1)),
        (4, 3, 2, (3, 2)),  # neither divides alone: largest per-device batch <= 4 dividing 6
        (1, 8, 8, (1, 1)),
    ],
)
def test_split_keeps_the_global_batch(batch, accumulation, processes, expected):
    per_device, steps = split_global_batch(batch, accumulation, processes)
    assert (per_device, steps) == expected
    assert per_device * steps * processes == batch * accumulation
    assert per_device <= batch


def test_a_global_batch_the_processes_cannot_share_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\(4 examples x 1 accumulation steps = 4\).*multiple of 3"):
        split_global_batch(4, 1, 3)
    with pytest.raises(ConfigError, match="at least 1"):
        split_global_batch(4, 1, 0)


def _args(batch: int, accumulation: int) -> dict:
    args = TrainArgs(
        learning_rate=1e-4,
        batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=4,
        warmup_ratio=0.0,
        scheduler="constant",
        seed=0,
        save_steps=10,
        save_total_limit=1,
    )
    return args.hf_kwargs(Path("out"), bf16=False, use_cpu=True)


def test_trainer_arguments_split_the_configured_batch_over_the_launch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = _args(8, 1)
    assert (single["per_device_train_batch_size"], single["gradient_accumulation_steps"]) == (8, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun sets it in every rank
    ranked = _args(8, 1)
    assert (ranked["per_device_train_batch_size"], ranked["gradient_accumulation_steps"]) == (2, 1)


def test_outside_a_launch_every_process_is_main_and_nothing_initialises(monkeypatch):
    import posttrain.distributed

    def no_process_group():
        raise AssertionError("a one-process run must not start torch.distributed")

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(posttrain.distributed, "_state", no_process_group)
    assert world_size() == 1 and is_main_process()
    wait_for_everyone()
