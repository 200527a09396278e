"""Tool use evaluated on a user's own data: rows with their tools and BFCL-shaped gold, and the figures.

A row (JSONL/JSON/CSV, read by `tasks.loader`) holds:

- `messages` (chat turns ending with a user turn) or `prompt` (a string: one user turn);
- `tools`: OpenAI function specs offered on this row (optional when the caller passes tools for
  every row; a row's own list wins);
- `gold`: the acceptable calls, `[{"<name>": {"<arg>": [acceptable values]}}, ...]`, with `""` in an
  argument's values meaning "may be left out", or `"no_call"` when no offered tool fits
  (`scoring.score_call` has the rules).

The figures of one model's replies, each a mean with n and a bootstrap CI:

| figure | over | counts a row when the reply |
|---|---|---|
| `ast_accuracy` (headline) | rows whose gold is a call | is a schema-valid call matching a gold call |
| `function_name_accuracy` | rows whose gold is a call | calls a function some acceptable gold call names |
| `hallucinated_function_rate` | replies that call a function | calls a name the row does not offer |
| `must_call_rate` | rows whose gold is a call | writes an `Action:` (tries to call) |
| `irrelevance_accuracy` | rows whose gold is `no_call` | writes no `Action:` |
| `format_validity` | every row | is a valid call or a well-formed final answer |
| `thought_prefix_rate` | every row | starts with `Thought: <reasoning>` |

Irrelevance is reported beside must-call because refusing everything games it on its own.
Given a `ChatToolFormat` (`data.tool_format: chat_template`), prompts and replies are in the
model's own chat-template tool format instead: "writes an `Action:`" reads "writes a call", a
well-formed final answer is any non-empty reply without one, and `thought_prefix_rate` does not apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.errors import ConfigError
from posttrain.tasks.loader import Record, read_records
from posttrain.tasks.metrics import Figure, figure
from posttrain.tasks.tool_use.chat_format import ChatToolFormat, call_message
from posttrain.tasks.tool_use.scoring import NO_CALL, OMITTED, Gold, score_call
from posttrain.toolcall import (
    Tool,
    ToolRegistry,
    check_parameters,
    format_call,
    format_final,
    format_system_prompt,
    parse_response,
    tool_turn_grammar,
)
from posttrain.toolcall.relevance import ChannelScore, RelevanceGate, last_request, relevance_scores
from posttrain.toolcall.rerank import POLICY_WEIGHT, PolicyScore, rerank_replies

USER_EVAL_METRICS = (
    "ast_accuracy",
    "function_name_accuracy",
    "hallucinated_function_rate",
    "must_call_rate",
    "irrelevance_accuracy",
    "format_validity",
    "thought_prefix_rate",
)
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class EvalItem:
    """One scored prompt: the conversation so far, the tools it offers and the gold."""

    messages: list[dict[str, str]]
    tools: list[Tool]
    gold: Gold
    line: int
    source: str

    @property
    def registry(self) -> ToolRegistry:
        return ToolRegistry(self.tools)


def read_eval_items(path: str | Path, tools: Sequence[Tool] | None = None) -> list[EvalItem]:
    """Every row of `path` checked and turned into an `EvalItem`; `tools` serve rows without their own.

    Raises DataError naming the file, the line and the field of the first bad row, before anything
    is loaded or written.
    """
    return [_item(record, tools) for record in read_records(path)]


def _item(record: Record, default_tools: Sequence[Tool] | None) -> EvalItem:
    row = record.data
    messages = _messages(record)
    if "tools" in row:
        tools = _tools(record, row["tools"])
    elif default_tools:
        tools = list(default_tools)
    else:
        raise record.error("tools", "is missing (give the row its OpenAI function specs, or pass --tools)")
    if "gold" not in row:
        raise record.error("gold", f'is missing (a list of acceptable calls, or "{NO_CALL}")')
    gold = _gold(record, row["gold"], {t.name for t in tools})
    return EvalItem(messages, tools, gold, record.line, record.source)


def _messages(record: Record) -> list[dict[str, str]]:
    row = record.data
    if "messages" in row:
        field, turns = "messages", row["messages"]
    elif isinstance(row.get("prompt"), str):
        field, turns = "prompt", [{"role": "user", "content": row["prompt"]}]
    elif "prompt" in row:
        field, turns = "prompt", row["prompt"]
    else:
        raise record.error(None, 'has neither "messages" nor "prompt"')
    if not isinstance(turns, list) or not turns:
        raise record.error(field, "must be a non-empty list of {role, content} turns or a string prompt")
    for i, turn in enumerate(turns):
        ok = isinstance(turn, dict) and turn.get("role") in ROLES and isinstance(turn.get("content"), str)
        if not ok:
            raise record.error(f"{field}[{i}]", f"must be {{role: {'|'.join(ROLES)}, content: string}}")
    if turns[-1]["role"] != "user":
        raise record.error(field, "must end with a user turn (the model answers it)")
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def _tools(record: Record, specs: Any) -> list[Tool]:
    if not isinstance(specs, list) or not specs:
        raise record.error("tools", "must be a non-empty list of OpenAI function specs")
    tools, names = [], set()
    for i, spec in enumerate(specs):
        fn = spec.get("function") if isinstance(spec, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise record.error(
                f"tools[{i}]", 'must be an OpenAI spec: {"type": "function", "function": {"name", ...}}'
            )
        if not isinstance(fn.get("description", ""), str):
            raise record.error(f"tools[{i}].function.description", "must be a string")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        problems = check_parameters(params)  # draft 2020-12: a misspelt type is an error, not "any"
        if problems:
            raise record.error(f"tools[{i}].function", f"tool {fn['name']!r}: {problems[0]}")
        if fn["name"] in names:
            raise record.error(f"tools[{i}].function.name", f"{fn['name']!r} is offered twice")
        names.add(fn["name"])
        # Scoring needs only the spec; nothing here is ever executed.
        tools.append(Tool(fn["name"], fn.get("description", ""), params))
    return tools


def _gold(record: Record, gold: Any, offered: set[str]) -> Gold:
    if gold == NO_CALL:
        return NO_CALL
    shape = f'a list of acceptable calls [{{"<name>": {{"<arg>": [values]}}}}] or "{NO_CALL}"'
    if not isinstance(gold, list) or not gold:
        raise record.error("gold", f"must be {shape}")
    for i, option in enumerate(gold):
        if not isinstance(option, dict) or len(option) != 1:
            raise record.error(f"gold[{i}]", 'must be one call: {"<name>": {"<arg>": [acceptable values]}}')
        ((name, args),) = option.items()
        if name not in offered:
            raise record.error(f"gold[{i}]", f"names {name!r}, which the row's tools do not offer")
        if not isinstance(args, dict):
            raise record.error(f"gold[{i}].{name}", "must be an object of argument -> [acceptable values]")
        for arg, values in args.items():
            if not isinstance(values, list) or not values:
                raise record.error(
                    f"gold[{i}].{name}.{arg}",
                    f'must be a non-empty list of acceptable values ("{OMITTED}" among them: may be omitted)',
                )
    return gold


def user_eval_conversations(
    items: Sequence[EvalItem], fmt: ChatToolFormat | None = None
) -> list[list[dict[str, str]]]:
    """The conversations a model answers: the Thought→Action system prompt for the row's tools,
    every description in full as align's function-pool rows train it, first (a row's own system
    turn follows it in the same system message). With `fmt`, the row's turns with the model's own
    tool list in the system turn (`chat_format`)."""
    if fmt is not None:
        return [fmt.plain(item.messages, [t.schema() for t in item.tools]) for item in items]
    out = []
    for item in items:
        system = format_system_prompt(item.tools, detail="full")
        turns = item.messages
        if turns[0]["role"] == "system":
            system, turns = f"{system}\n\n{turns[0]['content']}", turns[1:]
        out.append([{"role": "system", "content": system}, *turns])
    return out


def turn_grammars(
    items: Sequence[EvalItem], chat_template: bool = False, offered: Sequence[Sequence[Tool]] | None = None
) -> list[str]:
    """For constrained decoding: one `toolcall.tool_turn_grammar` per item over its tools (a
    Thought, then a schema-valid call of an offered tool or a final answer), the decoding a
    deployment can add to any model; over `offered` instead where given (a relevance gate's
    choice: one tool, or none and the final answer alone). Thought→Action only: a chat
    template's tool format has no marker that starts a plain answer (ConfigError for `chat_template`)."""
    if chat_template:
        raise ConfigError(
            "constrained decoding of tool turns needs the Thought→Action format (a chat template's "
            "tool format cannot mark a plain answer); score this adapter without it"
        )
    return [
        tool_turn_grammar(tools) for tools in (offered if offered is not None else [i.tools for i in items])
    ]


