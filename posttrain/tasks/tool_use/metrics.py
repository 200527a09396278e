"""The tool_use figures of one model's turns and the reward that ranks its trajectories.

Per scored turn (a held-out prompt, the model's reply `t`, the gold first turn; in
`posttrain align`/`eval` the first turn of each held-out episode, see `align.evaluate_tool_use`):

| figure | over | counts a turn when |
|---|---|---|
| `full_compliance` | every turn | `t` is a valid call or a well-formed final answer (toolcall's definition) |
| `thought_prefix_rate` | every turn | `t` starts with `Thought: <reasoning>` |
| `json_validity` | turns whose gold is a call | the Action block holds a `{"tool", "args"}` JSON object |
| `hallucinated_tool_rate` | turns where `t` calls a tool | the tool is not in the registry (None: no calls) |
| `tool_choice_accuracy` | turns whose gold is a call | `t` calls the gold tool |
| `argument_accuracy` | turns whose gold is a call | BFCL AST match: schema-valid, values as the gold's |
| `irrelevance_accuracy` | first turns of prompts that need no tool | `t` has no Action (BFCL: no call) |
| `task_accuracy` | episodes run freely | the ReAct loop ends in a Final Answer carrying the gold |

`task_accuracy` runs each episode freely to its end, so it is the multi-step number (see
`align.evaluate_tool_use`).
"""

from __future__ import annotations

from collections.abc import Sequence

from posttrain.tasks.metrics import Figure, figure
from posttrain.tasks.tool_use.scoring import answer_matches, arguments_match
from posttrain.toolcall import Episode, ParseResult, ToolCall, ToolRegistry, parse_response, validate_args

TOOL_USE_METRICS = (
    "full_compliance",
    "json_validity",
    "thought_prefix_rate",
    "hallucinated_tool_rate",
    "irrelevance_accuracy",
    "tool_choice_accuracy",
    "argument_accuracy",
)


def score_turn(text: str, row: dict, registry: ToolRegistry) -> dict[str, bool | None]:
    """Per-turn indicators behind `tool_use_turn_metrics`; None where a figure does not apply."""
    p: ParseResult = parse_response(text, registry)
    gold = row.get("gold")
    calls = p.call is not None
    is_irrelevance = row.get("task") == "no_tool" and row.get("step", 0) == 0
    return {
        "full_compliance": p.compliant,
        "thought_prefix_rate": p.has_thought,
        "json_validity": (p.json_valid is True) if gold else None,
        "hallucinated_tool_rate": (p.call.name not in registry) if calls else None,  # type: ignore[union-attr]
        "tool_choice_accuracy": (calls and p.call.name == gold["name"]) if gold else None,  # type: ignore[union-attr]
        "argument_accuracy": (calls and _ast_match(gold, p.call, registry)) if gold else None,  # type: ignore[arg-type]
        "irrelevance_accuracy": (p.json_valid is None) if is_irrelevance else None,
    }


def _ast_match(gold: dict, call: ToolCall, registry: ToolRegistry) -> bool:
    """BFCL's AST check: the gold tool, its schema satisfied (required present, no extras, right
    types) and the values equal after normalisation (`scoring.arguments_match`)."""
    tool = registry.get(call.name)
    return tool is not None and not validate_args(tool.parameters, call.args) and arguments_match(gold, call)


def tool_use_turn_metrics(
    texts: Sequence[str], rows: Sequence[dict], registry: ToolRegistry
) -> dict[str, Figure]:
    """Every figure of `TOOL_USE_METRICS` over the turns (see the module docstring for each)."""
    if len(texts) != len(rows):
        raise ValueError(f"{len(texts)} outputs for {len(rows)} rows")
    scores = [score_turn(t, r, registry) for t, r in zip(texts, rows, strict=True)]
    return {name: figure([s[name] for s in scores if s[name] is not None]) for name in TOOL_USE_METRICS}


def tool_use_trajectory_reward(episode: Episode, gold_answer: str) -> float:
    """Reward in [0, 1]: 0.5 x share of compliant turns + 0.5 x [Final Answer carries the gold].

    Compliance keeps the format; success keeps the tools honest (a compliant loop that never answers
    earns at most 0.5).
    """
    if not episode.steps:
        return 0.0
    compliant = sum(s.parse.compliant for s in episode.steps) / len(episode.steps)
    success = episode.status == "final" and answer_matches(episode.final_answer, gold_answer)
    return 0.5 * compliant + 0.5 * float(success)
