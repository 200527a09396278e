"""Quick tool-use SFT variants: function-pool SFT alone, then AST figures on the validation families.

The full `bench/align_quality.py` run costs about an hour; this isolates the SFT stage so a data,
prompt or schedule change can be compared in ~20 minutes on one thread. It selects on the
VALIDATION families (hotels, tax, astronomy), never on the held-out ones the bench reports, so
choosing a variant here does not tune on the test split. Each run is recorded under "variants" in
bench/results/align_quality.json with keys "validation_natural_sft" (tool specs as their authors
wrote them) and "validation_masked_sft" (names masked as in training).

Variants beside the pipeline's own rows (`--format plain`):
- `--format multi --requests K`: K requests per offered tool list, one system prompt, so the
  prompt's cost is shared and the model picks among the same tools for different requests;
- `--thought desc`: a call's Thought restates the chosen tool's description before its name
  ("Needed: <description>. That is <name>."), so the choice is made on the text the request resembles;
- `--thought check`: the Thought judges every offered tool in turn before acting ("get_x: no;
  find_y: yes. Call find_y." or "...: no. None fits."), the checklist that lifted the meetings
  predictor (0.62 -> 0.70): each judgment is a local reading of one tool against the request;
- `--twins F`: a share F of the call rows is followed by its no-call twin (the same request, the
  target's family removed from the tools), so only the tool list separates calling from declining.

    python bench/tool_sft_variants.py v1 --rows 200                        # ~20 min on 1 thread
    python bench/tool_sft_variants.py v3 --rows 130 --format multi --requests 3
    python bench/tool_sft_variants.py smoke --model tiny-random --rows 4 --items 4 --no-record
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "align_quality.json"


def desc_thought(completion: str, specs: list[dict[str, Any]]) -> str:
    """The call's Thought rewritten to name the chosen tool's description first."""
    _, rest = completion.split("\n", 1)
    name = json.loads(rest.split("```json\n", 1)[1].split("\n```", 1)[0])["tool"]
    desc = next(s["function"]["description"] for s in specs if s["function"]["name"] == name)
    return f"Thought: Needed: {desc.rstrip('.')}. That is {name}.\n{rest}"


def check_thought(row: dict[str, Any]) -> str:
    """The row's completion with a Thought that judges each offered tool, in the offered order."""
    _, rest = row["completion"].split("\n", 1)
    wanted = set() if row["gold"] == "no_call" else {name for call in row["gold"] for name in call}
    names = [s["function"]["name"] for s in row["tools"]]
    verdicts = "; ".join(f"{n}: {'yes' if n in wanted else 'no'}" for n in names)
    then = "None fits." if not wanted else f"Call {', '.join(n for n in names if n in wanted)}."
    return f"Thought: {verdicts}. {then}\n{rest}"


