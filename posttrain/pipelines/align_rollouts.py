"""The rollout stage of `posttrain align` as shards an executor runs: locally one shard on the
resident SFT model, on Ray one task per shard on a policy each worker loads once.

A shard rolls out one greedy trajectory per prompt, then k - 1 sampled ones, through the task's
`rollouts` (tasks.base.AlignTask); the task travels by name so a job pickles small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from posttrain.executors import Executor, worker_cached
from posttrain.inference import generator, merged
from posttrain.models import ResidentModel, device_settings
from posttrain.tasks.align import align_task

Traces = list[dict[str, Any]]


@dataclass(frozen=True)
class RolloutJob:
    """How every shard rolls out: the task, k trajectories per prompt and the generation budget."""

    task: str
    k: int
    temperature: float
    top_p: float
    max_steps: int
    max_new_tokens: int
    batch_size: int
    force_answer: bool = True  # meetings: answer forced at the step cap


@dataclass(frozen=True)
class RolloutShard:
    """Held-in prompts rolled out by one task, and the torch seed its sampling starts from."""

    prompts: list[dict[str, Any]]
    seed: int


@dataclass(frozen=True)
class PolicySource:
    """Where a worker loads the policy from: the base spec and placement, and an adapter dir."""

    model: str
    device: str
    dtype: str
    attn_implementation: str
    adapter: str
    use_kernels: bool = False


def rollout_shard(model: Any, tokenizer: Any, job: RolloutJob, shard: RolloutShard) -> tuple[Traces, Traces]:
    """(greedy, sampled) trajectories of a shard: one greedy per prompt, then k - 1 sampled each."""
    torch.manual_seed(shard.seed)
    task = align_task(job.task, force_answer=job.force_answer)
    greedy = generator(model, tokenizer, job.max_new_tokens, job.batch_size)
    sampled = generator(model, tokenizer, job.max_new_tokens, job.batch_size, (job.temperature, job.top_p))
    first = task.rollouts(shard.prompts, greedy, job.max_steps, "sft-greedy")
    more: Traces = []
    if job.k > 1:
        again = [p for p in shard.prompts for _ in range(job.k - 1)]
        more = task.rollouts(again, sampled, job.max_steps, f"sft-sample(t={job.temperature})")
    return first, more


def rollout_shard_in_worker(
    source: PolicySource, job: RolloutJob, shard: RolloutShard
) -> tuple[Traces, Traces]:
    """`rollout_shard` in a Ray worker, on the policy loaded once per worker from `source`."""

    def load() -> ResidentModel:
        settings = device_settings(
            source.device, source.dtype, source.attn_implementation, source.use_kernels
        )
        resident = ResidentModel(source.model, settings)
        resident.load_adapter(source.adapter, trainable=False)
        return resident

    resident = worker_cached(repr(source), load)
    with merged(resident.model) as model:
        return rollout_shard(model, resident.tokenizer, job, shard)


def run_rollouts(
    executor: Executor, fn: Callable[[RolloutShard], tuple[Traces, Traces]], shards: list[RolloutShard]
) -> Traces:
    """Every shard through `fn`, one task each; all greedy trajectories first, then the sampled
    ones, each group in prompt order (the layout of a single-shard run)."""
    parts = executor.map(fn, shards, stage="align.rollouts", keys=[f"shard{i}" for i in range(len(shards))])
    return [t for first, _ in parts for t in first] + [t for _, more in parts for t in more]
