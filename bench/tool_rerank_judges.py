"""Issue 13: what judges a call's argument edits better than the base model's channel alone?

The mistakes argument reranking leaves on validation families are mostly same-shaped values in
the wrong slot (`from_unit`/`to_unit`, `sender`/`folder`), an optional boolean the request asks
for in other words ("including its RA and Dec" for `with_ra_dec`), and a free string that takes
in more of the request than its slot ("late checkout 14:00, conf HX-10394"). Three judges, each
tried beside the preset's (`channel`: the base model's channel less `UNGROUNDED_PENALTY` per
ungrounded value, `toolcall.rerank` as it is):

- `described`: the channel's call text names each argument with its parameter's description
  beside it (`arg3 (Unit to convert into.)="km"`), so the description sits next to the value;
- `contained`: also counted as ungrounded, a string that holds another argument's string, an
  array item that repeats one, a value with blanks around it; and as more edits, the call with
  its strings stripped and each array item dropped;
- `policy` (`policyNN`: weight NN/100): the evaluated adapter's own mean log-likelihood of the
  candidate's arguments after a prompt offering only the called tool (the SFT format), added
  to the channel's score: the reviewer plus the coder of Coder-Reviewer reranking; `valuesNN`
  the same, but a candidate that adds or drops an argument gets the model's own call's
  likelihood, so the policy judges values and swaps and the channel alone what is added;
- `spansNN`: `valuesNN` with more edits of each free string the request contains: one word
  longer or shorter at either end, without a possessive's "'s", and the whole sentence it sits
  in ("dentist" -> "Dentist appointment", "Booking HX-10394" -> "HX-10394", "late" -> the
  review it was cut from); `spanspolNN` the same, but a span edit is given the call's own channel
  score, so the policy alone tells it from the call (the channel prefers whichever span copies
  more of the request).

Same SFT adapter and cached greedy calls as bench/tool_rerank_additions.py (constrained,
ungated, requests that need a call): validation families (seed 2100) and fresh training-family
requests (seed 4300) choose; held-out families (seed 5100) are only read for a choice made.

    python bench/tool_rerank_judges.py ADAPTER_DIR REPLIES_STEM OUT_JSON [SPLITS [ARMS [N]]]

REPLIES_STEM is the OUT_JSON stem bench/tool_rerank_additions.py wrote its greedy replies
beside (`<stem>_<split>_replies.json`); where that file is missing, the adapter's greedy calls
on N requests (100 by default) are generated the same way and written there. A split may name
a fresh draw as `split:seed` (`validation:2500`), so a choice is checked on requests it was not
made on.
"""

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from posttrain.inference import generator, merged, render_prompts
from posttrain.models import ResidentModel
from posttrain.tasks.tool_use.pool_align import evaluate_pool
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.pool_rows import pool_rows
from posttrain.tasks.tool_use.user_eval import user_eval_figures
from posttrain.toolcall import format_call, format_system_prompt, rerank
from posttrain.toolcall.parse import parse_response
from posttrain.toolcall.relevance import last_request, memoized
from posttrain.toolcall.schema import validate_args
from posttrain.toolcall.spec import Tool

SPLITS = {"validation": 2100, "train": 4300, "heldout": 5100}
ARMS = ("channel", "described", "contained", "policy100", "policy50", "policy25", "values50")


def described_prefix(tool: Tool, args: dict[str, Any]) -> str:
    """`rerank.call_prefix` with each argument's parameter description written beside it."""
    props = tool.parameters.get("properties", {})
    return rerank.call_prefix(
        tool, {f"{k} ({props.get(k, {}).get('description', '')})": v for k, v in args.items()}
    )


def contained(args: dict[str, Any]) -> int:
    """Values the `contained` arm counts as ungrounded beyond `rerank.ungrounded`."""
    strings = {k: v.lower() for k, v in args.items() if isinstance(v, str)}
    count = 0
    for k, v in args.items():
        others = [o for kk, o in strings.items() if kk != k and len(o) >= 3]
        if isinstance(v, str):
            count += any(o in v.lower() and o != v.lower() for o in others) + (v != v.strip())
        elif isinstance(v, list):
            count += sum(isinstance(x, str) and (x.lower() in others or x != x.strip()) for x in v)
    return count