def multi_conversations(
    n: int, seed: int, k: int, irrelevance: float, mask: float, max_tools: int, thought: str
) -> list[list[dict[str, str]]]:
    """`n` conversations of one offered tool list and `k` requests, each answered by a call of one
    of the offered tools or, with probability `irrelevance`, a request of another family and no call."""
    from posttrain.tasks.tool_use.pool import pool_functions, render_prompt
    from posttrain.tasks.tool_use.pool_rows import (
        _CALL_THOUGHTS,
        _NONE_ANSWERS,
        _NONE_THOUGHTS,
        _draw_args,
        _present,
    )
    from posttrain.toolcall import format_call, format_final, format_system_prompt

    rng = random.Random(f"multi/train/{seed}")
    functions = pool_functions("train")
    conversations = []
    for _ in range(n):
        n_tools = rng.choices(range(1, max_tools + 1), weights=[2, 4, 3, 2][:max_tools])[0]
        first = rng.choice(functions)
        offered = [first]
        family = [f for f in functions if f.family == first.family and f is not first]
        while len(offered) < n_tools:
            pick = rng.choice(family if family and rng.random() < 0.3 else functions)
            if pick not in offered:
                offered.append(pick)
        presented = [_present(f, rng, mask) for f in offered]
        rng.shuffle(presented)
        specs = [s for s, _ in presented]
        outside = [f for f in functions if f.family not in {f.family for f in offered}]
        turns = [{"role": "system", "content": format_system_prompt(specs, detail="full")}]
        for _ in range(k):
            if outside and rng.random() < irrelevance:
                fn = rng.choice(outside)
                template = rng.choice(fn.prompts)
                request = render_prompt(template, _draw_args(fn, template, rng))
                answer = format_final(rng.choice(_NONE_THOUGHTS), rng.choice(_NONE_ANSWERS))
            else:
                spec, renames = rng.choice(presented)
                fn = next(f for f in offered if f.name == renames["__function__"])
                template = rng.choice(fn.prompts)
                args = _draw_args(fn, template, rng)
                name = spec["function"]["name"]
                call = {renames[p.name]: args[p.name] for p in fn.params if p.name in args}
                request = render_prompt(template, args)
                answer = format_call(rng.choice(_CALL_THOUGHTS).format(name=name), name, call)
                answer = desc_thought(answer, specs) if thought == "desc" else answer
            turns += [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
        conversations.append(turns)
    return conversations


def training_conversations(a: argparse.Namespace) -> list[list[dict[str, str]]]:
    from posttrain.tasks.tool_use.pool_rows import pool_conversation, pool_rows

    if a.format == "multi":
        return multi_conversations(a.rows, a.seed, a.requests, a.irrelevance, a.mask, a.max_tools, a.thought)
    rows = pool_rows(
        a.rows, a.seed, "train", irrelevance=a.irrelevance, mask=a.mask, max_tools=a.max_tools, twins=a.twins
    )
    if a.thought == "desc":
        for r in rows:
            if r["gold"] != "no_call":
                r["completion"] = desc_thought(r["completion"], r["tools"])
    if a.thought == "check":
        for r in rows:
            r["completion"] = check_thought(r)
    return [pool_conversation(r) for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--rows", type=int, default=200, help="pool rows (or conversations with --format multi)")
    p.add_argument("--format", choices=("plain", "multi"), default="plain")
    p.add_argument("--requests", type=int, default=3, help="requests per conversation (--format multi)")
    p.add_argument("--thought", choices=("name", "desc", "check"), default="name")
    p.add_argument("--irrelevance", type=float, default=0.15)
    p.add_argument("--twins", type=float, default=0.0, help="share of call rows with a no-call twin")
    p.add_argument("--mask", type=float, default=0.35)
    p.add_argument("--max-tools", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=2, help="packed rows of 1024 tokens per step")
    p.add_argument("--items", type=int, default=100, help="validation requests, natural specs")
    p.add_argument("--masked-items", type=int, default=50, help="validation requests, masked specs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--note", default="")
    p.add_argument("--no-record", action="store_true", help="print only; leave align_quality.json alone")
    a = p.parse_args()

    from posttrain.inference import generator, merged
    from posttrain.models import ResidentModel
    from posttrain.pipelines.align import tokenize_conversation
    from posttrain.tasks.tool_use.pool_align import evaluate_pool
    from posttrain.tasks.tool_use.pool_rows import pool_rows
    from posttrain.train.args import SFTArgs
    from posttrain.train.sft import sft_train

    torch.set_num_threads(a.threads)
    resident = ResidentModel(a.model)
    tok = resident.tokenizer
    t0 = time.time()
    model = resident.fresh_adapter(a.lora_r, 2 * a.lora_r, 0.05, a.seed, None)
    rows = [tokenize_conversation(tok, c, 1024) for c in training_conversations(a)]
    hp = SFTArgs(
        learning_rate=a.lr,
        batch_size=a.batch_size,
        epochs=a.epochs,
        warmup_ratio=0.05,
        max_length=1024,
        save_steps=10**6,
        logging_steps=10,
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = sft_train(model, tok, rows, None, Path(tmp), hp, checkpoints=False, eval_before=False)
    train_s = time.time() - t0
    sets = {
        "validation_natural_sft": pool_rows(a.items, 1000, "validation", mask=0.0),
        "validation_masked_sft": pool_rows(a.masked_items, 1000, "validation"),
    }
    t1 = time.time()
    entry: dict[str, Any] = {
        "run": a.name,
        "kind": "sft-only quick variant (bench/tool_sft_variants.py)",
        "note": a.note,
        "settings": {k: v for k, v in vars(a).items() if k not in ("name", "note", "no_record", "threads")},
        "train_tokens": sum(len(r["input_ids"]) for r in rows),
        "supervised_tokens": sum(sum(r["completion_mask"]) for r in rows),
        "steps": result.steps,
    }
    # A checklist Thought is up to ~40 tokens longer; the call after it needs the same room.
    generate = generator(model, tok, 128 if a.thought == "check" else 80, 16)
    with merged(model):
        for key, eval_rows in sets.items():
            figs, _ = evaluate_pool(generate, eval_rows)
            entry[key] = {k: f.as_dict() for k, f in figs.items()}
    entry |= {"train_s": round(train_s), "eval_s": round(time.time() - t1), "torch_threads": a.threads}
    print(json.dumps(entry, indent=1))
    if not a.no_record:
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        data["variants"] = [v for v in data.get("variants", []) if v.get("run") != a.name] + [entry]
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
