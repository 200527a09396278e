"""The function pool in `posttrain align`: SFT conversations, synthetic and on-policy pairs, and the
AST figures on seen and unseen tool families.

`POOL_SPLITS` are the evaluation splits: "seen_families" asks new requests of the training
families (with fresh masking and distractors), "unseen_families" asks requests of families
training never saw. Their headline is AST accuracy, beside must-call and irrelevance (refusing
everything would game irrelevance alone) and the hallucinated-function rate.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from posttrain.tasks.metrics import Figure
from posttrain.tasks.tool_use.pool import PoolSplit
from posttrain.tasks.tool_use.pool_pairs import pool_defect, pool_item, pool_reward
from posttrain.tasks.tool_use.pool_rows import pool_conversation, pool_prompt, pool_rows
from posttrain.tasks.tool_use.user_eval import user_eval_figures
from posttrain.toolcall import Generate

POOL_SPLITS: dict[str, PoolSplit] = {"seen_families": "train", "unseen_families": "heldout"}


def pool_training(
    rows: int, seed: int, data: list[dict[str, Any]] | None = None
) -> tuple[list[list[dict[str, str]]], list[dict[str, Any]]]:
    """SFT conversations of `rows` training-family requests (or of the rows in `data`, e.g. a
    user's tools), and one synthetic pair per row (its gold turn against one defect)."""
    data = pool_rows(rows, seed, "train") if data is None else data
    rng = random.Random(f"tool_pool/pairs/{seed}")
    pairs = []
    for row in data:
        defect, rejected = pool_defect(row, rng)
        pairs.append(
            {
                "source": "synthetic",
                "id": row["id"],
                "defect": defect,
                "prompt": pool_prompt(row),
                "chosen": [{"role": "assistant", "content": row["completion"]}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return [pool_conversation(r) for r in data], pairs


def pool_rollout_prompts(n: int, seed: int) -> list[dict[str, Any]]:
    """Held-in requests for on-policy pairs (training families, their own seed)."""
    return [
        {"id": r["id"], "prompt": pool_prompt(r), "pool_row": r} for r in pool_rows(n, seed + 7919, "train")
    ]


def pool_rollouts(prompts: Sequence[dict[str, Any]], generate: Generate, policy: str) -> list[dict[str, Any]]:
    """One reply per prompt, rewarded by `pool_reward`; the traces' shape is the ReAct traces' so
    the pipeline pairs them the same way."""
    replies = generate([p["prompt"] for p in prompts]) if prompts else []
    traces = []
    for p, text in zip(prompts, replies, strict=True):
        reward = pool_reward(text, p["pool_row"])
        traces.append(
            {
                "prompt_id": p["id"],
                "policy": policy,
                "prompt": p["prompt"],
                "messages": [{"role": "assistant", "content": text}],
                "steps": [{"output": text}],
                "num_tool_calls": int("Action:" in text),
                "status": "final" if "Final Answer:" in text else "call",
                "final_answer": None,
                "gold_answer": None,
                "correct": reward >= 1.0,
                "reward": {"total": reward},
            }
        )
    return traces


def pool_eval_sets(seed: int, items: int) -> dict[str, list[dict[str, Any]]]:
    """`items` requests per pool split, from the evaluation seed."""
    return {name: pool_rows(items, seed, split) for name, split in POOL_SPLITS.items()}


def evaluate_pool(
    generate: Generate, rows: Sequence[dict[str, Any]]
) -> tuple[dict[str, Figure], list[dict[str, Any]]]:
    """The user-data figures (AST accuracy first) of one model's replies to `rows`."""
    replies = generate([pool_prompt(r) for r in rows]) if rows else []
    figs, records = user_eval_figures(replies, [pool_item(r, i) for i, r in enumerate(rows)])
    for row, record in zip(rows, records, strict=True):
        record |= {
            "id": row["id"],
            "family": row["family"],
            "function": row["function"],
            "reward": pool_reward(record["reply"], row),
        }
    return figs, records
