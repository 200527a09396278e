"""Where a trained relevance scorer's threshold should be set (issue 13: irrelevance on held-out
families): the best-offered-tool scores of an align run's trained scorer on four draws of 200
requests (30% that no offered tool fits), two of the training families held back from the scorer
(seeds 3000, 3100) and two of the validation families (seeds 3000, 3100); then a threshold set
at 90% (and 85%) of calls kept on one group, the other or both (seed 3000 draws), read on every
draw. The held-out (test) families are never scored here.

Then the share of calls to keep, set on both groups: 0.90 to 0.94, each read on the fresh (seed
3100) draws of either group. Must-call (>= 0.90) and irrelevance (>= 0.80) pull the threshold
opposite ways, so `keep_choice` is the share whose worst margin to either target on either fresh
draw (`worst_margin`) is largest.

    python bench/tool_gate_calibration.py RUN_DIR   # RUN_DIR of posttrain align (trained gate)

Writes bench/results/tool_gate_calibration.json.
"""

import json
import sys
from pathlib import Path

import torch

from posttrain.inference import RELEVANCE_ADAPTER, generator, merged
from posttrain.models import ResidentModel
from posttrain.tasks.tool_use.pool_align import pool_item, pool_rows
from posttrain.tasks.tool_use.relevance_data import held_back_rows
from posttrain.tasks.tool_use.scoring import NO_CALL
from posttrain.toolcall.relevance import calibrate, last_request, relevance_scores

torch.set_num_threads(2)
RUN = Path(sys.argv[1])
DRAWS = {
    "heldback_3000": lambda: held_back_rows(200, 3000),
    "heldback_3100": lambda: held_back_rows(200, 3100),
    "validation_3000": lambda: pool_rows(200, 3000, "validation", irrelevance=0.3),
    "validation_3100": lambda: pool_rows(200, 3100, "validation", irrelevance=0.3),
}
SOURCES = {
    "held-back families": ["heldback_3000"],
    "validation families": ["validation_3000"],
    "both": ["heldback_3000", "validation_3000"],
}

resident = ResidentModel("smollm2-135m")
model = resident.load_adapter(RUN / "sft_adapter", trainable=False)
model.load_adapter(str(RUN / "relevance_adapter"), adapter_name=RELEVANCE_ADAPTER, is_trainable=False)
best: dict[str, dict[str, list[float]]] = {}
with merged(model):
    channel = generator(model, resident.tokenizer, 80, 16).trained_channel
    for name, draw in DRAWS.items():
        data = [pool_item(r, i) for i, r in enumerate(draw())]
        scores = relevance_scores(channel, [last_request(i.messages) for i in data], [i.tools for i in data])
        best[name] = {
            "call": [max(s) for s, i in zip(scores, data, strict=True) if i.gold != NO_CALL],
            "no_call": [max(s) for s, i in zip(scores, data, strict=True) if i.gold == NO_CALL],
        }


def read(threshold: float, draw: dict[str, list[float]]) -> dict[str, float]:
    return {
        "kept": round(sum(x >= threshold for x in draw["call"]) / len(draw["call"]), 4),
        "declined": round(sum(x < threshold for x in draw["no_call"]) / len(draw["no_call"]), 4),
    }


out: dict = {"run": str(RUN), "rows": {k: {s: len(v) for s, v in d.items()} for k, d in best.items()}}
for name, draw in best.items():
    wins = sum((a > b) + 0.5 * (a == b) for a in draw["call"] for b in draw["no_call"])
    out.setdefault("auc", {})[name] = round(wins / (len(draw["call"]) * len(draw["no_call"])), 4)
KEEPS = (0.90, 0.91, 0.92, 0.93, 0.94)  # the shares keep_choice picks from (set on both groups)
FRESH = ("heldback_3100", "validation_3100")
for keep in (0.85, *KEEPS):
    for source, names in SOURCES.items() if keep in (0.85, 0.90) else [("both", SOURCES["both"])]:
        calls = [x for n in names for x in best[n]["call"]]
        none = [x for n in names for x in best[n]["no_call"]]
        threshold = calibrate(calls, none, keep)["threshold"]
        out.setdefault(f"keep_{keep:.2f}", {})[source] = {"threshold": threshold} | {
            name: read(threshold, draw) for name, draw in best.items()
        }
    if keep in KEEPS:
        both = out[f"keep_{keep:.2f}"]["both"]
        margins = [m for n in FRESH for m in (both[n]["kept"] - 0.90, both[n]["declined"] - 0.80)]
        both["worst_margin"] = round(min(margins), 4)
best_keep = max(KEEPS, key=lambda k: out[f"keep_{k:.2f}"]["both"]["worst_margin"])
out["keep_choice"] = {"keep": best_keep} | out[f"keep_{best_keep:.2f}"]["both"]
Path("bench/results/tool_gate_calibration.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps({k: v for k, v in out.items() if k.startswith("keep_")}, indent=1))
