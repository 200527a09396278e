"""Issue 13: is the argument rerank short of candidates or of judgment?

bench/tool_rerank_judges.py tries one judge at a time, each costing a pass of the model over every
candidate. This one scores every candidate of `toolcall.rerank.argument_edits` once, by both
scorers the rerank has (the base model's channel and the adapter's own likelihood of the
arguments, over EVERY candidate), saves them with each candidate's AST label, and then answers
without a model:

- reach: how many calls some candidate makes right (one edit), with the span edits of
  tool_rerank_judges.py added, and with two single edits composed;
- judges: calls right under linear judges over the saved features (the channel, the policy over
  every candidate or only those that keep the call's arguments, ungrounded values, a bonus for
  the model's own call, how many words the strings carry), the preset's `values50` among them.

A judge that reaches the oracle's count is not the limit; a wide gap under every judge says the
two scorers cannot tell the right candidate, whatever their mix.

    python bench/tool_rerank_reach.py features ADAPTER_DIR REPLIES_STEM FEATURES_JSON [SPLITS]
    python bench/tool_rerank_reach.py judge FEATURES_JSON OUT_JSON

REPLIES_STEM and SPLITS (`validation:2500,train:4500` by default) as in
bench/tool_rerank_judges.py; the greedy replies must already be there.
"""

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.pool_rows import pool_rows
from posttrain.tasks.tool_use.user_eval import user_eval_figures
from posttrain.toolcall import format_call, format_system_prompt, rerank
from posttrain.toolcall.parse import parse_response
from posttrain.toolcall.relevance import last_request
from posttrain.toolcall.schema import validate_args

sys.path.insert(0, str(Path(__file__).parent))
from tool_rerank_judges import span_edits  # noqa: E402

DRAWS = "validation:2500,train:4500"


def _draw(stem: str, token: str) -> tuple[str, int, list[str], list[dict]]:
    split, _, seed = token.partition(":")
    replies = json.loads(Path(f"{stem}_{split}_replies.json").read_text())
    return split, int(seed), replies, pool_rows(len(replies), int(seed), split, irrelevance=0.0)  # type: ignore[arg-type]


def _calls(replies: list[str], rows: list[dict]):
    """(row index, item, parsed reply, called tool, request) of each reply that is a call."""
    for i, (reply, row) in enumerate(zip(replies, rows, strict=True)):
        item = pool_item(row, i)
        registry = {t.name: t for t in item.tools}
        parsed = parse_response(reply, registry)
        if parsed.kind == "call" and parsed.call is not None:
            yield i, item, parsed, registry[parsed.call.name], last_request(item.messages)


def _right(thought: str, name: str, args: dict[str, Any], item) -> bool:
    return user_eval_figures([format_call(thought, name, args)], [item])[0]["ast_accuracy"].value == 1.0


def features(adapter: Path, stem: str, out: Path, draws: str) -> None:
    """Both scorers' score of every candidate of every greedy call, with its AST label."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from posttrain.inference import generator, render_prompts
    from posttrain.models import ResidentModel

    torch.set_num_threads(2)
    resident = ResidentModel("smollm2-135m")
    model = resident.fresh_adapter(16, 32, 0.05, 42, None)
    set_peft_model_state_dict(model, load_file(adapter / "adapter_model.safetensors"))
    model.eval()
    generate = generator(model, resident.tokenizer, 80, 16)
    result: dict[str, Any] = {"adapter": str(adapter), "replies": stem}
    for token in draws.split(","):
        t0 = time.time()
        split, seed, replies, rows = _draw(stem, token)
        calls, pairs, policy_pairs = [], [], []
        for i, item, parsed, tool, request in _calls(replies, rows):
            candidates = rerank.argument_edits(tool, parsed.call.args, request)
            spec = next(s for s in rows[i]["tools"] if s["function"]["name"] == tool.name)
            system = {"role": "system", "content": format_system_prompt([spec], detail="full")}
            prompt = render_prompts(resident.tokenizer, [[system, *rows[i]["messages"]]])[0]
            head = f"Thought: {(parsed.thought or '').strip()}\nAction: ```json\n"
            head += f'{{"tool":{json.dumps(tool.name)},"args":'
            thought = parsed.thought or ""
            calls.append(
                {
                    "i": i,
                    "cands": candidates,
                    "right": [_right(thought, tool.name, c, item) for c in candidates],
                    "ung": [rerank.ungrounded(tool, c, request) for c in candidates],
                }
            )
            pairs += [(rerank.call_prefix(tool, c), request) for c in candidates]
            policy_pairs += [
                (prompt + head, json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "}\n```")
                for c in candidates
            ]
        channel = iter(generate.base_channel(*zip(*pairs, strict=True)))
        policy = iter(generate.channel(*zip(*policy_pairs, strict=True)))
        for call in calls:
            call["channel"] = [next(channel) for _ in call["cands"]]
            call["policy"] = [next(policy) for _ in call["cands"]]
        result[split] = {"seed": seed, "calls": calls, "s": round(time.time() - t0)}
        out.write_text(json.dumps(result, default=str))
        print(split, len(calls), result[split]["s"], flush=True)


def _words(args: dict[str, Any]) -> int:
    count = 0
    for v in args.values():
        for s in v if isinstance(v, list) else [v]:
            count += len(s.split()) if isinstance(s, str) else 0
    return count


def _features(call: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each feature per candidate, as a difference from the model's own call (candidate 0)."""
    keys = set(call["cands"][0])
    same = np.array([set(c) == keys for c in call["cands"]])
    channel, policy = np.array(call["channel"]), np.array(call["policy"])
    kept = np.where(same, policy, policy[0])  # the preset's: an added or dropped argument gets the call's own
    words = np.array([_words(c) for c in call["cands"]], float)
    own = np.zeros(len(same))
    own[0] = 1
    return {
        "channel": channel - channel[0],
        "policy": policy - policy[0],
        "policy_kept": kept - kept[0],
        "ungrounded": np.array(call["ung"], float),
        "own": own,
        "words": words - words[0],
    }


