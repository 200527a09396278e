"""A tool turn as an llguidance grammar: what constrained decoding keeps a tool-calling model to.

A Thought→Action turn is `Thought: <one line>` and then either an Action block whose JSON is
`{"tool": <an offered name>, "args": <that tool's parameter schema, no undeclared keys>}` or, with
`answer`, `Final Answer: <text>`. Whether to call stays the model's choice; the name and the
argument names, types, enums and required keys come from the list, so the model cannot invent a
function or a parameter. Measured with the SFT adapter of the bench run in
bench/results/align_quality.json, greedy (`bench/tool_decoding.py`): AST accuracy 0.27 free and
0.43 constrained on 120 requests of the validation families (where the choice to build it was
made), 0.27 and 0.37 on the 200 held-out ones; format validity 0.64 → 0.98 there. The gain is
argument names and types; whether to call at all stays as trained (irrelevance 0.00 both ways).

In a chat template's format (`layout`: the text before the call object, its name and arguments
keys, the text after) the turn is that call alone: the format has no marker that starts a plain
answer, so an answer cannot be offered beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from posttrain.constrained import SchemaError, bounded_numbers, llguidance_module
from posttrain.toolcall.format import ACTION, FINAL, THOUGHT
from posttrain.toolcall.spec import Tool

MAX_THOUGHT_CHARS = 200  # a random model must still reach the Action
MAX_ANSWER_CHARS = 2000

Layout = tuple[str, tuple[str, str], str]


def tool_turn_grammar(
    tools: Iterable[Tool],
    *,
    only: str | None = None,
    answer: bool = True,
    layout: Layout | None = None,
    lltok: Any = None,
) -> str:
    """The grammar of one assistant turn over `tools`: a call of `only` (else of any of them)
    whose arguments follow its schema, or (with `answer`, Thought→Action only) a final answer; no
    tools with `answer` leaves the final answer alone. Arguments are compact JSON with numbers
    bounded as in `constrained.bounded_numbers`. Raises SchemaError with llguidance's reason when
    a schema cannot be compiled (checked against `lltok` too when given), ValueError for an
    answer in a chat template's layout."""
    keys = ("tool", "args") if layout is None else layout[1]
    options = []
    for tool in tools:
        if only is not None and tool.name != only:
            continue
        args = dict(tool.parameters)
        if "properties" in args:
            args.setdefault("additionalProperties", False)
        envelope = {keys[0]: {"const": tool.name}, keys[1]: bounded_numbers(args)}
        options.append(
            {"type": "object", "properties": envelope, "required": list(keys), "additionalProperties": False}
        )
    if not options and not (answer and layout is None and only is None):
        raise SchemaError(f"no tool named {only!r} is offered" if only else "no tools are offered")
    body = json.dumps({"anyOf": options, "x-guidance": {"whitespace_flexible": False}})
    if layout is None:
        thought = f"/[^\\n\\t `][^\\n`]{{0,{MAX_THOUGHT_CHARS - 1}}}/"
        call = f'"{ACTION} ```json\\n" body "\\n```"'
        # No tools: only a final answer (a relevance gate found none that fits).
        turn = (f'({call} | "{FINAL} " ANSWER)' if options else f'"{FINAL} " ANSWER') if answer else call
        lark = (
            f'start: "{THOUGHT} " THOUGHT "\\n" {turn}\nTHOUGHT: {thought}\n'
            f"ANSWER: /[^\\n ][^\\x00]{{0,{MAX_ANSWER_CHARS - 1}}}/"
        ) + (f"\nbody: %json {body}" if options else "")
    elif answer:
        raise ValueError("a chat template's tool format has no marker for a plain answer: force a call")
    else:
        head, _, tail = layout
        opening = f"{json.dumps(head)} " if head else ""
        closing = f" {json.dumps(tail)}" if tail else ""
        lark = f"start: {opening}body{closing}\nbody: %json {body}"
    matcher = llguidance_module().LLMatcher
    try:
        grammar = matcher.grammar_from_lark(lark)
        is_error, problems = matcher.validate_grammar_with_warnings(grammar, lltok)
    except ValueError as exc:
        is_error, problems = True, [str(exc)]
    if is_error:
        raise SchemaError(problems[0].strip() if problems else "llguidance rejected the tools' schemas")
    return grammar
