"""Tools, the agent output format, its parser, and a batched ReAct loop.

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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

THOUGHT, ACTION, FINAL = "Thought:", "Action:", "Final Answer:"

FailureKind = Literal["no_thought", "invalid_json", "unknown_tool", "schema_violation", "no_action"]
ResultKind = Literal[
    "call", "final", "no_thought", "invalid_json", "unknown_tool", "schema_violation", "no_action"
]
FAILURE_KINDS: tuple[FailureKind, ...] = (
    "no_action",
    "no_thought",
    "invalid_json",
    "unknown_tool",
    "schema_violation",
)
"""Failure kinds in the order the parser reports them when a turn has several defects."""

MAX_OBSERVATION_CHARS = 1000

# Opening fence right after `Action:`; tag optional; body may sit on the fence line.
_FENCE_RE = re.compile(r"\s*```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
# A final answer ends where the model starts a new ReAct turn on its own.
_ANSWER_END_RE = re.compile(r"\n\s*(?:Thought:|Action:|Observation:)")


# --------------------------------------------------------------------------- tools


@dataclass
class Tool:
    """A callable tool with an OpenAI / Hugging Face function schema.

    `parameters` is a JSON-schema object (`{"type": "object", "properties": ..., "required": ...}`).
    `fn` receives the validated arguments as keyword arguments and returns anything `json.dumps`
    accepts; exceptions it raises become `Error: ...` observations in `ToolRegistry.execute`.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]

    def schema(self) -> dict[str, Any]:
        """The function schema, accepted unchanged by `apply_chat_template(tools=...)` and OpenAI."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any]


class ToolRegistry(Mapping[str, Tool]):
    """Tools by name. `execute` never raises: every failure is an observation string."""

    def __init__(self, tools: Sequence[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    def execute(self, call: ToolCall) -> str:
        """Run `call` and return the observation text (a JSON value, or `Error: ...`)."""
        return self.execute_checked(call)[0]

    def execute_checked(self, call: ToolCall) -> tuple[str, bool]:
        """Like `execute`, plus whether the tool ran without error."""
        tool = self._tools.get(call.name)
        if tool is None:
            return f"Error: unknown tool {call.name!r}; available: {', '.join(self._tools)}", False
        problems = validate_args(tool.parameters, call.args)
        if problems:
            return f"Error: invalid arguments for {call.name}: {'; '.join(problems)}", False
        try:
            result = tool.fn(**call.args)
            text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        except Exception as err:  # a tool bug or bad input must reach the model, not crash the loop
            return f"Error: {err}" if str(err) else f"Error: {type(err).__name__}", False
        if len(text) > MAX_OBSERVATION_CHARS:
            text = text[:MAX_OBSERVATION_CHARS] + " ...(truncated)"
        return text, True


def format_system_prompt(tools: Sequence[Tool | dict[str, Any]]) -> str:
    """The compact system prompt: the output format and one line per tool.

    Small chat templates (SmolLM2's among them) ignore `tools=`, so the tool list lives here.
    """
    lines = [
        "You are an assistant that can call tools. To call a tool, reply exactly:",
        "Thought: <reasoning>",
        'Action: ```json\n{"tool": "<name>", "args": {<arguments>}}\n```',
        "When you know the answer, or no tool is needed, reply:",
        "Thought: <reasoning>\nFinal Answer: <answer>",
        "Tools:",
    ]
    for tool in tools:
        fn = tool.schema()["function"] if isinstance(tool, Tool) else tool["function"]
        lines.append(f"- {fn['name']}({_signature(fn['parameters'])}): {fn['description']}")
    return "\n".join(lines)


def _signature(params: dict[str, Any]) -> str:
    required = set(params.get("required", []))
    parts = []
    for name, spec in params.get("properties", {}).items():
        kind = spec["enum"] if "enum" in spec else spec.get("type", "any")
        kind = "|".join(str(v) for v in kind) if isinstance(kind, list) else kind
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- schema validation

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # JSON has one number type: 3.0 is an integer, True is not a number.
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and math.isfinite(v) and v.is_integer())
    ),
    "number": lambda v: (
        (isinstance(v, int | float) and not isinstance(v, bool))
        and (not isinstance(v, float) or math.isfinite(v))
    ),
}


def validate_args(schema: dict[str, Any], value: Any) -> list[str]:
    """Check `value` against a JSON-schema subset; return the problems (empty when valid).

    Supported: `type` (a name or a list), `properties`, `required`, `additionalProperties`,
    `enum`, `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum`, `minLength` /
    `maxLength`, `pattern` (searched, as in JSON Schema), `items`. Unlike plain JSON Schema, an
    object rejects properties it does not declare unless it sets `additionalProperties: true`
    (BFCL counts extra arguments as errors).
    """
    try:
        return _validate(schema, value, "args")
    except RecursionError:
        return ["args: nested too deeply"]


def _validate(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES.get(t, lambda _: True)(value) for t in names):
            return [f"{path}: expected {'|'.join(names)}, got {_json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        problems += [f"{path}: missing required {k!r}" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", False)
        for key, item in value.items():
            if key in props:
                problems += _validate(props[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                problems += _validate(extra, item, f"{path}.{key}")
            elif extra is not True:
                problems.append(f"{path}: unexpected argument {key!r}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += _validate(schema["items"], item, f"{path}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        bounds = (
            ("minimum", lambda b: value >= b),
            ("maximum", lambda b: value <= b),
            ("exclusiveMinimum", lambda b: value > b),
            ("exclusiveMaximum", lambda b: value < b),
        )
        problems += [
            f"{path}: {value} violates {k} {schema[k]}"
            for k, ok in bounds
            if k in schema and not ok(schema[k])
        ]
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    return problems


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__


# --------------------------------------------------------------------------- output format


def format_call(thought: str, name: str, args: dict[str, Any]) -> str:
    """A fully compliant tool-call turn; `parse_response` gives back exactly `name` and `args`."""
    # A backtick can only sit inside a JSON string, where its \u escape means the same; escaping it
    # keeps a "```" in an argument from closing the fence early.
    body = json.dumps({"tool": name, "args": args}, ensure_ascii=False).replace("`", "\\u0060")
    return f"{THOUGHT} {thought.strip()}\n{ACTION} ```json\n{body}\n```"


def format_final(thought: str | None, answer: str) -> str:
    """A compliant final turn; `thought=None` leaves the optional Thought line out."""
    head = f"{THOUGHT} {thought.strip()}\n" if thought else ""
    return f"{head}{FINAL} {answer.strip()}"


@dataclass(frozen=True)
class ParseResult:
    """What one assistant turn is.

    `kind` is "call", "final" or the first failure in `FAILURE_KINDS` order. The diagnostic fields
    are filled independently of `kind` so metrics can count them separately: a turn without a
    Thought still reports `json_valid` and its `call`.
    """

    kind: ResultKind
    call: ToolCall | None = None
    final_answer: str | None = None
    thought: str | None = None
    error: str | None = None
    has_thought: bool = False
    json_valid: bool | None = None  # None when the turn has no Action
    turn: str = ""  # the text that forms the turn (trailing text after the fence dropped)

    @property
    def compliant(self) -> bool:
        """Full compliance as the module docstring defines it: a valid call or a well-formed final."""
        return self.kind in ("call", "final")


def parse_response(text: str, registry: Mapping[str, Tool]) -> ParseResult:
    """Classify one assistant turn. Never raises, whatever `text` is."""
    action_at, final_at = text.find(ACTION), text.find(FINAL)
    if action_at < 0 and final_at < 0:
        thought = _thought(text, len(text))
        return ParseResult(
            "no_action",
            thought=thought,
            has_thought=thought is not None,
            turn=text,
            error="no `Action:` or `Final Answer:` found",
        )
    if final_at >= 0 and (action_at < 0 or final_at < action_at):
        return _parse_final(text, final_at)
    return _parse_action(text, action_at, registry)


def _thought(text: str, end: int) -> str | None:
    """The reasoning when `text[:end]` is `Thought: <non-empty>`; None otherwise."""
    head = text[:end].strip()
    if not head.startswith(THOUGHT):
        return None
    reasoning = head[len(THOUGHT) :].strip()
    return reasoning or None


def _parse_final(text: str, at: int) -> ParseResult:
    thought = _thought(text, at)
    rest = text[at + len(FINAL) :]
    cut = _ANSWER_END_RE.search(rest)
    answer = (rest[: cut.start()] if cut else rest).strip()
    turn = text[: at + len(FINAL) + (cut.start() if cut else len(rest))].strip()
    common = {"thought": thought, "has_thought": thought is not None, "turn": turn}
    if thought is None and text[:at].strip():
        error = "text before `Final Answer:` is not a Thought"
        return ParseResult("no_thought", final_answer=answer, error=error, **common)
    if not answer:
        return ParseResult("no_action", error="empty Final Answer", **common)
    return ParseResult("final", final_answer=answer, **common)


def _parse_action(text: str, at: int, registry: Mapping[str, Tool]) -> ParseResult:
    thought = _thought(text, at)
    after = at + len(ACTION)
    fence = _FENCE_RE.match(text, after)
    turn = text[: fence.end()].strip() if fence else text.strip()
    call, json_error = None, None
    if fence is None:
        json_error = "`Action:` is not followed by a ```json fenced block"
    else:
        call, json_error = _envelope(fence.group(1))
    common = {"thought": thought, "has_thought": thought is not None, "turn": turn, "call": call}
    common["json_valid"] = json_error is None
    if thought is None:
        return ParseResult(
            "no_thought", error="the turn does not start with `Thought: <reasoning>`", **common
        )
    if call is None:
        return ParseResult("invalid_json", error=json_error, **common)
    if call.name not in registry:
        return ParseResult("unknown_tool", error=f"unknown tool {call.name!r}", **common)
    problems = validate_args(registry[call.name].parameters, call.args)
    if problems:
        return ParseResult("schema_violation", error="; ".join(problems), **common)
    return ParseResult("call", **common)


def _envelope(body: str) -> tuple[ToolCall | None, str | None]:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as err:
        return None, f"invalid JSON: {err}"
    if not isinstance(obj, dict) or set(obj) != {"tool", "args"}:
        return None, 'the JSON must be an object with exactly the keys "tool" and "args"'
    if not isinstance(obj["tool"], str) or not isinstance(obj["args"], dict):
        return None, '"tool" must be a string and "args" an object'
    return ToolCall(obj["tool"], obj["args"]), None


# --------------------------------------------------------------------------- ReAct loop

Generate = Callable[[list[list[dict[str, str]]]], list[str]]


@dataclass
class Step:
    raw: str
    parse: ParseResult
    observation: str | None = None
    tool_error: bool = False


@dataclass
class Episode:
    """One conversation driven by `run_react`.

    `status` is "final" (a Final Answer), "failed" (a parse failure with `on_parse_failure="stop"`)
    or "max_steps". `failures` lists the failure kind of every failed step, in order.
    """

    messages: list[dict[str, str]]
    steps: list[Step] = field(default_factory=list)
    final_answer: str | None = None
    failures: list[str] = field(default_factory=list)
    status: Literal["running", "final", "failed", "max_steps"] = "running"

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [s.parse.call for s in self.steps if s.parse.kind == "call" and s.parse.call is not None]


def run_react(
    prompts: list[list[dict[str, str]]],
    registry: ToolRegistry,
    generate: Generate,
    max_steps: int,
    *,
    observation_role: str = "user",
    on_parse_failure: Literal["stop", "continue"] = "stop",
) -> list[Episode]:
    """Run one ReAct episode per prompt; each step makes ONE `generate` call for all unfinished ones.

    A parse failure is recorded in `Episode.failures`; with `on_parse_failure="stop"` (the default,
    what evaluation wants: a malformed turn is a failed episode) the episode ends, with "continue"
    the parser's error goes back as an observation and the model may repair its output. Tool errors
    are observations and never end an episode. The assistant turn appended to the conversation is
    `ParseResult.turn`, so text the model hallucinates after its Action block is not kept.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    episodes = [Episode(messages=[dict(m) for m in p]) for p in prompts]
    for _ in range(max_steps):
        active = [ep for ep in episodes if ep.status == "running"]
        if not active:
            break
        outputs = generate([list(ep.messages) for ep in active])
        if len(outputs) != len(active):
            raise ValueError(f"generate returned {len(outputs)} texts for {len(active)} conversations")
        for ep, raw in zip(active, outputs, strict=True):
            _advance(ep, raw, registry, observation_role, on_parse_failure)
    for ep in episodes:
        if ep.status == "running":
            ep.status = "max_steps"
    return episodes


def _advance(ep: Episode, raw: str, registry: ToolRegistry, obs_role: str, on_failure: str) -> None:
    result = parse_response(raw, registry)
    ep.messages.append({"role": "assistant", "content": result.turn or raw})
    if result.kind == "final":
        ep.steps.append(Step(raw, result))
        ep.final_answer, ep.status = result.final_answer, "final"
        return
    if result.kind == "call":
        assert result.call is not None
        observation, ok = registry.execute_checked(result.call)
        ep.steps.append(Step(raw, result, observation, tool_error=not ok))
        ep.messages.append({"role": obs_role, "content": f"Observation: {observation}"})
        return
    ep.failures.append(result.kind)
    if on_failure == "stop":
        ep.steps.append(Step(raw, result))
        ep.status = "failed"
        return
    observation = f"Error: {result.error}. Reply with a Thought and an Action, or a Final Answer."
    ep.steps.append(Step(raw, result, observation, tool_error=False))
    ep.messages.append({"role": obs_role, "content": f"Observation: {observation}"})


# --------------------------------------------------------------------------- HF generation


def hf_generate_fn(
    model: Any,
    tokenizer: Any,
    *,
    max_new_tokens: int = 128,
    tools: Sequence[Tool | dict[str, Any]] | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> Generate:
    """A `generate` for `run_react` backed by a Hugging Face causal LM: one `model.generate` per call.

    Conversations are rendered with the chat template (`add_generation_prompt=True`, `tools` passed
    through as schemas) and LEFT-padded, which batched decoder-only generation needs; the
    tokenizer's padding side is restored afterwards. Only the new tokens are decoded.
    """
    import torch

    schemas = [t.schema() if isinstance(t, Tool) else t for t in tools] if tools else None
    if tokenizer.pad_token is None:  # padding a batch needs one; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
    )

    def generate(conversations: list[list[dict[str, str]]]) -> list[str]:
        if not conversations:
            return []
        texts = [
            tokenizer.apply_chat_template(c, tools=schemas, add_generation_prompt=True, tokenize=False)
            for c in conversations
        ]
        old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
        try:
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = old_side
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        return tokenizer.batch_decode(new, skip_special_tokens=True)

    return generate
