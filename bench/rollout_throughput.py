"""Rollout throughput: ReAct trajectories per minute, batched (one `generate` per step for every
unfinished episode, batch 16) against one trajectory at a time, on the same prompts in one run.

Prompts are held-in tool_use episodes (the compact system prompt `posttrain align` trains with);
both modes run the same greedy ReAct loop (`toolcall.run_react`) over the same tools.
Batching pays where decoding dominates: a decode step reads every weight once whatever the batch,
so 16 sequences cost little more than one; prefill is compute-bound and gains nothing.

    python bench/rollout_throughput.py              # smollm2-135m -> bench/results/rollout_throughput.json
    python bench/rollout_throughput.py --adapter runs/align-tool_use-.../adapter   # a trained agent
    python bench/rollout_throughput.py --model tiny-random --prompts 4 --out /tmp/rt.json   # smoke run

Without an adapter the base model rarely follows the format, so most trajectories are one turn
that runs to --max-new-tokens: the number then measures batched generation itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
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
    p.add_argument("--prompts", type=int, default=16, help="trajectories per mode")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=4, help="ReAct turns per trajectory")
    p.add_argument("--seed", type=int, default=1, help="seed of the held-in prompts")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def rollouts(
    model: Any, tok: Any, prompts: list, batch_size: int, args: argparse.Namespace
) -> tuple[float, list]:
    """Wall seconds and episodes of ReAct over `prompts`, `batch_size` conversations per generate."""
    from posttrain.inference import generator
    from posttrain.tasks.tool_use import build_registry
    from posttrain.toolcall import run_react

    generate = generator(model, tok, args.max_new_tokens, batch_size)
    episodes = []
    with tempfile.TemporaryDirectory(prefix="posttrain-bench-") as tmp:
        registry = build_registry("train", Path(tmp))
        start = time.perf_counter()
        for i in range(0, len(prompts), batch_size):
            episodes += run_react(prompts[i : i + batch_size], registry, generate, args.max_steps)
        return time.perf_counter() - start, episodes


def main(args: argparse.Namespace) -> dict[str, Any]:
    from posttrain.models import load_for_inference
    from posttrain.tasks.tool_use import tool_use_first_turns

    prompts = [r["prompt"] for r in tool_use_first_turns("train", args.seed, args.prompts, compact=True)]
    model, tok = load_for_inference(args.model, args.adapter)
    from posttrain.inference import generate_batch

    generate_batch(model, tok, prompts[:2], max_new_tokens=2)  # first-call overheads stay out of the timing

    batched_s, batched = rollouts(model, tok, prompts, args.batch_size, args)
    sequential_s, sequential = rollouts(model, tok, prompts, 1, args)

    def tokens(episodes: list) -> int:
        return sum(
            len(tok(s.raw, add_special_tokens=False)["input_ids"]) for ep in episodes for s in ep.steps
        )

    result = {
        "batched_per_min": round(len(prompts) / batched_s * 60, 2),
        "sequential_per_min": round(len(prompts) / sequential_s * 60, 2),
        "speedup": round(sequential_s / batched_s, 2),
        "prompts": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "max_steps": args.max_steps,
        "batched_s": round(batched_s, 2),
        "sequential_s": round(sequential_s, 2),
        "mean_steps": {
            "batched": round(sum(len(e.steps) for e in batched) / len(batched), 2),
            "sequential": round(sum(len(e.steps) for e in sequential) / len(sequential), 2),
        },
        "generated_tokens": {"batched": tokens(batched), "sequential": tokens(sequential)},
        "same_trajectories": sum(
            [s.raw for s in a.steps] == [s.raw for s in b.steps]
            for a, b in zip(batched, sequential, strict=True)
        ),
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
