"""Rows from the function pool: requests with 1-4 candidate tools, masked names, irrelevance and follow-ups.

What each choice is for (Hammer's recipe for small tool callers, issue 13):
- distractors (some from the target's own family) make the model pick, not just copy the one tool;
- masking renames a function (to an alias or a meaningless id) and its parameters, and swaps the
  description for a paraphrase, so a name cannot be memorised: the model must read the list;
- irrelevance rows (~15%, the top of the 10-15% Hammer used) offer tools of other families only,
  and the gold is no call; a twin (`twins`) is such a row for a request that also appears with
  its tool, so the tool list is all that separates the call from the decline;
- follow-ups (~20% of calls) continue after the tool's observation to a final answer.

A row: `id`, `split`, `family`, `function` (the pool name), `messages` (the user turn), `tools`
(OpenAI specs as offered), `gold` (BFCL's possible-answer shape, or `NO_CALL`), `completion` (the
gold assistant turn in the Thought→Action format) and `follow_up` (None, or the observation and
the final turn after it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Sequence
from typing import Any

from posttrain.tasks.tool_use.chat_format import ChatToolFormat, openai_messages
from posttrain.tasks.tool_use.pool import PoolFunction, PoolSplit, draw_value, pool_functions, render_prompt
from posttrain.tasks.tool_use.scoring import NO_CALL, OMITTED
from posttrain.toolcall import format_call, format_final, format_system_prompt

_CALL_THOUGHTS = ("{name} fits this request.", "I should call {name}.", "This needs {name}.")
_NONE_THOUGHTS = (
    "None of the offered tools fits this request.",
    "No tool here can do this.",
    "The tools offered cannot handle this request.",
)
_NONE_ANSWERS = (
    "Sorry, none of the tools I have can help with that.",
    "I can't do that with the tools available here.",
)
_ID_STEMS = ("fn", "tool", "op", "api", "action", "call")


def pool_rows(
    n: int,
    seed: int,
    split: PoolSplit,
    *,
    irrelevance: float = 0.15,
    follow_up: float = 0.2,
    mask: float = 0.35,
    max_tools: int = 4,
    twins: float = 0.0,
    families: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """`n` rows of a split's families, deterministic for a seed (see the module docstring), and
    with `twins` > 0 a no-call twin after that share of the call rows: the same request with
    the target's family removed from the offered tools (id suffix `-twin`). `families` keeps
    only those of the split's families, for targets and distractors alike."""
    if n < 0 or max_tools < 1:
        raise ValueError("n must be >= 0 and max_tools >= 1")
    rng = random.Random(f"tool_pool/{split}/{seed}")
    functions = pool_functions(split)
    if families is not None:
        functions = [fn for fn in functions if fn.family in families]
        if not functions:
            raise ValueError(f"none of the families {sorted(families)} is in the {split} split")
    rows = []
    for i in range(n):
        target = rng.choice(functions)
        relevant = rng.random() >= irrelevance
        template = rng.choice(target.prompts)
        request = template, _draw_args(target, template, rng)
        row_id = f"pool-{split}-{seed}-{i:05d}"
        rows.append(
            _row(row_id, split, target, request, functions, relevant, rng, mask, max_tools, follow_up)
        )
        # `twins and`: no draw at 0, so rows without twins are the ones this seed always gave
        if twins and relevant and rng.random() < twins:
            twin = _row(row_id, split, target, request, functions, False, rng, mask, max_tools, 0.0)
            rows.append(twin | {"id": f"{row_id}-twin"})
    return rows