def _judged(calls: list[dict[str, Any]], weights: dict[str, float]) -> int:
    """Calls right when each takes its highest-weighted candidate (ties: the first, the call's own)."""
    right = 0
    for call in calls:
        f = _features(call)
        score = sum(w * f[name] for name, w in weights.items())
        right += call["right"][int(np.argmax(score))]
    return right


def _compose(args: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`args` with both edits `a` and `b` applied."""
    out = dict(args)
    for edit in (a, b):
        for k in args:
            if k not in edit:
                out.pop(k, None)
        out |= {k: v for k, v in edit.items() if args.get(k, object()) != v}
    return out


def reach(stem: str, token: str) -> dict[str, int]:
    """Calls some candidate makes right: single edits, plus span edits, plus two edits composed."""
    split, seed, replies, rows = _draw(stem, token)
    counts = {"calls": 0, "greedy": 0, "one_edit": 0, "one_edit_or_span": 0, "two_edits": 0}
    for _, item, parsed, tool, request in _calls(replies, rows):
        thought, args = parsed.thought or "", parsed.call.args
        candidates = rerank.argument_edits(tool, args, request)
        spans = [e for e in span_edits(tool, args, request) if e not in candidates]
        combos = [_compose(args, a, b) for a, b in itertools.combinations(candidates[1:], 2)]
        combos = [c for c in combos if c not in candidates and not validate_args(tool.parameters, c)]
        one = any(_right(thought, tool.name, c, item) for c in candidates)
        counts["calls"] += 1
        counts["greedy"] += _right(thought, tool.name, args, item)
        counts["one_edit"] += one
        counts["one_edit_or_span"] += one or any(_right(thought, tool.name, c, item) for c in spans)
        counts["two_edits"] += one or any(_right(thought, tool.name, c, item) for c in combos)
    return counts


JUDGES = {
    "channel": {"channel": 1, "ungrounded": -rerank.UNGROUNDED_PENALTY},
    "values50 (the preset)": {"channel": 1, "ungrounded": -rerank.UNGROUNDED_PENALTY, "policy_kept": 0.5},
    "policy50 over every candidate": {"channel": 1, "ungrounded": -rerank.UNGROUNDED_PENALTY, "policy": 0.5},
}


def judge(features_file: Path, out: Path) -> None:
    saved = json.loads(features_file.read_text())
    draws = [s for s in saved if isinstance(saved[s], dict)]
    result: dict[str, Any] = {"features": str(features_file), "draws": {}}
    for split in draws:
        calls = saved[split]["calls"]
        token = f"{split}:{saved[split]['seed']}"
        block = reach(saved["replies"], token) | {"oracle": sum(any(c["right"]) for c in calls)}
        block["judges"] = {name: _judged(calls, w) for name, w in JUDGES.items()}
        preset = JUDGES["values50 (the preset)"]
        block["values50 with a penalty per word"] = {
            str(p): _judged(calls, preset | {"words": -p}) for p in (0.05, 0.1, 0.2, 0.3, 0.5)
        }
        result["draws"][token] = block
    grid = []
    for p, kept, u, own, wd in itertools.product(
        (0, 0.25, 0.5, 1), (0, 0.25, 0.5, 1), (0.1, 0.3, 1), (0, 0.1), (0, 0.05, 0.1, 0.2, 0.3, 0.5)
    ):
        w = {"channel": 1, "policy": p, "policy_kept": kept, "ungrounded": -u, "own": own, "words": -wd}
        grid.append({"weights": w} | {s: _judged(saved[s]["calls"], w) for s in draws})
    grid.sort(key=lambda g: -sum(g[s] for s in draws))
    result["grid_size"] = len(grid)
    result["grid_best"] = grid[:5]
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "features":
        draws = sys.argv[5] if len(sys.argv) > 5 else DRAWS
        features(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), draws)
    else:
        judge(Path(sys.argv[2]), Path(sys.argv[3]))
