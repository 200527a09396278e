"""`posttrain generate` (batched file inference) and `posttrain chat` (a REPL)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.markup import escape

from posttrain.errors import DataError, PosttrainError
from posttrain.inference import generate_batch
from posttrain.models import DEFAULT_MODEL, load_for_inference
from posttrain.rundir import adapter_base_model, adapter_meta, adapter_tool_format
from posttrain.tasks.loader import read_records
from posttrain.tasks.tool_use.chat_format import ChatToolFormat, call_message, chat_tool_format
from posttrain.toolcall import Generate, Step, ToolRegistry


def _base_for(model: str | None, adapter: Path | None) -> str:
    if model:
        return model
    return (adapter_base_model(adapter) if adapter is not None else None) or DEFAULT_MODEL


def read_prompts(path: Path) -> list[list[dict]]:
    """Conversations from rows with `messages`, `prompt` (text or messages) or `instruction` (+ `input`)."""
    out = []
    for rec in read_records(path):
        row = rec.data
        if "messages" in row or isinstance(row.get("prompt"), list):
            turns = row.get("messages", row.get("prompt"))
            if not isinstance(turns, list) or not all(isinstance(t, dict) and "content" in t for t in turns):
                raise DataError(str(path), rec.line, "messages", "must be a list of {role, content}")
            if turns and turns[-1].get("role") == "assistant":
                turns = turns[:-1]  # generate the answer, don't echo the reference one
            out.append(turns)
        elif isinstance(row.get("prompt"), str):
            out.append([{"role": "user", "content": row["prompt"]}])
        elif isinstance(row.get("instruction"), str):
            extra = row.get("input") or ""
            out.append([{"role": "user", "content": row["instruction"] + (f"\n\n{extra}" if extra else "")}])
        else:
            raise DataError(
                str(path), rec.line, "prompt", "is missing (expected prompt, messages or instruction)"
            )
    return out


def run_generate(
    input_path: Path,
    output_path: Path,
    model: str | None,
    adapter: Path | None,
    max_new_tokens: int,
    batch_size: int,
    temperature: float,
) -> int:
    """Write each input row back as it came (a `prompt` string stays a string, `messages` stay
    messages) with the generated `completion` added; a `completion` the row already had is kept as
    `reference_completion`. Returns how many rows."""
    from rich.progress import Progress

    prompts = read_prompts(input_path)
    llm, tok = load_for_inference(_base_for(model, adapter), adapter)
    with Progress() as bar:
        task = bar.add_task("generating", total=len(prompts))
        outs = generate_batch(
            llm,
            tok,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            do_sample=temperature > 0,
            temperature=max(temperature, 1e-5),
            progress=lambda n: bar.advance(task, n),
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w") as fh:
        for rec, completion in zip(read_records(input_path), outs, strict=True):
            row = dict(rec.data)
            if "completion" in row:
                row["reference_completion"] = row.pop("completion")
            fh.write(json.dumps({**row, "completion": completion}) + "\n")
    return len(outs)


def run_chat(
    model: str | None,
    adapter: Path | None,
    max_new_tokens: int,
    system: str | None,
    tools: str | None = None,
    max_steps: int = 6,
) -> None:
    """Read-eval-print loop over stdin; keeps the conversation until /reset.

    With `tools="tool_use"` every reply runs the ReAct loop over the tool_use tools (calculator,
    search, calendar, unit_converter, weather) and prints each step as it happens; with a file
    of OpenAI function specs (`posttrain.toolcall.load_tools`) it runs the user's tools, each
    through its `entry_point` (`module:function`; a tool without one answers that it cannot run).
    An adapter trained with `data.tool_format: chat_template` is prompted and parsed in its chat
    template's own tool format instead (`_template_tool_chat`).
    """
    from rich.console import Console

    console = Console()
    user_tools = None
    if tools is not None and tools != "tool_use":
        from posttrain.toolcall import load_tools

        user_tools = load_tools(tools)  # a bad file fails here, before the model loads
    base = _base_for(model, adapter)
    llm, tok = load_for_inference(base, adapter)
    if tools is not None:
        from posttrain.inference import generator

        generate = generator(llm, tok, max_new_tokens, batch_size=1)
        with _tool_registry(user_tools) as (registry, label, default_system):
            names = ", ".join(registry)
            console.print(f"[dim]posttrain chat with {escape(label)} ({names}): /reset, /quit[/]")
            if adapter_tool_format(adapter) == "chat_template":
                fmt = chat_tool_format(tok, base)  # a template that ignores tools fails here
                start = [{"role": "system", "content": system}] if system else []
                _template_tool_chat(console, generate, fmt, registry, start, max_steps)
            else:
                prompt = system or default_system(_prompt_variant(adapter))
                _tool_chat(console, generate, registry, prompt, max_steps)
        return
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    start = list(history)
    console.print("[dim]posttrain chat: /reset clears the history, /quit leaves[/]")
    for line in _user_turns(console):
        if line is None:
            history = list(start)
            continue
        history.append({"role": "user", "content": line})
        reply = generate_batch(llm, tok, [history], max_new_tokens=max_new_tokens)[0]
        history.append({"role": "assistant", "content": reply})
        console.print(f"[bold cyan]model>[/] {reply}")


def _user_turns(console: Any) -> Iterator[str | None]:
    """What the user types, a line at a time (None for /reset), until /quit or the end of input.

    Blank lines are skipped and an unknown /command is answered here, so both REPLs share the rules.
    """
    while True:
        try:
            line = console.input("[bold]you> [/]").strip()
        except EOFError:
            return
        if line in ("/quit", "/exit"):
            return
        if line == "/reset":
            console.print("[dim]history cleared[/]")
            yield None
        elif line.startswith("/"):
            console.print(f"[red]{PosttrainError(f'unknown command {line} (use /reset or /quit)')}[/]")
        elif line:
            yield line


def _prompt_variant(adapter: Path | None) -> bool:
    """Whether the adapter was trained with the compact system prompt (align's default)."""
    return bool(adapter_meta(adapter).get("compact_prompt", True))


@contextlib.contextmanager
def _tool_registry(user_tools: list[Any] | None) -> Iterator[tuple[Any, str, Any]]:
    """(registry, label, system prompt by prompt variant): the user's tools, else tool_use's
    held-out tools with their calendar in a temporary folder."""
    from posttrain.toolcall import ToolRegistry, format_system_prompt

    if user_tools is not None:
        yield ToolRegistry(user_tools), "your tools", lambda compact: format_system_prompt(user_tools)
        return
    from posttrain.tasks.tool_use import build_registry, tool_use_system_prompt

    with tempfile.TemporaryDirectory(prefix="posttrain-chat-") as tmp:
        yield (
            build_registry("heldout", Path(tmp)),
            "tool_use",
            lambda compact: tool_use_system_prompt("heldout", compact),
        )


def _tool_chat(console: Any, generate: Generate, registry: ToolRegistry, system: str, max_steps: int) -> None:
    from posttrain.toolcall import run_react

    def turn(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Step]:
        # A malformed turn goes back to the model as an error observation instead of ending the reply.
        episode = run_react([history], registry, generate, 1, on_parse_failure="continue")[0]
        return episode.messages, episode.steps[0]

    _tool_repl(console, [{"role": "system", "content": system}], max_steps, turn)


def _template_tool_chat(
    console: Any,
    generate: Generate,
    fmt: ChatToolFormat,
    registry: ToolRegistry,
    start: list[dict[str, Any]],
    max_steps: int,
) -> None:
    """The tool REPL in a chat template's own format: the history is kept as OpenAI messages
    (assistant `tool_calls`, `tool` results), so each prompt is exactly what
    `apply_chat_template(history, tools=...)` renders, as the adapter was trained."""

    def turn(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Step]:
        return history, template_tool_step(history, registry, fmt, generate)

    _tool_repl(console, start, max_steps, turn)


def _tool_repl(
    console: Any,
    start: list[dict[str, Any]],
    max_steps: int,
    turn: Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], Step]],
) -> None:
    """Both tool REPLs: per user line, one model turn at a time (so each call shows as it happens)
    until a final answer, a turn with nothing to observe, or `max_steps`; /reset restarts."""
    history = list(start)
    for line in _user_turns(console):
        if line is None:
            history = list(start)
            continue
        history.append({"role": "user", "content": line})
        for number in range(1, max_steps + 1):
            history, step = turn(history)
            _show_step(console, number, step)
            if step.parse.kind == "final":
                console.print(f"[bold cyan]model>[/] {step.parse.final_answer}")
                break
            if step.observation is None:
                break  # a broken chat-template call: that format has no turn to send an error back
        else:
            console.print(f"[yellow]no Final Answer after {max_steps} steps[/]")


