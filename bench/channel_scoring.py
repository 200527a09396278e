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

    python bench/channel_scoring.py                      # smollm2-135m -> bench/results/channel_scoring.json
    python bench/channel_scoring.py --model tiny-random --requests 8 --rounds 1 --out /tmp/cs.json  # smoke

Run it on a quiet machine (the JSON records the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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

    contenders = {
        "channel_logprobs": lambda: channel_logprobs(model, tok, prefixes, targets, args.batch_size),
        "plain": lambda: plain_channel_logprobs(model, tok, prefixes, targets, args.batch_size),
    }
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    scores: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            scores[name] = run()
            seconds[name].append(round(time.perf_counter() - start, 2))
    diff = max(abs(a - b) for a, b in zip(scores["channel_logprobs"], scores["plain"], strict=True))
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    result = {
        "command": "python bench/channel_scoring.py",
        "model": args.model,
        "pairs": len(prefixes),
        "requests": len(items),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "torch_threads": args.threads,
        "seconds": {
            n: {"median": medians[n], "min": min(s), "max": max(s), "all": s} for n, s in seconds.items()
        },
        "speedup": round(medians["plain"] / medians["channel_logprobs"], 2),
        "max_abs_diff": round(diff, 6),
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
