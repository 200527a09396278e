"""Issue 13's bench budget: can argument reranking read a channel every evaluated model shares
(the base model's, or the trained gate scorer's) instead of each model's own, so that its scores
are computed once per run? Validation families only (150 requests, seed 2000, the draw that
chose reranking): a run's SFT adapter, constrained and gated by its trained scorer, replies
generated once, then reranked by each channel; AST and seconds.

    python bench/tool_rerank_channel.py RUN_DIR THRESHOLD   # RUN_DIR of posttrain align (trained gate)

Writes bench/results/tool_rerank_channel.json.
"""

import json
import sys
import time
from pathlib import Path

import torch

import posttrain.tasks.tool_use.pool_align as pool_align
from posttrain.inference import RELEVANCE_ADAPTER, gate_channel, generator, merged
from posttrain.models import ResidentModel
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.pool_rows import pool_rows
from posttrain.tasks.tool_use.user_eval import reranked_turns, user_eval_figures
from posttrain.toolcall.relevance import RelevanceGate

torch.set_num_threads(2)
RUN, THRESHOLD = Path(sys.argv[1]), float(sys.argv[2])
resident = ResidentModel("smollm2-135m")
model = resident.load_adapter(RUN / "sft_adapter", trainable=False)
model.load_adapter(str(RUN / "relevance_adapter"), adapter_name=RELEVANCE_ADAPTER, is_trainable=False)
rows = pool_rows(150, 2000, "validation")
items = [pool_item(row, i) for i, row in enumerate(rows)]
out: dict = {}
with merged(model):
    generate = generator(model, resident.tokenizer, 80, 16)
    start = time.perf_counter()
    gate = RelevanceGate(THRESHOLD, "trained")
    figs, records = pool_align.evaluate_pool(generate, rows, None, True, gate, False)
    out["generate_s"] = round(time.perf_counter() - start, 1)
    out["as_generated_ast"] = round(figs["ast_accuracy"].value, 4)
    replies = [r["reply"] for r in records]
    for name in ("model", "base", "trained"):
        start = time.perf_counter()
        new, notes = reranked_turns(replies, items, gate_channel(model, resident.tokenizer, name))
        ast = user_eval_figures(new, items, None, None, notes)[0]["ast_accuracy"]
        out[name] = {
            "ast": round(ast.value, 4),
            "ci": ast.ci,
            "n": ast.n,
            "changed": sum("reply_before_rerank" in n for n in notes),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(name, out[name], flush=True)
Path("bench/results/tool_rerank_channel.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out))