def template_tool_step(
    history: list[dict[str, Any]], registry: ToolRegistry, fmt: ChatToolFormat, generate: Generate
) -> Step:
    """One assistant turn of `history` (OpenAI messages, extended in place): a call is run and
    appended with its `tool` result as the template expects them; a final answer is appended as
    plain content; a reply that parses as neither is left out of the history."""
    raw = generate([fmt.plain(history, registry.schemas())])[0]
    parse = fmt.parse(raw, registry)
    if parse.kind == "final":
        history.append({"role": "assistant", "content": parse.final_answer})
        return Step(raw, parse)
    if parse.kind != "call" or parse.call is None:
        return Step(raw, parse)
    observation, ok = registry.execute_checked(parse.call)
    history.append(call_message(parse.call.name, parse.call.args))
    history.append({"role": "tool", "name": parse.call.name, "content": observation})
    return Step(raw, parse, observation, tool_error=not ok)


def _show_step(console: Any, number: int, step: Any) -> None:
    parse = step.parse
    head = f"[dim]step {number}[/]"
    if parse.kind in ("call", "final"):
        # the chat-template format has no Thought: its step line is the number alone
        thought = f" Thought: {escape(parse.thought)}" if parse.thought else ""
        console.print(f"{head}{thought}", highlight=False)
        if parse.kind == "call":
            call = escape(f"{parse.call.name}({json.dumps(parse.call.args)})")
            console.print(f"  [green]-> {call}[/]", highlight=False)
            console.print(f"  [blue]<- {escape(step.observation or '')}[/]", highlight=False)
    else:
        console.print(f"{head} [red]{parse.kind}[/]: {escape(parse.error or '')}", highlight=False)
        console.print(f"  {escape(repr(step.raw[:300]))}", highlight=False)
