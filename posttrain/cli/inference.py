"""The commands that use a trained model: generate, chat, serve and eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from posttrain.cli.options import AdapterOpt, ModelOpt, console, writable_file

GateScorerOpt = Annotated[
    Literal["model", "base", "trained"],
    typer.Option(
        "--relevance-gate-scorer",
        help="With --relevance-gate: which model scores relevance: the one under test, its base model "
        "with the adapter off (sharper at high must-call: posttrain.toolcall.relevance), or the scorer an "
        "align run trained for the gate (--relevance-adapter).",
    ),
]
RelevanceAdapterOpt = Annotated[
    Path | None,
    typer.Option(
        "--relevance-adapter",
        help="With --relevance-gate-scorer trained: the trained scorer's directory (default: the "
        "relevance_adapter/ beside --adapter, where posttrain align saves it).",
    ),
]
RerankScorerOpt = Annotated[
    Literal["model", "base", "trained"],
    typer.Option(
        "--rerank-scorer",
        help="With --rerank-arguments: whose channel re-reads the arguments: the model under test, its "
        "base model with the adapter off, or the trained gate scorer (needs --relevance-gate-scorer "
        "trained). posttrain align's evaluation.rerank_scorer.",
    ),
]
RerankPolicyWeightOpt = Annotated[
    float,
    typer.Option(
        "--rerank-policy-weight",
        min=0.0,
        help="With --rerank-arguments: also weigh the model's own likelihood of each edit that keeps "
        "the call's arguments (values, swaps) at this weight; 0 is off. posttrain align's "
        "evaluation.rerank_policy_weight (0.5 in preset align_tool_use).",
    ),
]
GateKeepOpt = Annotated[
    float,
    typer.Option(
        "--relevance-gate-keep",
        min=0.01,
        max=1.0,
        help="With --relevance-gate auto: the share of validation-family calls the threshold lets through.",
    ),
]


def generate(
    input: Annotated[
        Path, typer.Option("--input", "-i", help="JSONL of prompts: prompt | messages | instruction.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL to write, one row per input row.")],
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate per prompt.")] = 128,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batched generate call.")] = 16,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
) -> None:
    """Batched, left-padded generation over a JSONL file of prompts."""
    from posttrain.pipelines.chat import run_generate

    writable_file(output, "--output")

    n = run_generate(input, output, model, adapter, max_new_tokens, batch_size, temperature)
    console.print(f"wrote {n} completions to {output}")


def chat(
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per reply.")] = 256,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    tools: Annotated[
        str | None,
        typer.Option(
            "--tools",
            help="tool_use (the task's tools) or a file of OpenAI function specs whose entry_point "
            "(module:function) runs each tool; every step is shown.",
        ),
    ] = None,
    max_steps: Annotated[int, typer.Option(min=1, help="With --tools: ReAct steps per reply.")] = 6,
) -> None:
    """Interactive chat with history; /reset clears it, /quit leaves."""
    from posttrain.pipelines.chat import run_chat

    run_chat(model, adapter, max_new_tokens, system, tools=tools, max_steps=max_steps)


def serve(
    model: ModelOpt = None,
    adapter: Annotated[Path | None, typer.Option(help="PEFT adapter directory (merged at load).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port (0: any free port, printed at start).")
    ] = 8000,
    served_model_name: Annotated[
        str | None, typer.Option(help="Name clients send as `model` (default: adapter path, else --model).")
    ] = None,
    tool_prompt: Annotated[
        str | None,
        typer.Option(
            "--tool-prompt",
            help="How request tools reach the model: compact (what align and quickstart train on), full, "
            "or chat_template (apply_chat_template(tools=), <tool_call> replies). Default: the "
            "adapter's own (chat_template for data.tool_format=chat_template adapters, else compact).",
        ),
    ] = None,
    max_queue: Annotated[
        int,
        typer.Option(
            min=0, help="Requests that may wait behind the one generating; one more gets 503 + Retry-After."
        ),
    ] = 8,  # serve_queue.DEFAULT_MAX_QUEUE, spelled out so --help does not import the server
    constrain_tools: Annotated[
        bool,
        typer.Option(
            "--constrain-tools",
            help="With tools and tool_choice auto: decode each turn inside the tools' grammar (a call of "
            "an offered tool with schema-valid arguments, or a final answer). Thought→Action only.",
        ),
    ] = False,
    relevance_gate: Annotated[
        str | None,
        typer.Option(
            "--relevance-gate",
            help="With --constrain-tools: call only the offered tool the last user turn is most about, and "
            "none (a plain answer) when its relevance score is under this threshold; auto sets it for the "
            "model at start (posttrain's validation tool families, --relevance-gate-keep of calls kept).",
        ),
    ] = None,
    relevance_gate_scorer: GateScorerOpt = "model",
    relevance_gate_keep: GateKeepOpt = 0.9,
    relevance_adapter: RelevanceAdapterOpt = None,
    rerank_arguments: Annotated[
        bool,
        typer.Option(
            "--rerank-arguments",
            help="With tools: re-read each call's arguments with the model before returning it (of the "
            "call and its single schema-valid edits, the one the last user turn is likeliest under).",
        ),
    ] = False,
    rerank_scorer: RerankScorerOpt = "model",
    rerank_policy_weight: RerankPolicyWeightOpt = 0.0,
) -> None:
    """OpenAI-compatible server (/v1/chat/completions, /v1/models) with JSON-schema constrained output,
    tool calls and streaming; one request at a time, --max-queue more waiting."""
    from posttrain.pipelines.serve import run_serve

    run_serve(
        model,
        adapter,
        host,
        port,
        served_model_name,
        tool_prompt,
        max_queue,
        constrain_tools,
        _gate_option(relevance_gate),
        rerank_arguments,
        relevance_gate_scorer,
        relevance_gate_keep,
        relevance_adapter,
        rerank_scorer,
        rerank_policy_weight,
    )


def eval_(
    task: Annotated[str, typer.Option("--task", help="tool_use or meetings.")],
    model: ModelOpt = None,
    adapter: Annotated[
        Path | None, typer.Option(help="PEFT adapter directory (default: base alone).")
    ] = None,
    split: Annotated[str, typer.Option(help="tool_use: indist, heldout or all; meetings: heldout.")] = "all",
    n: Annotated[
        int, typer.Option("--n", min=1, help="Episodes per split (tool_use) or scenarios (meetings).")
    ] = 24,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per generated turn.")] = 96,
    max_steps: Annotated[int, typer.Option(min=1, help="ReAct turns per episode.")] = 6,
    batch_size: Annotated[int, typer.Option(min=1, help="Conversations per batched generate call.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the held-out data (align holds out 1000).")] = 1000,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write figures + records as JSON.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="tool_use: your rows (JSONL/JSON/CSV: messages|prompt, tools?, gold) instead of the "
            "built-in splits; scored by AST accuracy.",
        ),
    ] = None,
    tools: Annotated[
        Path | None,
        typer.Option("--tools", help="With --data: tool specs (JSON/JSONL/YAML) for rows without their own."),
    ] = None,
    constrained: Annotated[
        bool,
        typer.Option(
            "--constrained",
            help="tool_use: decode each turn inside its tools' grammar (a Thought, then a call of an "
            "offered tool with schema-valid arguments, or a final answer).",
        ),
    ] = False,
    relevance_gate: Annotated[
        str | None,
        typer.Option(
            "--relevance-gate",
            help="tool_use, with --constrained: call only the offered tool the request is most about, and "
            "none when its relevance score (nats per request token) is under this threshold; auto sets "
            "it on posttrain's validation tool families (--relevance-gate-keep of calls kept).",
        ),
    ] = None,
    relevance_gate_scorer: GateScorerOpt = "model",
    relevance_gate_keep: GateKeepOpt = 0.9,
    relevance_adapter: RelevanceAdapterOpt = None,
    rerank_arguments: Annotated[
        bool,
        typer.Option(
            "--rerank-arguments",
            help="tool_use: re-read each call's arguments with the model: of the call and its single "
            "schema-valid edits (an optional argument dropped or added, another enum value, another "
            "number or name of the request, two arguments swapped), keep the one the request is "
            "likeliest under.",
        ),
    ] = False,
    rerank_scorer: RerankScorerOpt = "model",
    rerank_policy_weight: RerankPolicyWeightOpt = 0.0,
) -> None:
    """Held-out metrics of a model or adapter on an align task, each with n and a bootstrap 95% CI;
    with --data, on your own tool-use rows."""
    from posttrain.pipelines.evaluate import run_eval

    if output is not None:
        writable_file(output, "--output")
    result = run_eval(
        task,
        model,
        adapter,
        split,
        n,
        max_new_tokens=max_new_tokens,
        max_steps=max_steps,
        batch_size=batch_size,
        seed=seed,
        output=output,
        data=data,
        tools=tools,
        constrained=constrained,
        relevance_gate=_gate_option(relevance_gate),
        rerank_arguments=rerank_arguments,
        relevance_gate_scorer=relevance_gate_scorer,
        relevance_gate_keep=relevance_gate_keep,
        relevance_adapter=relevance_adapter,
        rerank_scorer=rerank_scorer,
        rerank_policy_weight=rerank_policy_weight,
    )
    console.print(result["table"])
    if output is not None:
        console.print(f"wrote {output}")


def _gate_option(value: str | None) -> float | Literal["auto"] | None:
    """--relevance-gate: a number or auto (a UsageError, exit 2, otherwise)."""
    if value is None or value == "auto":
        return value  # type: ignore[return-value]
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"a number or auto, got {value!r}", param_hint="--relevance-gate") from None
