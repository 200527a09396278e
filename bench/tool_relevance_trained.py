"""Issue 13, gate: can a relevance scorer trained for the gate's decision carry across tool families
better than the base 135M channel? A LoRA on the base model is trained with a listwise loss over
the channel scores of one request (softmax over alpha * [lift of each offered tool..., 0 for the
null tool], target = the gold tool, or the null tool on a no-call row), on training families minus
a held-back quarter of them. Then, base vs trained scorer: threshold calibrated (keep 0.93 / 0.90)
on the product's calibration draw (validation families, seed 3000), applied to requests of the
held-back training families (no scorer saw them; the held-out test families are not touched).
argv: rows alpha lr tag [model]"""

import json
import math
import random
import sys
import time
from pathlib import Path

import torch

import posttrain.tasks.tool_use.pool_rows as PR
from posttrain.inference import channel_scorer
from posttrain.models import ResidentModel
from posttrain.tasks.tool_use.pool import pool_functions
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.scoring import NO_CALL
from posttrain.toolcall.relevance import NULL_PREFIX, calibrate, last_request, relevance_scores, tool_prefix

torch.set_num_threads(2)
ROWS, ALPHA, LR, TAG = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
MODEL = sys.argv[5] if len(sys.argv) > 5 else "smollm2-135m"
EVN = int(sys.argv[6]) if len(sys.argv) > 6 else 200
out = Path(f"bench/results/tool_relevance_trained_{TAG}.json")
train_fns = pool_functions("train")
families = sorted({f.family for f in train_fns})
held = set(families[(int(sys.argv[8]) if len(sys.argv) > 8 else 0) :: 4])
orig = PR.pool_functions


def rows_of(fns, n, seed, split="train"):
    PR.pool_functions = lambda s: fns
    try:
        return PR.pool_rows(n, seed, split, irrelevance=0.3)
    finally:
        PR.pool_functions = orig


fit_rows = rows_of([f for f in train_fns if f.family not in held], ROWS, 42)
left_rows = rows_of([f for f in train_fns if f.family in held], EVN, 4100)
cal_rows = PR.pool_rows(EVN, 3000, "validation", irrelevance=0.3)


def items(rows):
    return [pool_item(r, i) for i, r in enumerate(rows)]


def gold_index(item):
    if item.gold == NO_CALL:
        return None
    (name,) = item.gold[0].keys()
    return [t.name for t in item.tools].index(name)


resident = ResidentModel(MODEL)
tok = resident.tokenizer
model = resident.fresh_adapter(8, 16, 0.0, 42, None)
res = {
    "tag": TAG,
    "rows": ROWS,
    "alpha": ALPHA,
    "lr": LR,
    "held_back_families": sorted(held),
    "fit_families": len(families) - len(held),
}


def seq_logprobs(prefixes, target):
    ids_t = tok(target, add_special_tokens=False)["input_ids"]
    rows = [tok(p, add_special_tokens=False)["input_ids"] + ids_t for p in prefixes]
    width = max(map(len, rows))
    k = len(ids_t)
    pad = tok.pad_token_id or tok.eos_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    lp = logits[:, width - k - 1 : width - 1].float().log_softmax(-1)
    return lp.gather(-1, ids[:, width - k :].unsqueeze(-1)).squeeze(-1).mean(-1)


def evaluate(label, channel):
    out = {}
    sc = {}
    for name, rows in (("cal", cal_rows), ("left", left_rows)):
        its = items(rows)
        s = relevance_scores(channel, [last_request(i.messages) for i in its], [i.tools for i in its])
        sc[name] = (its, s)

    def split_best(its, s):
        call = [max(x) for i, x in zip(its, s, strict=True) if gold_index(i) is not None]
        none = [max(x) if x else -9 for i, x in zip(its, s, strict=True) if gold_index(i) is None]
        top1 = sum(
            x.index(max(x)) == gold_index(i) for i, x in zip(its, s, strict=True) if gold_index(i) is not None
        ) / len(call)
        auc = sum((a > b) + 0.5 * (a == b) for a in call for b in none) / (len(call) * len(none))
        return call, none, top1, auc

    cc, cn, ctop, cauc = split_best(*sc["cal"])
    lc, ln, ltop, lauc = split_best(*sc["left"])
    out["cal_auc"], out["left_auc"], out["left_top1"] = round(cauc, 3), round(lauc, 3), round(ltop, 3)
    out["best_scores"] = {"cal_call": cc, "cal_none": cn, "left_call": lc, "left_none": ln}
    for keep in (0.90, 0.93, 0.95, 0.97):
        th = calibrate(cc, cn, keep)["threshold"]
        out[f"left_at_cal{keep}"] = {
            "threshold": th,
            "must_call": round(sum(x >= th for x in lc) / len(lc), 3),
            "irrelevance": round(sum(x < th for x in ln) / len(ln), 3),
        }
        own = calibrate(lc, ln, keep)
        out[f"left_at_own{keep}"] = {
            "must_call": own["call_rows_passing"],
            "irrelevance": own["no_call_rows_declined"],
        }
    print(label, json.dumps({k: v for k, v in out.items() if k != "best_scores"}), flush=True)
    return out


model.eval()
t0 = time.time()
with torch.no_grad():
    res["base"] = evaluate("base", channel_scorer(model, tok, 16, base=True))
res["base_eval_s"] = round(time.time() - t0)
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
fit = items(fit_rows)
random.Random(int(sys.argv[7]) if len(sys.argv) > 7 else 0).shuffle(fit)
torch.manual_seed(int(sys.argv[7]) if len(sys.argv) > 7 else 0)
ACC = 4
steps = math.ceil(len(fit) / ACC)
t0 = time.time()
losses = []
for i, item in enumerate(fit):
    lr_now = LR * min(1.0, (i + 1) / (0.1 * len(fit))) * (1 - i / len(fit))
    for g in opt.param_groups:
        g["lr"] = lr_now
    lps = seq_logprobs([tool_prefix(t) for t in item.tools] + [NULL_PREFIX], last_request(item.messages))
    lift = lps[:-1] - lps[-1]
    logits = ALPHA * torch.cat([lift, lift.new_zeros(1)])
    g = gold_index(item)
    target = torch.tensor(len(item.tools) if g is None else g)
    loss = torch.nn.functional.cross_entropy(logits.unsqueeze(0), target.unsqueeze(0)) / ACC
    loss.backward()
    losses.append(loss.item() * ACC)
    if (i + 1) % ACC == 0 or i + 1 == len(fit):
        opt.step()
        opt.zero_grad()
    if (i + 1) % 50 == 0:
        print(f"row {i + 1}/{len(fit)} loss {sum(losses[-50:]) / 50:.3f} {time.time() - t0:.0f}s", flush=True)
res["train_s"] = round(time.time() - t0)
res["mean_loss_first_last_50"] = [round(sum(losses[:50]) / 50, 3), round(sum(losses[-50:]) / 50, 3)]
model.eval()
t0 = time.time()
with torch.no_grad():
    res["trained"] = evaluate("trained", channel_scorer(model, tok, 16))
res["trained_eval_s"] = round(time.time() - t0)
out.write_text(json.dumps(res, indent=1))
print(json.dumps(res))