def _row(
    row_id: str,
    split: PoolSplit,
    target: PoolFunction,
    request: tuple[str, dict[str, Any]],
    functions: Sequence[PoolFunction],
    relevant: bool,
    rng: random.Random,
    mask: float,
    max_tools: int,
    follow_up: float,
) -> dict[str, Any]:
    template, args = request
    n_tools = rng.choices(range(1, max_tools + 1), weights=[4, 4, 2, 1][:max_tools] + [1] * (max_tools - 4))[
        0
    ]
    others = [f for f in functions if f.name != target.name and (relevant or f.family != target.family)]
    relevant = relevant or not others  # a pool of one family has nothing to offer instead
    family = [f for f in others if f.family == target.family]
    distractors: list[PoolFunction] = []
    while len(distractors) < min(n_tools - (1 if relevant else 0), len(others)):
        pick = rng.choice(family if family and rng.random() < 0.3 else others)
        if pick not in distractors:
            distractors.append(pick)
    offered = [target, *distractors] if relevant else distractors
    presented = [_present(f, rng, mask) for f in offered]
    rng.shuffle(presented)
    specs = [spec for spec, _ in presented]
    row: dict[str, Any] = {
        "id": row_id,
        "split": split,
        "family": target.family,
        "function": target.name,
        "messages": [{"role": "user", "content": render_prompt(template, args)}],
        "tools": specs,
        "follow_up": None,
    }
    if not relevant:
        row["gold"] = NO_CALL
        row["completion"] = format_final(rng.choice(_NONE_THOUGHTS), rng.choice(_NONE_ANSWERS))
        return row
    spec, renames = next(p for p in presented if p[1]["__function__"] == target.name)
    name = spec["function"]["name"]
    call_args = {renames[p]: args[p] for p in (q.name for q in target.params) if p in args}
    gold_args: dict[str, list[Any]] = {}
    for p in target.params:
        if p.name in args:
            gold_args[renames[p.name]] = [args[p.name]]
        else:
            gold_args[renames[p.name]] = [OMITTED] + ([p.schema["default"]] if "default" in p.schema else [])
    row["gold"] = [{name: gold_args}]
    row["completion"] = format_call(rng.choice(_CALL_THOUGHTS).format(name=name), name, call_args)
    if rng.random() < follow_up:
        result = _observation(target, rng)
        row["follow_up"] = {
            "observation": f"Observation: {json.dumps(result, ensure_ascii=False)}",
            "final": format_final("I have the result.", f"Here is what {name} returned: {result['result']}."),
        }
    return row


def _draw_args(fn: PoolFunction, template: str, rng: random.Random) -> dict[str, Any]:
    """Every required parameter, and each optional one the request can mention with probability 1/2."""
    args: dict[str, Any] = {}
    for p in fn.params:
        mentionable = "{" + p.name + "}" in template
        if p.optional and not (mentionable and rng.random() < 0.5):
            continue
        args[p.name] = draw_value(p.values, p.schema, rng)
    return args


def _present(fn: PoolFunction, rng: random.Random, mask: float) -> tuple[dict[str, Any], dict[str, str]]:
    """The OpenAI spec a row offers for `fn` (masked with probability `mask`), and the parameter
    renames; the map's `__function__` entry holds the pool name."""
    name = fn.name
    if rng.random() < mask:
        choices = [*fn.aliases, f"{rng.choice(_ID_STEMS)}_{rng.randrange(16**4):04x}"]
        name = rng.choice(choices)
    description = rng.choice(fn.paraphrases) if fn.paraphrases and rng.random() < 0.5 else fn.description
    renames: dict[str, str] = {"__function__": fn.name}
    mask_params = rng.random() < mask
    for i, p in enumerate(fn.params):
        new = p.name
        if mask_params:
            new = rng.choice([*p.aliases, f"arg{i + 1}"]) if p.aliases else f"arg{i + 1}"
        renames[p.name] = new if new not in renames.values() else p.name
    properties = {renames[p.name]: dict(p.schema) for p in fn.params}
    required = [renames[p.name] for p in fn.params if not p.optional]
    spec = {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }
    return spec, renames


def _observation(fn: PoolFunction, rng: random.Random) -> dict[str, Any]:
    """A plausible tool result: what the follow-up's final answer reports."""
    value: Any = rng.choice(
        (
            round(rng.uniform(1, 5000), 2),
            rng.randint(1, 500),
            rng.choice(("confirmed", "completed", "scheduled", "available", "not found", "pending")),
        )
    )
    return {"status": "ok", "result": value}


def pool_system_prompt(row: dict[str, Any]) -> str:
    """The system prompt of a pool row: the format and every offered tool in full (descriptions,
    defaults and choices), which a masked name makes the only guide to the right call."""
    return format_system_prompt(row["tools"], detail="full")


def pool_conversation(row: dict[str, Any], fmt: ChatToolFormat | None = None) -> list[dict[str, str]]:
    """The whole gold conversation of a row, for SFT; in the model's own tool format with `fmt`
    (`chat_format`), in Thought→Action without."""
    if fmt is not None:
        return fmt.plain(openai_messages(row), row["tools"])
    turns = [{"role": "system", "content": pool_system_prompt(row)}, *row["messages"]]
    turns.append({"role": "assistant", "content": row["completion"]})
    if row["follow_up"]:
        turns.append({"role": "user", "content": row["follow_up"]["observation"]})
        turns.append({"role": "assistant", "content": row["follow_up"]["final"]})
    return turns


def pool_prompt(row: dict[str, Any], fmt: ChatToolFormat | None = None) -> list[dict[str, str]]:
    """The conversation a model answers for a row (system and user turn); with `fmt` the system
    turn is the model's own tool list."""
    if fmt is not None:
        return fmt.plain(row["messages"], row["tools"])
    return [{"role": "system", "content": pool_system_prompt(row)}, *row["messages"]]
