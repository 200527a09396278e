"""How well the noisy-channel relevance score (`posttrain.toolcall.relevance`) tells which offered
tool a request is about, and whether any is: the figures behind `RelevanceGate`'s threshold.

On the VALIDATION families (never the held-out ones the align bench reports), for each request the
score of every offered tool under three baselines and the reverse direction:

- `bare`: log P(request | tool) - log P(request | "A request: ");
- `null_tool` (the one `relevance.py` uses): the baseline is a tool that says nothing, in the same
  "Tool: ... A request for this tool:" frame;
- `generic_tool`: the baseline is a catch-all assistant tool in that frame;
- `reverse`: log P(tool text | request) - log P(tool text), the direct direction.

Figures: AUC of the best tool's score between requests some tool fits and those none does; top-1
(the best-scoring tool is the gold one, over requests with a gold call); and for thresholds, the
share of call rows whose best tool passes (the gate's must-call ceiling) and of no-call rows where
none does (its irrelevance). Written to bench/results/align_quality.json under "relevance".

    python bench/tool_relevance.py                     # base smollm2-135m, ~5 min on 2 threads
    python bench/tool_relevance.py --items 8 --model tiny-random --no-record   # smoke
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "align_quality.json"
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a call row's score > a no-call row's), ties half."""
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return round(wins / (len(pos) * len(neg)), 4)


def figures(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """AUC, top-1 and the threshold sweep of one scoring."""
    best = [max(r[key]) for r in records]
    pos = [b for b, r in zip(best, records, strict=True) if r["gold"] is not None]
    neg = [b for b, r in zip(best, records, strict=True) if r["gold"] is None]
    top = [r["names"][r[key].index(max(r[key]))] == r["gold"] for r in records if r["gold"] is not None]
    return {
        "auc": auc(pos, neg),
        "top1": round(sum(top) / len(top), 4) if top else None,
        "sweep": [
            {
                "threshold": t,
                "call_rows_passing": round(sum(p >= t for p in pos) / len(pos), 4) if pos else None,
                "no_call_rows_declined": round(sum(q < t for q in neg) / len(neg), 4) if neg else None,
            }
            for t in THRESHOLDS
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--adapter", default=None, help="score with a LoRA adapter on (default: the base model)")
    p.add_argument("--split", choices=("validation", "train"), default="validation")
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--seed", type=int, default=3000)
    p.add_argument("--irrelevance", type=float, default=0.3, help="share of no-call rows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args()

    from posttrain.inference import channel_logprobs
    from posttrain.models import load_model
    from posttrain.tasks.tool_use.pool_rows import pool_rows
    from posttrain.tasks.tool_use.scoring import NO_CALL
    from posttrain.toolcall import Tool
    from posttrain.toolcall.relevance import NULL_PREFIX, tool_prefix

    torch.set_num_threads(a.threads)
    model, tok = load_model(a.model)
    if a.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, a.adapter).merge_and_unload()
    model.eval()
    baselines = {
        "bare": "A request: ",
        "null_tool": NULL_PREFIX,
        "generic_tool": tool_prefix(
            Tool(
                "assistant",
                "Answers any question or request.",
                {"properties": {"query": {"description": "what the user asks"}}},
            )
        ),
    }
    rows = pool_rows(a.items, a.seed, a.split, irrelevance=a.irrelevance)
    records = []
    t0 = time.time()
    for row in rows:
        request = row["messages"][0]["content"]
        tools = [
            Tool(s["function"]["name"], s["function"]["description"], s["function"]["parameters"])
            for s in row["tools"]
        ]
        texts = [tool_prefix(t).split("\n")[0] for t in tools]
        prefixes = [tool_prefix(t) for t in tools] + list(baselines.values())
        forward = channel_logprobs(model, tok, prefixes, [request] * len(prefixes))
        given, nulls = forward[: len(tools)], dict(zip(baselines, forward[len(tools) :], strict=True))
        reverse = channel_logprobs(
            model, tok, [f"Request: {request}\nA tool for this request: "] * len(tools), texts
        )
        prior = channel_logprobs(model, tok, ["A tool: "] * len(tools), texts)
        record: dict[str, Any] = {
            "id": row["id"],
            "names": [t.name for t in tools],
            "gold": None if row["gold"] == NO_CALL else next(iter(row["gold"][0])),
        }
        record |= {name: [g - null for g in given] for name, null in nulls.items()}
        record["reverse"] = [x - y for x, y in zip(reverse, prior, strict=True)]
        records.append(record)
    scorings = {name: figures(records, name) for name in [*baselines, "reverse"]}
    entry = {
        "command": "python bench/tool_relevance.py"
        + "".join(f" --{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v and k != "no_record"),
        "model": a.model,
        "adapter": a.adapter,
        "split": f"{a.split} ({a.items} requests, seed {a.seed}, {a.irrelevance:.0%} no-call)",
        "call_rows": sum(r["gold"] is not None for r in records),
        "no_call_rows": sum(r["gold"] is None for r in records),
        "scorings": scorings,
        "seconds": round(time.time() - t0),
        "torch_threads": a.threads,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps({k: v for k, v in entry.items()}, indent=1))
    if not a.no_record:
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        key = f"{a.split}_families" + (f"/{Path(a.adapter).name}" if a.adapter else "")
        data.setdefault("relevance", {})[key] = entry
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
