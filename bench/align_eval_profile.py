"""Where one align evaluation's time goes (issue 13's bench budget): a run's SFT adapter with its
trained gate scorer beside it, on the unseen_families split (200 requests of evaluation seed
1000), timing gate scoring, constrained generation and argument reranking, then the two ReAct
splits. Timing only: no figure is read.

    python bench/align_eval_profile.py RUN_DIR THRESHOLD   # RUN_DIR of posttrain align (trained gate)

Writes bench/results/align_eval_profile.json.
"""

import json
import sys
import time
from pathlib import Path

import torch

import posttrain.tasks.tool_use.pool_align as pool_align
from posttrain.inference import RELEVANCE_ADAPTER, generator, merged
from posttrain.models import ResidentModel
from posttrain.tasks.tool_use.align import TOOL_SPLITS, evaluate_tool_use, tool_use_first_turns
from posttrain.toolcall.relevance import RelevanceGate

torch.set_num_threads(2)
RUN, THRESHOLD = Path(sys.argv[1]), float(sys.argv[2])
seconds: dict[str, float] = {}


def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return out

    return wrapper


pool_align.gated_tools = timed("gate_scoring", pool_align.gated_tools)
pool_align.reranked_turns = timed("rerank", pool_align.reranked_turns)
resident = ResidentModel("smollm2-135m")
model = resident.load_adapter(RUN / "sft_adapter", trainable=False)
model.load_adapter(str(RUN / "relevance_adapter"), adapter_name=RELEVANCE_ADAPTER, is_trainable=False)
rows = pool_align.pool_eval_sets(1000, 200)["unseen_families"]
with merged(model):
    generate = generator(model, resident.tokenizer, 80, 16)
    counted = timed("generate_all", generate)
    counted.__dict__.update(generate.__dict__)
    start = time.perf_counter()
    pool_align.evaluate_pool(counted, rows, None, True, RelevanceGate(THRESHOLD, "trained"), True)
    seconds["pool_total"] = time.perf_counter() - start
    for split, tools in TOOL_SPLITS.items():
        data = tool_use_first_turns(tools, 1000, 6, True)
        start = time.perf_counter()
        evaluate_tool_use(generate, data, tools, 4)
        seconds["react_" + split] = time.perf_counter() - start
out = {k: round(v, 1) for k, v in seconds.items()}
Path("bench/results/align_eval_profile.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out))