def contained_edits(tool: Tool, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The call with every string stripped, and with each item of an array dropped."""

    def strip(v: Any) -> Any:
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v.strip() if isinstance(v, str) else v

    out = [{k: strip(v) for k, v in args.items()}]
    for k, v in args.items():
        if isinstance(v, list) and len(v) > 1:
            out += [dict(args) | {k: v[:j] + v[j + 1 :]} for j in range(len(v))]
    return [e for e in out if not validate_args(tool.parameters, e)]


_PUNCT = ".,;:!?\"'()"


def _clean(text: str) -> str:
    """`text` without the punctuation around it or a possessive's "'s"."""
    return re.sub(r"'s$", "", text.strip(_PUNCT)).strip(_PUNCT)


def span_edits(tool: Tool, args: dict[str, Any], request: str) -> list[dict[str, Any]]:
    """The `spans` arm's edits: each free string found among the request's words, one word
    longer or shorter at either end, and the whole sentence (or the text after a colon or
    question) it sits in, each in the request's own casing."""
    words = request.split()
    bare = [_clean(w).lower() for w in words]
    props = tool.parameters.get("properties", {})
    out = []
    for name, value in args.items():
        spec = props.get(name, {})
        if not isinstance(value, str) or "enum" in spec or not value.split():
            continue
        size = len(value.split())
        target = [_clean(w).lower() for w in value.split()]
        starts = [i for i in range(len(words) - size + 1) if bare[i : i + size] == target]
        if _clean(value) != value:
            out.append(dict(args) | {name: _clean(value)})
        for i in starts[:1]:
            spans = [(i - 1, i + size), (i, i + size + 1), (i + 1, i + size), (i, i + size - 1)]
            for a, b in spans:
                if 0 <= a < b <= len(words):
                    out.append(dict(args) | {name: _clean(" ".join(words[a:b]))})
            for piece in re.split(r"(?<=[.?!:])\s+", request):
                if value.lower() in piece.lower() and _clean(piece) != value:
                    out.append(dict(args) | {name: _clean(piece)})
    return [e for e in out if not validate_args(tool.parameters, e)]


def rerank_arm(arm: str, replies: list[str], rows: list[dict], items: list, base, policy, tok) -> list[str]:
    """`replies` reranked the way `arm` judges (module docstring)."""
    values_only = arm.startswith(("values", "spans"))
    spans_by_policy = arm.startswith("spanspol")
    digits = arm.removeprefix("values").removeprefix("policy").removeprefix("spanspol").removeprefix("spans")
    weight = int(digits or 0) / 100 if arm[-1].isdigit() else 0.0
    prefix = described_prefix if arm == "described" else rerank.call_prefix
    calls = []
    for reply, item, row in zip(replies, items, rows, strict=True):
        registry = {t.name: t for t in item.tools}
        parsed = parse_response(reply, registry)
        if parsed.kind != "call" or parsed.call is None:
            calls.append(None)
            continue
        tool = registry[parsed.call.name]
        request = last_request(item.messages)
        candidates = rerank.argument_edits(tool, parsed.call.args, request)
        if arm == "contained":
            candidates += [e for e in contained_edits(tool, parsed.call.args) if e not in candidates]
        spans = []
        if arm.startswith("spans"):
            spans = [e for e in span_edits(tool, parsed.call.args, request) if e not in candidates]
        calls.append((tool, parsed, candidates + spans, request, row, len(candidates)))
    pairs, policy_pairs = [], []
    for call in filter(None, calls):
        tool, parsed, candidates, request, row, _ = call
        pairs += [(prefix(tool, c), request) for c in candidates]
        if weight:
            spec = next(s for s in row["tools"] if s["function"]["name"] == tool.name)
            system = {"role": "system", "content": format_system_prompt([spec], detail="full")}
            prompt = render_prompts(tok, [[system, *row["messages"]]])[0]
            head = f"Thought: {(parsed.thought or '').strip()}\nAction: ```json\n"
            head += f'{{"tool":{json.dumps(tool.name)},"args":'
            policy_pairs += [
                (prompt + head, json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "}\n```")
                for c in candidates
                if not values_only or c.keys() == candidates[0].keys()
            ]
    channel = iter(base(*zip(*pairs, strict=True)) if pairs else [])
    own = iter(policy(*zip(*policy_pairs, strict=True)) if policy_pairs else [])
    out = []
    for reply, call in zip(replies, calls, strict=True):
        if call is None:
            out.append(reply)
            continue
        tool, parsed, candidates, request, _, edits = call
        liked = [0.0] * len(candidates)
        if weight:  # with values_only, an argument added or dropped is the channel's call alone
            same = [not values_only or c.keys() == candidates[0].keys() for c in candidates]
            liked = [next(own) if kept else 0.0 for kept in same]
            liked = [x if kept else liked[0] for x, kept in zip(liked, same, strict=True)]
        scores, heard = [], []
        for i, (c, x) in enumerate(zip(candidates, liked, strict=True)):
            grounding = rerank.ungrounded(tool, c, request) + (contained(c) if arm == "contained" else 0)
            heard.append(next(channel))
            if spans_by_policy and i >= edits:  # a span edit: the policy alone tells it from the call
                heard[-1] = heard[0]
            scores.append(heard[-1] - rerank.UNGROUNDED_PENALTY * grounding + weight * x)
        best = max(range(len(candidates)), key=scores.__getitem__)
        out.append(reply if best == 0 else format_call(parsed.thought or "", tool.name, candidates[best]))
    return out


def main() -> None:
    torch.set_num_threads(2)
    adapter, stem, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    splits = sys.argv[4].split(",") if len(sys.argv) > 4 else ["validation", "train"]
    arms = sys.argv[5].split(",") if len(sys.argv) > 5 else list(ARMS)
    n = int(sys.argv[6]) if len(sys.argv) > 6 else 100
    resident = ResidentModel("smollm2-135m")
    model = resident.fresh_adapter(16, 32, 0.05, 42, None)
    set_peft_model_state_dict(model, load_file(adapter / "adapter_model.safetensors"))
    model.eval()
    generate = generator(model, resident.tokenizer, 80, 16)
    # every arm scores the same candidates: each pair once
    base, policy = memoized(generate.base_channel, {}), memoized(generate.channel, {})
    result: dict[str, Any] = {"adapter": str(adapter), "replies": stem, "scorer": "base"}
    for token in splits:
        split, _, seed = token.partition(":")
        seed = int(seed) if seed else SPLITS[split]
        replies_file = Path(f"{stem}_{split}_replies.json")
        greedy = json.loads(replies_file.read_text()) if replies_file.exists() else None
        rows = pool_rows(len(greedy) if greedy else n, seed, split, irrelevance=0.0)  # type: ignore[arg-type]
        items = [pool_item(r, i) for i, r in enumerate(rows)]
        block: dict[str, Any] = {"seed": seed, "n": len(rows)}
        if greedy is None:
            t0 = time.time()
            with merged(model):
                _, records = evaluate_pool(generate, rows, constrained=True)
            greedy = [r["reply"] for r in records]
            replies_file.write_text(json.dumps(greedy, indent=1))
            block["generate_s"] = round(time.time() - t0)
        block["greedy"] = user_eval_figures(greedy, items)[0]["ast_accuracy"].as_dict()
        for arm in arms:
            t0 = time.time()
            replies = rerank_arm(arm, greedy, rows, items, base, policy, resident.tokenizer)
            figs, _ = user_eval_figures(replies, items)
            block[arm] = figs["ast_accuracy"].as_dict() | {"score_s": round(time.time() - t0)}
            print(split, arm, block[arm], flush=True)
        result[split] = block
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
