"""Tools, the agent output format, its parser, and a batched ReAct loop.

Below both tasks and agents: both use it, neither owns it, and it imports nothing of posttrain but
`errors` (a bad tools file is a `DataError`) and `constrained` (llguidance, for `grammar`).

The output format (after seed 004, with arguments as an object checked against the tool's schema):

    Thought: <reasoning>
    Action: ```json
    {"tool": "<name>", "args": {...}}
    ```

and, for the last turn, `Final Answer: <answer>` (optionally preceded by a `Thought:` line).

**Full compliance** of a tool-call turn means all four of:

1. the text (after leading whitespace) starts with `Thought:` followed by non-empty reasoning;
2. `Action:` follows, then a fenced block (```` ```json ```` or a bare ```` ``` ````, closed by ```` ``` ````)
   holding exactly one JSON object with exactly the keys `tool` (a string) and `args` (an object);
3. `tool` names a tool in the registry;
4. `args` is valid against that tool's parameter schema (see `validate_args`).

A final turn is compliant when it is `Final Answer: <non-empty>` with nothing before it but an
optional `Thought: ...`. Whitespace around markers and trailing text after the closing fence are
tolerated (the trailing text is not part of the turn; see `ParseResult.turn`). Markers are
case-sensitive. Whichever of `Action:` / `Final Answer:` comes first decides the turn's type.

Modules: `spec` (tools and the registry), `files` (tools from a user's JSON / JSONL / YAML file),
`schema` (JSON Schema checks of tools and arguments), `format` (prompt and turn renderers),
`parse` (the parser), `grammar` (a turn as an llguidance grammar, for constrained decoding),
`react` (the loop and a Hugging Face `generate`).
"""

from posttrain.toolcall.files import load_tools
from posttrain.toolcall.format import (
    ACTION,
    FINAL,
    THOUGHT,
    format_call,
    format_final,
    format_system_prompt,
    render_tools,
)
from posttrain.toolcall.grammar import tool_turn_grammar
from posttrain.toolcall.parse import FAILURE_KINDS, FailureKind, ParseResult, ResultKind, parse_response
from posttrain.toolcall.react import Episode, Generate, GrammarGenerate, Step, hf_generate_fn, run_react
from posttrain.toolcall.schema import check_parameters, validate_args
from posttrain.toolcall.spec import MAX_OBSERVATION_CHARS, Tool, ToolCall, ToolRegistry

__all__ = [
    "ACTION",
    "FAILURE_KINDS",
    "FINAL",
    "MAX_OBSERVATION_CHARS",
    "THOUGHT",
    "Episode",
    "FailureKind",
    "Generate",
    "GrammarGenerate",
    "ParseResult",
    "ResultKind",
    "Step",
    "Tool",
    "ToolCall",
    "ToolRegistry",
    "check_parameters",
    "format_call",
    "format_final",
    "format_system_prompt",
    "hf_generate_fn",
    "load_tools",
    "parse_response",
    "render_tools",
    "tool_turn_grammar",
    "run_react",
    "validate_args",
]
