"""Issue 13, DPO that helps: from the bench run's SFT adapter, does DPO on the SFT model's own
mistakes beat the bench's DPO (96 one-defect synthetic pairs + 4 on-policy rollout pairs)?
Mined pairs: the SFT model's constrained greedy replies to fresh training-family requests (seed 4200,
15% no-call) that score wrong (AST or irrelevance), rejected against the row's gold turn.
Each model decoded constrained, ungated, greedy on validation-family requests that need a call
(seed 2100, the scaling runs' set) and, separately, 30%-no-call ones ungated (irrelevance of the
policy itself). argv: run_dir [n_eval] [n_mine] [model]"""

import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from posttrain.inference import generator, merged
from posttrain.models import ResidentModel
from posttrain.tasks.tool_use.pool_align import evaluate_pool
from posttrain.tasks.tool_use.pool_rows import pool_prompt, pool_rows
from posttrain.train.args import DPOArgs
from posttrain.train.dpo import dpo_train

torch.set_num_threads(2)
run = Path(sys.argv[1])
NE = int(sys.argv[2]) if len(sys.argv) > 2 else 100
NM = int(sys.argv[3]) if len(sys.argv) > 3 else 160
MODEL = sys.argv[4] if len(sys.argv) > 4 else "smollm2-135m"
TAG = sys.argv[5] if len(sys.argv) > 5 else "main"
out = Path(f"bench/results/tool_dpo_own_mistakes_{TAG}.json")
resident = ResidentModel(MODEL)
tok = resident.tokenizer
val = pool_rows(NE, 2100, "validation", irrelevance=0.0)
val_irr = [r for r in pool_rows(NE, 2200, "validation", irrelevance=0.3) if r["gold"] == "no_call"]
res = {"n_eval_calls": len(val), "n_eval_no_call": len(val_irr)}


def save():
    out.write_text(json.dumps(res, indent=1))


def evaluate(label, adapter):
    model = resident.load_adapter(adapter, trainable=False)
    model.eval()
    gen = generator(model, tok, 80, 16)
    t0 = time.time()
    with merged(model):
        f, _ = evaluate_pool(gen, val, constrained=True)
        g, _ = evaluate_pool(gen, val_irr, constrained=True)
    res[label] = {
        k: f[k].as_dict()
        for k in ("ast_accuracy", "function_name_accuracy", "must_call_rate", "format_validity")
    }
    res[label]["policy_irrelevance"] = g["irrelevance_accuracy"].as_dict()
    res[label]["eval_s"] = round(time.time() - t0)
    print(label, json.dumps(res[label]), flush=True)
    save()


sft = run / "sft_adapter"
evaluate("sft", sft)
evaluate("dpo_bench", run / "adapter_dpo_gated_out")
# mine the SFT model's mistakes
model = resident.load_adapter(sft, trainable=False)
model.eval()
mine = pool_rows(NM, 4200, "train", irrelevance=0.15)
gen = generator(model, tok, 80, 16)
t0 = time.time()
with merged(model):
    _, recs = evaluate_pool(gen, mine, constrained=True)
mined = []
for row, rec in zip(mine, recs, strict=True):
    wrong = rec["ast_accuracy"] is False or rec["irrelevance_accuracy"] is False
    if wrong and rec["reply"].strip() != row["completion"].strip():
        mined.append(
            {
                "prompt": pool_prompt(row),
                "chosen": [{"role": "assistant", "content": row["completion"]}],
                "rejected": [{"role": "assistant", "content": rec["reply"]}],
            }
        )
res["mined"] = {"requests": len(mine), "wrong": len(mined), "s": round(time.time() - t0)}
print("mined", res["mined"], flush=True)
save()
bench_pairs = [
    {k: p[k] for k in ("prompt", "chosen", "rejected")}
    for p in json.loads((run / "trajectories" / "preference_pairs.json").read_text())
]
variants = {
    "dpo_mined_lr5e-5": (mined + bench_pairs, 5e-5, "sigmoid+sft"),
    "dpo_mined_lr2e-4": (mined + bench_pairs, 2e-4, "sigmoid+sft"),
}
for label, (pairs, lr, loss) in variants.items():
    rows = list(pairs)
    random.Random(42).shuffle(rows)
    model = resident.load_adapter(sft, trainable=True)
    hp = DPOArgs(
        learning_rate=lr,
        batch_size=2,
        max_steps=30,
        warmup_ratio=0.1,
        max_length=704,
        beta=0.1,
        loss_type=loss,
        save_steps=10**6,
        logging_steps=5,
    )
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        r = dpo_train(model, tok, rows, None, Path(tmp) / "ck", hp, checkpoints=False)
        model.save_pretrained(Path(tmp) / "ad")
        log = r.extra.get("log", [])
        res[label + "_train"] = {
            "pairs": len(rows),
            "steps": r.steps,
            "status": r.status,
            "s": round(time.time() - t0),
            "last_margins": [x["rewards/margins"] for x in log if "rewards/margins" in x][-3:],
        }
        evaluate(label, Path(tmp) / "ad")
save()
print(json.dumps(res))