def gated_tools(
    items: Sequence[EvalItem], channel: ChannelScore, gate: RelevanceGate
) -> tuple[list[list[Tool]], list[list[float]]]:
    """The tools `gate` lets each item's constrained turn call (its best-scoring tool, or none),
    and every offered tool's relevance score, for the records."""
    scores = relevance_scores(channel, [last_request(i.messages) for i in items], [i.tools for i in items])
    chosen = [gate.choose(s) for s in scores]
    return [[] if c is None else [item.tools[c]] for item, c in zip(items, chosen, strict=True)], scores


def gold_turn(item: EvalItem, fmt: ChatToolFormat | None = None) -> str:
    """The reply that scores full marks: the first acceptable call in the trained format (each
    argument's first acceptable value, optional ones left out), or a final answer for `no_call`;
    with `fmt`, written as the model's chat template writes the call."""
    if item.gold == NO_CALL:
        if fmt is not None:
            return "I cannot do that with the tools offered here."
        return format_final("None of the offered tools fits this request.", "I cannot do that here.")
    ((name, args),) = item.gold[0].items()  # type: ignore[union-attr]
    written = {arg: [v for v in values if v != OMITTED] for arg, values in args.items()}
    chosen = {arg: values[0] for arg, values in written.items() if values}
    if fmt is not None:
        schemas = [t.schema() for t in item.tools]
        return fmt.assistant_text(item.messages, schemas, call_message(name, chosen))
    return format_call(f"I should call {name}.", name, chosen)


