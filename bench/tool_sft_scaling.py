"""SFT data scaling for issue 13: train a pool-rows-only SFT adapter on N training-family rows
(the recipe of variant rerank_arguments_sft400: r16, lr 1e-3, batch 2, 1 epoch, max_length 1024), then the
policy's calls on requests that need one (irrelevance=0, no gate: the bench gate is base-scored
and does not depend on the adapter), constrained greedy, before and after argument reranking.
Validation families (seed 2100) and held-out families (seed 5100, checking only: no choice is
made from it). argv: N out_dir [EVAL [LR [EPOCHS [SPLITS [VALIDATION_SEED]]]]] (its result.json
is bench/results/tool_sft_scaling_<N>.json; with LR or EPOCHS other than 1e-3 and 1 it is the
optimisation variant of that row count, SPLITS=validation evaluates validation families only, and
VALIDATION_SEED draws other validation requests than seed 2100's). An out_dir that already holds
adapter/ is evaluated without training."""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from posttrain.inference import generator, merged
from posttrain.models import ResidentModel
from posttrain.pipelines.align import tokenize_conversation
from posttrain.tasks.tool_use.pool_align import evaluate_pool
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.pool_rows import pool_conversation, pool_rows
from posttrain.tasks.tool_use.user_eval import user_eval_figures
from posttrain.train.args import SFTArgs
from posttrain.train.sft import sft_train

torch.set_num_threads(2)
n, out = int(sys.argv[1]), Path(sys.argv[2])
EVAL = int(sys.argv[3]) if len(sys.argv) > 3 else 100
LR = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-3
EPOCHS = float(sys.argv[5]) if len(sys.argv) > 5 else 1
SPLITS = sys.argv[6].split(",") if len(sys.argv) > 6 else ["validation", "heldout"]
VALIDATION_SEED = int(sys.argv[7]) if len(sys.argv) > 7 else 2100
resident = ResidentModel("smollm2-135m")
tok = resident.tokenizer
model = resident.fresh_adapter(16, 32, 0.05, 42, None)
ad = out / "adapter"
res = {"rows": n, "learning_rate": LR, "epochs": EPOCHS}
if (ad / "adapter_model.safetensors").exists():
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(ad / "adapter_model.safetensors"))
else:
    t0 = time.time()
    rows = [tokenize_conversation(tok, pool_conversation(r), 1024) for r in pool_rows(n, 42, "train")]
    hp = SFTArgs(
        learning_rate=LR,
        batch_size=2,
        epochs=EPOCHS,
        warmup_ratio=0.05,
        max_length=1024,
        save_steps=10**6,
        logging_steps=10,
    )
    with tempfile.TemporaryDirectory() as tmp:
        r = sft_train(model, tok, rows, None, Path(tmp), hp, checkpoints=False, eval_before=False)
    model.save_pretrained(ad)
    res |= {"train_s": round(time.time() - t0), "steps": r.steps, "losses": r.losses}
    print("train", res, flush=True)
model.eval()
generate = generator(model, tok, 80, 16)
for split, seed in (("validation", VALIDATION_SEED), ("heldout", 5100)):
    if split not in SPLITS:
        continue
    ev = pool_rows(EVAL, seed, split, irrelevance=0.0)
    t0 = time.time()
    with merged(model):
        figs, recs = evaluate_pool(generate, ev, constrained=True, gate=None, rerank=True)
    items = [pool_item(r, i) for i, r in enumerate(ev)]
    greedy, _ = user_eval_figures([r.get("reply_before_rerank", r["reply"]) for r in recs], items)
    res[split] = {
        "n": len(ev),
        "seed": seed,
        "greedy_ast": greedy["ast_accuracy"].as_dict(),
        "reranked_ast": figs["ast_accuracy"].as_dict(),
        "function_name_accuracy": figs["function_name_accuracy"].as_dict(),
        "must_call_rate": figs["must_call_rate"].as_dict(),
        "eval_s": round(time.time() - t0),
    }
    print(split, json.dumps(res[split]), flush=True)
    (out / f"records_{split}.json").write_text(json.dumps(recs, indent=1, default=str))
(out / "result.json").write_text(json.dumps(res, indent=1))
print(json.dumps(res))
