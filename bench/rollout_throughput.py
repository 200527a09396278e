"""Rollout throughput: ReAct trajectories per minute, batched (one `generate` per step for every
unfinished episode, batch 32) against one trajectory at a time, on the same prompts in one run.

Prompts are held-in tool_use episodes (the compact system prompt `posttrain align` trains with);
every mode runs the same greedy ReAct loop (`toolcall.run_react`) over the same tools. Three
contenders run interleaved, `--rounds` times each (batched, batched without the shared-prefix
KV cache, sequential; then again), so a load change on the machine hits all of them; the JSON
keeps the median and the min/max of each, and `speedup` is the ratio of the medians.
Batching pays where decoding dominates: a decode step reads every weight once whatever the batch,
so 16 sequences cost little more than one. Prefill is compute-bound and gains nothing from
batching, which is why the batched mode computes the system prompt all rows share only once.

    python bench/rollout_throughput.py              # smollm2-135m -> bench/results/rollout_throughput.json
    python bench/rollout_throughput.py --adapter runs/align-tool_use-.../adapter   # a trained agent
    python bench/rollout_throughput.py --model tiny-random --prompts 4 --rounds 1 --out /tmp/rt.json  # smoke

Without an adapter the base model rarely follows the format, so most trajectories are one turn
that runs to --max-new-tokens: the number then measures batched generation itself. Run it on a
quiet machine (the JSON records the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "rollout_throughput.json"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="smollm2-135m", help="smollm2-135m (default), tiny-random, hub id or dir"
    )
    p.add_argument("--adapter", type=Path, default=None, help="PEFT adapter (e.g. an align run's adapter/)")
    # 32 rather than 16: per row, a batch-32 decode step costs ~25% less than a batch-16 one on a
    # 2-core CPU (measured: speedup 4.9x at 16/16, 6.1x at 32/32, single-thread smoke runs).
    p.add_argument("--prompts", type=int, default=32, help="trajectories per mode")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=4, help="ReAct turns per trajectory")
    p.add_argument("--seed", type=int, default=1, help="seed of the held-in prompts")
    p.add_argument("--rounds", type=int, default=3, help="interleaved runs of each contender")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


CONTENDERS = ("batched", "batched_plain", "sequential")


def rollouts(
    model: Any, tok: Any, prompts: list, batch_size: int, prefix_cache: bool, args: argparse.Namespace
) -> tuple[float, list]:
    """Wall seconds and episodes of ReAct over `prompts`, `batch_size` conversations per generate."""
    from posttrain.inference import generator
    from posttrain.tasks.tool_use import build_registry
    from posttrain.toolcall import run_react

    generate = generator(model, tok, args.max_new_tokens, batch_size, prefix_cache=prefix_cache)
    episodes = []
    with tempfile.TemporaryDirectory(prefix="posttrain-bench-") as tmp:
        registry = build_registry("train", Path(tmp))
        start = time.perf_counter()
        for i in range(0, len(prompts), batch_size):
            episodes += run_react(prompts[i : i + batch_size], registry, generate, args.max_steps)
        return time.perf_counter() - start, episodes


def run_contender(
    name: str, model: Any, tok: Any, prompts: list, args: argparse.Namespace
) -> tuple[float, list]:
    batch = 1 if name == "sequential" else args.batch_size
    return rollouts(model, tok, prompts, batch, name != "batched_plain", args)


def main(args: argparse.Namespace) -> dict[str, Any]:
    from posttrain.models import load_for_inference
    from posttrain.tasks.tool_use import tool_use_first_turns

    prompts = [r["prompt"] for r in tool_use_first_turns("train", args.seed, args.prompts, compact=True)]
    model, tok = load_for_inference(args.model, args.adapter)
    # First-call overheads (imports, the tool registry, kernels) stay out of the timing: without
    # this the first contender's first round ran 14x slower on tiny-random.
    for name in CONTENDERS:
        run_contender(name, model, tok, prompts[:2], args)

    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    episodes: dict[str, list] = {}
    for _ in range(args.rounds):
        for name in CONTENDERS:
            wall, episodes[name] = run_contender(name, model, tok, prompts, args)
            seconds[name].append(wall)
    load_after = os.getloadavg()
    median = {name: statistics.median(xs) for name, xs in seconds.items()}

    def per_min(s: float) -> float:
        return round(len(prompts) / s * 60, 2)

    def steps(eps: list) -> int:
        return sum(len(ep.steps) for ep in eps)

    def tokens(eps: list) -> int:
        return sum(len(tok(s.raw, add_special_tokens=False)["input_ids"]) for ep in eps for s in ep.steps)

    def same(a: str, b: str) -> int:
        return sum(
            [s.raw for s in x.steps] == [s.raw for s in y.steps]
            for x, y in zip(episodes[a], episodes[b], strict=True)
        )

    result = {
        "batched_per_min": per_min(median["batched"]),
        "sequential_per_min": per_min(median["sequential"]),
        "batched_plain_per_min": per_min(median["batched_plain"]),
        "speedup": round(median["sequential"] / median["batched"], 2),
        "speedup_without_prefix_cache": round(median["sequential"] / median["batched_plain"], 2),
        "prefix_cache_gain": round(median["batched_plain"] / median["batched"], 2),
        "prompts": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "max_steps": args.max_steps,
        "rounds": args.rounds,
        "seconds": {name: [round(x, 2) for x in xs] for name, xs in seconds.items()},
        "per_min_range": {name: [per_min(max(xs)), per_min(min(xs))] for name, xs in seconds.items()},
        "mean_steps": {name: round(steps(eps) / len(eps), 2) for name, eps in episodes.items()},
        "generated_tokens": {name: tokens(eps) for name, eps in episodes.items()},
        "same_trajectories": {
            "batched_vs_sequential": same("batched", "sequential"),
            "batched_vs_batched_plain": same("batched", "batched_plain"),
        },
        "load_avg_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "model": args.model,
        "adapter": str(args.adapter) if args.adapter else None,
        "device": str(next(model.parameters()).device),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "command": ("python bench/rollout_throughput.py " + shlex.join(sys.argv[1:])).strip(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))
    print(f"\ncommand: {result['command']}\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