def score_reply(text: str, item: EvalItem, fmt: ChatToolFormat | None = None) -> dict[str, bool | None]:
    """Per-row indicators behind `user_eval_figures`; None where a figure does not apply. With
    `fmt` the reply is read in the model's own tool format, which has no Thought to count."""
    registry = item.registry
    p = parse_response(text, registry) if fmt is None else fmt.parse(text, registry)
    wants_call = item.gold != NO_CALL
    tried = p.json_valid is not None  # an `Action:` was written, well-formed or not
    gold_names = set() if not wants_call else {n for option in item.gold for n in option}  # type: ignore[union-attr]
    return {
        "ast_accuracy": (p.kind == "call" and score_call(p.call, item.gold)) if wants_call else None,
        "function_name_accuracy": (p.call is not None and p.call.name in gold_names) if wants_call else None,
        "hallucinated_function_rate": (p.call.name not in registry) if p.call is not None else None,
        "must_call_rate": tried if wants_call else None,
        "irrelevance_accuracy": None if wants_call else not tried,
        "format_validity": p.compliant,
        "thought_prefix_rate": p.has_thought if fmt is None else None,
    }


def reranked_turns(
    replies: Sequence[str],
    items: Sequence[EvalItem],
    channel: ChannelScore,
    policy: PolicyScore | None = None,
    policy_weight: float = POLICY_WEIGHT,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Each call's arguments re-read by the model (`toolcall.rerank`; with `policy`, its own
    likelihood too), and per row what that did for the records: how many candidates were scored
    and, where it changed, the reply before."""
    requests = [last_request(i.messages) for i in items]
    tools = [i.tools for i in items]
    new, counts = rerank_replies(channel, replies, requests, tools, policy, policy_weight)
    notes = [
        {"rerank_candidates": n} | ({"reply_before_rerank": old} if old != text else {})
        for old, text, n in zip(replies, new, counts, strict=True)
    ]
    return new, notes


def policy_scorer(
    render: Callable[[list[list[dict[str, str]]]], list[str]],
    channel: ChannelScore,
    conversations: Sequence[list[dict[str, str]]],
) -> PolicyScore:
    """The policy's side of the argument rerank (`toolcall.rerank.PolicyScore`): each candidate's
    arguments as its reply writes them, after its conversation (chat-templated by `render`, e.g.
    an `inference.generator`'s) with only the called tool offered in full and the reply's Thought,
    scored by `channel`, the evaluated model's own. One tool in the prompt is how
    bench/tool_rerank_judges.py measured it."""

    def score(calls: Sequence[tuple[int, Tool, str, Sequence[Any]]]) -> list[list[float]]:
        prefixes: list[str] = []
        targets: list[str] = []
        for i, tool, thought, candidates in calls:
            system = {"role": "system", "content": format_system_prompt([tool], detail="full")}
            (prompt,) = render([[system, *conversations[i]]])
            head = f'Thought: {thought.strip()}\nAction: ```json\n{{"tool":{json.dumps(tool.name)},"args":'
            for args in candidates:
                prefixes.append(prompt + head)
                targets.append(json.dumps(args, ensure_ascii=False, separators=(",", ":")) + "}\n```")
        found = iter(channel(prefixes, targets) if prefixes else [])
        return [[next(found) for _ in candidates] for _, _, _, candidates in calls]

    return score


def user_eval_figures(
    texts: Sequence[str],
    items: Sequence[EvalItem],
    fmt: ChatToolFormat | None = None,
    relevance: Sequence[Sequence[float]] | None = None,
    notes: Sequence[dict[str, Any]] | None = None,
) -> tuple[dict[str, Figure], list[dict[str, Any]]]:
    """Every figure of `USER_EVAL_METRICS` over one reply per item, and a record per row (where it
    came from, the reply, the gold and its indicators, with `relevance` each offered tool's score
    from `gated_tools`, and `notes` as `reranked_turns` gives them) for the output JSON; `fmt` as
    in `score_reply`."""
    if len(texts) != len(items):
        raise ValueError(f"{len(texts)} replies for {len(items)} rows")
    scores = [score_reply(t, item, fmt) for t, item in zip(texts, items, strict=True)]
    figures = {name: figure([s[name] for s in scores if s[name] is not None]) for name in USER_EVAL_METRICS}
    records = [
        {"line": item.line, "reply": text, "gold": item.gold, **score}
        for text, item, score in zip(texts, items, scores, strict=True)
    ]
    for record, row in zip(records, relevance or [], strict=False):
        record["relevance"] = [round(x, 4) for x in row]
    for record, note in zip(records, notes or [], strict=False):
        record |= note
    return figures, records
