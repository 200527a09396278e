"""SFT against DPO adapters of an align run on validation families (seed 2000, 200 requests, the draw
that chose reranking), decoded as preset align_tool_use decodes (constrained, trained-scored gate at
the threshold the run calibrated, read from its eval/sft.json: 0.0812 for the run measured,
arguments reranked by the base channel): does DPO's format-validity drop
on the held-out families show on validation families too?

    python bench/tool_dpo_validation.py RUN_DIR   # RUN_DIR of posttrain align (trained gate)

Writes bench/results/tool_dpo_validation.json (figures, and the replies whose format fails)."""

import json
import sys
import time
from pathlib import Path

import torch

from posttrain.inference import RELEVANCE_ADAPTER, generator, merged
from posttrain.models import ResidentModel
from posttrain.tasks.align import align_task
from posttrain.tasks.tool_use.pool_rows import pool_rows

torch.set_num_threads(2)
RUN = Path(sys.argv[1])
calibration = json.loads((RUN / "eval" / "sft.json").read_text())["records"]["relevance_calibration"]
task = align_task(
    "tool_use",
    constrained=True,
    relevance_gate=calibration[0]["threshold"],
    rerank=True,
    gate_scorer="trained",
    rerank_scorer="base",
)
sets = {"validation_families": pool_rows(200, 2000, "validation")}
resident = ResidentModel("smollm2-135m")
out = {}
for name, d in (("sft", "sft_adapter"), ("dpo", "adapter")):
    t = time.time()
    model = resident.load_adapter(RUN / d, trainable=False)
    model.load_adapter(str(RUN / "relevance_adapter"), adapter_name=RELEVANCE_ADAPTER, is_trainable=False)
    with merged(model):
        figs, recs = task.evaluate(generator(model, resident.tokenizer, 80, 16), sets, 4, True)
    model.delete_adapter(RELEVANCE_ADAPTER)
    out[name] = {k: f.as_dict() for k, f in figs["validation_families"].items()}
    out[name + "_bad_format"] = [r["reply"] for r in recs["validation_families"] if not r["format_validity"]]
    print(name, round(time.time() - t), {k: (v["value"], v["n"]) for k, v in out[name].items()}, flush=True)
Path("bench/results/tool_dpo_validation.json").write_text(json.dumps(out, indent=1))
