"""Argument reranking with more edits (issue 13): do the edits that add an optional argument the
request names (`toolcall.rerank.optional_additions`), put another of the request's names in a
free string (`name_replacements`), and count as ungrounded an optional enum value the request does
not spell out (`unnamed_choice`) and a string in the wrong shape for its parameter
(`misformatted`) lift AST accuracy?

An SFT adapter's constrained, ungated, greedy calls on requests that need one (irrelevance 0) are
reranked through the base model's channel (the preset's `rerank_scorer: base`) four ways, each
adding one change to the one before: the edits as they were, with additions, with name
replacements, with unnamed optional enums counted, with misshapen strings counted (the module as
it is). Validation families
(seed 2100, the rows of bench/tool_sft_scaling.py) and fresh training-family requests (seed
4300) chose; held-out families (seed 5100, the rows of bench/tool_sft_scaling.py) only check a
choice made (SPLITS=heldout, run after it). Each candidate is scored once for all arms.

argv: ADAPTER_DIR OUT_JSON [N [SPLITS]] (N requests per split, 100 by default; SPLITS
comma-separated, validation,train by default). The greedy replies are
cached beside OUT_JSON, so a rerun scores only; each arm's replies are written beside it too.
"""

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from posttrain.inference import generator, merged
from posttrain.models import ResidentModel
from posttrain.tasks.tool_use.pool_align import evaluate_pool
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.pool_rows import pool_rows
from posttrain.tasks.tool_use.user_eval import reranked_turns, user_eval_figures
from posttrain.toolcall import rerank
from posttrain.toolcall.relevance import memoized

SPLITS = {"validation": 2100, "train": 4300, "heldout": 5100}
ARMS = ("as_before", "additions", "additions_names", "additions_names_enums", "additions_names_enums_formats")
"""Each arm turns on the changes its name lists (`_arm`)."""


def _arm(name: str) -> None:
    rerank.optional_additions = FULL["additions"] if "additions" in name else lambda *a: []
    rerank.name_replacements = FULL["names"] if "names" in name else lambda *a: []
    rerank.unnamed_choice = FULL["enums"] if "enums" in name else lambda *a: False
    rerank.misformatted = FULL["formats"] if "formats" in name else lambda *a: False


FULL = {
    "additions": rerank.optional_additions,
    "names": rerank.name_replacements,
    "enums": rerank.unnamed_choice,
    "formats": rerank.misformatted,
}


def main() -> None:
    torch.set_num_threads(2)
    adapter, out = Path(sys.argv[1]), Path(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    splits = sys.argv[4].split(",") if len(sys.argv) > 4 else ["validation", "train"]
    resident = ResidentModel("smollm2-135m")
    model = resident.fresh_adapter(16, 32, 0.05, 42, None)
    set_peft_model_state_dict(model, load_file(adapter / "adapter_model.safetensors"))
    model.eval()
    generate = generator(model, resident.tokenizer, 80, 16)
    channel = memoized(generate.base_channel, {})  # every arm scores a candidate once

    result: dict[str, Any] = {"adapter": str(adapter), "n": n, "scorer": "base"}
    for split in splits:
        seed = SPLITS[split]
        rows = pool_rows(n, seed, split, irrelevance=0.0)
        items = [pool_item(r, i) for i, r in enumerate(rows)]
        replies_file = out.with_name(f"{out.stem}_{split}_replies.json")
        if replies_file.exists():
            greedy = json.loads(replies_file.read_text())
        else:
            t0 = time.time()
            with merged(model):
                _, records = evaluate_pool(generate, rows, constrained=True)
            greedy = [r["reply"] for r in records]
            replies_file.write_text(json.dumps(greedy, indent=1))
            result[f"{split}_generate_s"] = round(time.time() - t0)
        block: dict[str, Any] = {"seed": seed}
        figs, _ = user_eval_figures(greedy, items)
        block["greedy"] = figs["ast_accuracy"].as_dict()
        for arm in ARMS:
            _arm(arm)
            t0 = time.time()
            replies, notes = reranked_turns(greedy, items, channel)
            figs, _ = user_eval_figures(replies, items)
            block[arm] = figs["ast_accuracy"].as_dict() | {
                "candidates": sum(x["rerank_candidates"] for x in notes),
                "score_s": round(time.time() - t0),
            }
            print(split, arm, block[arm], flush=True)
            out.with_name(f"{out.stem}_{split}_{arm}.json").write_text(json.dumps(replies, indent=1))
        _arm(ARMS[-1])
        result[split] = block
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
