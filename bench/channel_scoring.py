"""Channel scoring throughput: `inference.channel_logprobs` (rows batched by length, logits only
at target positions) against the plain form it replaced (rows batched in the caller's order,
logits at every position), on the same pairs in one run.

The pairs are what an align run's relevance gate scores: every offered tool's prefix and the null
tool's against one request, for function-pool requests of the validation families (seed 3000,
30% that no tool fits). Channel scoring runs through much of the tool_use bench (the gate's
400-request calibration, every gate and argument rerank, the relevance scorer's own training),
so its speed is much of the bench's.
The two contenders run interleaved, `--rounds` times each (A B A B ...); the JSON keeps each
one's median and min/max seconds, `speedup` is the ratio of the medians, and `max_abs_diff` how
far apart the two forms' scores are (the same sums over differently shaped batches).

`policy` does the same for the pairs the argument rerank's policy side scores
(`user_eval.policy_scorer`): for each request's gold call, its edits that keep its arguments
(`toolcall.rerank.argument_edits`, calls with more than one), each after the one-tool prompt and
the reply's Thought; `channel_logprobs` as it is (rows of one prompt read it once) against the
same with `share_prefixes=False`.

    python bench/channel_scoring.py --requests 30        # smollm2-135m -> bench/results/channel_scoring.json
    python bench/channel_scoring.py --model tiny-random --requests 8 --rounds 1 --out /tmp/cs.json  # smoke

Run it on a quiet machine (the JSON records the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "channel_scoring.json"


@torch.no_grad()
def plain_channel_logprobs(
    model: Any, tokenizer: Any, prefixes: Sequence[str], targets: Sequence[str], batch_size: int
) -> list[float]:
    """The form before: batches in the caller's order, left-padded, logits at every position."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[float] = []
    for start in range(0, len(prefixes), batch_size):
        rows, widths = [], []
        chunk = zip(prefixes[start : start + batch_size], targets[start : start + batch_size], strict=True)
        for prefix, target in chunk:
            own = tokenizer(target, add_special_tokens=False)["input_ids"]
            rows.append(tokenizer(prefix, add_special_tokens=False)["input_ids"] + own)
            widths.append(len(own))
        width = max(map(len, rows))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        for i, k in enumerate(widths):
            logp = logits[i, width - k - 1 : width - 1].float().log_softmax(-1)
            out.append(logp.gather(-1, ids[i, width - k :].unsqueeze(-1)).mean().item())
    return out


def interleaved(contenders: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Each contender `rounds` times, interleaved; seconds, the speedup of "channel_logprobs"
    over "plain" (ratio of medians) and how far apart their scores are."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    scores: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            scores[name] = run()
            seconds[name].append(round(time.perf_counter() - start, 2))
    diff = max(abs(a - b) for a, b in zip(scores["channel_logprobs"], scores["plain"], strict=True))
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    return {
        "seconds": {
            n: {"median": medians[n], "min": min(s), "max": max(s), "all": s} for n, s in seconds.items()
        },
        "speedup": round(medians["plain"] / medians["channel_logprobs"], 2),
        "max_abs_diff": round(diff, 6),
    }


def policy_pairs(tok: Any, items: Sequence[Any]) -> tuple[list[str], list[str], int]:
    """The (prefix, target) pairs `user_eval.policy_scorer` sends its channel for each call
    item's gold call and its same-argument edits, and how many calls asked."""
    from functools import partial

    from posttrain.inference import render_prompts
    from posttrain.tasks.tool_use.scoring import NO_CALL
    from posttrain.tasks.tool_use.user_eval import gold_turn, policy_scorer
    from posttrain.toolcall.parse import parse_response
    from posttrain.toolcall.relevance import last_request
    from posttrain.toolcall.rerank import argument_edits

    asked = []
    for i, item in enumerate(items):
        if item.gold == NO_CALL:
            continue
        registry = {t.name: t for t in item.tools}
        parsed = parse_response(gold_turn(item), registry)
        tool = registry[parsed.call.name]
        edits = argument_edits(tool, parsed.call.args, last_request(item.messages))
        same = [c for c in edits if c.keys() == edits[0].keys()]
        if len(same) > 1:
            asked.append((i, tool, parsed.thought or "", same))
    sent: list[tuple[Sequence[str], Sequence[str]]] = []

    def capture(prefixes: Sequence[str], targets: Sequence[str]) -> list[float]:
        sent.append((prefixes, targets))
        return [0.0] * len(prefixes)

    policy_scorer(partial(render_prompts, tok), capture, [item.messages for item in items])(asked)
    ((prefixes, targets),) = sent
    return list(prefixes), list(targets), len(asked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from posttrain.inference import channel_logprobs
    from posttrain.models import ResidentModel
    from posttrain.tasks.tool_use.pool_align import pool_item, pool_rows
    from posttrain.toolcall.relevance import NULL_PREFIX, last_request, tool_prefix

    resident = ResidentModel(args.model)
    model, tok = resident.base, resident.tokenizer
    model.eval()
    rows = pool_rows(args.requests, 3000, "validation", irrelevance=0.3)
    items = [pool_item(r, i) for i, r in enumerate(rows)]
    prefixes, targets = [], []
    for item in items:
        request = last_request(item.messages)
        prefixes += [tool_prefix(t) for t in item.tools] + [NULL_PREFIX]
        targets += [request] * (len(item.tools) + 1)

    load_before = os.getloadavg()
    gate = interleaved(
        {
            "channel_logprobs": lambda: channel_logprobs(model, tok, prefixes, targets, args.batch_size),
            "plain": lambda: plain_channel_logprobs(model, tok, prefixes, targets, args.batch_size),
        },
        args.rounds,
    )
    policy_prefixes, policy_targets, calls = policy_pairs(tok, items)
    policy = interleaved(
        {
            "channel_logprobs": lambda: channel_logprobs(
                model, tok, policy_prefixes, policy_targets, args.batch_size
            ),
            "plain": lambda: channel_logprobs(
                model, tok, policy_prefixes, policy_targets, args.batch_size, share_prefixes=False
            ),
        },
        args.rounds,
    )
    result = {
        "command": " ".join(["python", "bench/channel_scoring.py", *sys.argv[1:]]),
        "model": args.model,
        "pairs": len(prefixes),
        "requests": len(items),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "torch_threads": args.threads,
        **gate,
        "policy": {"pairs": len(policy_prefixes), "calls": calls, **policy},
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
