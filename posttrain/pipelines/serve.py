"""`posttrain serve`: an OpenAI-compatible HTTP server for a base model or a trained adapter.

Endpoints: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`.
The official `openai` client, the `openai` agent backend and any OpenAI-compatible tool talk to
it unchanged. What a caller must know:

- One request is generated at a time; up to `max_queue` (default 8) wait their turn, first come
  first served, without holding a thread. One more is answered at once with 503, OpenAI's error
  shape (code `queue_full`) and `Retry-After` (seconds until the running generation is likely
  done, from recent ones; at least 1), which the openai client honours. `/health` and
  `/v1/models` never wait. A client that disconnects loses its queue place, or stops its
  generation at the next token. It is a server for one user, a test suite or an agent team, not
  a throughput server (use vLLM); `serve_queue` says why it queues rather than batches.
- `response_format` `json_schema` and `json_object` are enforced token by token with
  llguidance, so even a weak model answers with JSON that follows the schema (unless
  `max_tokens` cuts it: `finish_reason` is then "length"). The JSON is compact, and numbers
  without a `multipleOf` are written with at most 4 decimals (7 when the schema's maximum is
  at most 0.01) so a weak model cannot loop on digits; give a `multipleOf` to choose another.
- Sampling follows OpenAI's defaults: temperature 1, top_p 1; temperature 0 is greedy.
  `seed` makes a request reproducible; `n` choices come from one seeded generator in turn.
  `max_tokens` defaults to, and is capped at, what is left of the model's context; messages
  that fill the context alone are refused (400 `context_length_exceeded`, known only at the
  request's turn: the prompt is tokenized then, since the tokenizer is not shared).
- Tools (`tools`, `tool_choice`): listed in the system prompt the adapter was trained on, the
  reply parsed from the Thought→Action format into `tool_calls` (see `serve_tools`); an adapter
  trained in its chat template's tool format (`data.tool_format: chat_template`) is prompted with
  `apply_chat_template(tools=...)` and its `<tool_call>` turns parsed instead. "auto"
  lets the model choose; "required" and a named tool force one call of an offered tool with
  constrained decoding; "none" never returns `tool_calls`. One call per turn
  (`parallel_tool_calls` is accepted and has no effect).
- `stream: true` sends Server-Sent Events in OpenAI's chunk format; plain text as it is
  sampled, a turn with tools as one delta once it is whole (see `serve_stream`).
- Errors have OpenAI's shape `{"error": {"message", "type", "param", "code"}}`: 400 for any
  invalid request (validation included, as OpenAI and vLLM answer; a bad tool spec names
  `tools.<i>.function.<field>`), 404 `model_not_found` for a model name this server does not
  serve. The legacy `functions`, logprobs, logit_bias and penalties are refused with 400
  rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from posttrain.errors import ConfigError, PosttrainError
from posttrain.pipelines.serve_queue import DEFAULT_MAX_QUEUE, Admission, ClientGone, watch_client
from posttrain.pipelines.serve_schema import APIError, ChatRequest, validation_error
from posttrain.pipelines.serve_service import ChatService, Plan, unknown_model
from posttrain.pipelines.serve_stream import completion_chunks, sse_response
from posttrain.pipelines.serve_tools import TOOL_PROMPTS, ToolPrompt
from posttrain.rundir import adapter_tool_format, gate_scorer_adapter
from posttrain.toolcall.relevance import GateScorer, RelevanceGate
from posttrain.toolcall.rerank import check_rerank_scorer

# ---------------------------------------------------------------- the app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in OpenAI's shape; FastAPI's 422 validation detail becomes a 400."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        else:
            message = str(exc.detail)
        return APIError(exc.status_code, message).response()

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        message = f"internal error: {type(exc).__name__}: {exc}"[:500]
        return APIError(500, message, kind="server_error").response()


def create_app(
    model: Any,
    tokenizer: Any,
    model_name: str,
    tool_prompt: ToolPrompt = "compact",
    max_queue: int = DEFAULT_MAX_QUEUE,
    constrain_tools: bool = False,
    relevance_gate: RelevanceGate | None = None,
    rerank_arguments: bool = False,
    rerank_scorer: GateScorer = "model",
    rerank_policy_weight: float = 0.0,
) -> FastAPI:
    """The FastAPI app serving `model` (eval mode, e.g. from `load_for_inference`) as `model_name`.

    `tool_prompt` is how tools reach the model: the format the adapter was trained on ("compact"
    for `posttrain align` and the quickstart, "full" for `posttrain data tool-use`, "chat_template"
    for `data.tool_format: chat_template`; `serve_tool_prompt` picks it from the adapter).

    `constrain_tools` decodes a tool_choice "auto" turn inside the request's tool grammar
    (`toolcall.tool_turn_grammar`: the model still chooses between a call and an answer, but a call
    names an offered tool with schema-valid arguments); `relevance_gate` narrows that grammar to the
    tool the last user turn is about, or to a plain answer under the threshold (`toolcall.relevance`);
    `rerank_arguments` re-reads each returned call's arguments (`toolcall.rerank`) through
    `rerank_scorer`'s channel (the model's own, its base's, or the trained gate scorer's), and
    with `rerank_policy_weight` > 0 also by the model's own likelihood of the edited arguments.

    Requests are generated one at a time, `max_queue` more wait (FIFO), the next gets 503 with
    Retry-After; the model is never trained or moved. Run it with uvicorn (`run_serve`), or in a
    thread for tests (`serve_in_thread`).
    """
    app = FastAPI(title="posttrain serve", description="OpenAI-compatible chat completions.")
    _install_error_handlers(app)
    service = ChatService(
        model,
        tokenizer,
        model_name,
        tool_prompt,
        constrain_tools,
        relevance_gate,
        rerank_arguments,
        rerank_scorer,
        rerank_policy_weight,
    )
    admission = Admission(max_queue)
    watchers: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references to tasks
    card = {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "posttrain"}

    # `async def` on the event loop: these never wait for a worker thread, whatever generates.
    @app.get("/health")
    async def health() -> dict[str, Any]:
        q = admission
        return {"status": "ok", "generating": q.generating, "waiting": q.waiting, "max_queue": q.max_queue}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise unknown_model(model_id, model_name)
        return card

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        plan = await run_in_threadpool(service.plan, req)  # a bad request is answered before it queues
        return await _answer(service, admission, plan, req, request, watchers)

    return app


async def _answer(
    service: ChatService,
    admission: Admission,
    plan: Plan,
    req: ChatRequest,
    request: Request,
    watchers: set[asyncio.Task[None]],
) -> Any:
    """Queue for the model (503 when the queue is full), then generate; a client that leaves
    gives up its place or stops its generation at the next token."""
    ticket = admission.enter()
    handed_over = False  # a text stream's own thread hands the model on when it ends
    try:
        if not await admission.wait_turn(ticket, request.is_disconnected):
            return _client_gone()
        usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream and plan.registry is None:
            await run_in_threadpool(service.tokenize, plan)
            response, generation = service.start_stream(plan, usage, partial(admission.leave, ticket))
            handed_over = True
            _watch(request, generation.stream.closed, generation.done, watchers)
            return response
        cancel, done = threading.Event(), threading.Event()
        _watch(request, cancel, done, watchers)
        try:
            completion = await run_in_threadpool(service.complete, plan, cancel)
        except ClientGone:
            return _client_gone()
        finally:
            done.set()
        # With tools a turn is a call or not only once it is whole: streamed as one delta.
        return sse_response(completion_chunks(completion, usage)) if req.stream else completion
    finally:
        if not handed_over:
            admission.leave(ticket)


def _watch(
    request: Request, cancel: threading.Event, until: threading.Event, watchers: set[asyncio.Task[None]]
) -> None:
    task = asyncio.create_task(watch_client(request.is_disconnected, cancel, until))
    watchers.add(task)
    task.add_done_callback(watchers.discard)


def _client_gone() -> JSONResponse:
    # Nobody reads it (uvicorn drops writes to a closed connection); nginx's 499 names the case in logs.
    return APIError(499, "the client closed the request", kind="client_closed_request").response()


# ---------------------------------------------------------------- running it


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0 picks a free port); a taken port is a user error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PosttrainError(
            f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port)"
        ) from exc
    return sock


@contextmanager
def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0
) -> Iterator[str]:
    """Run `app` under uvicorn in a daemon thread; yields the base URL (`http://host:port/v1`)
    once the server accepts connections, and stops it on exit. For tests and notebooks."""
    import uvicorn

    sock = bind_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise PosttrainError(
                    f"the server did not start on {host}:{port} within {startup_timeout:.0f} s"
                )
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_tool_prompt(adapter: Path | None, asked: str | None) -> ToolPrompt:
    """The tool format to serve: `asked`, else the adapter's own (`chat_template` for an adapter
    trained with `data.tool_format: chat_template`, else `compact`). Asking a chat-template adapter
    for a Thought→Action prompt is an error: it would be prompted in a format it never saw and its
    calls never parsed. A base model or a Thought→Action adapter may be served in its chat
    template's format (a base Qwen model calls tools that way)."""
    if asked is not None and asked not in TOOL_PROMPTS:
        raise PosttrainError(f"--tool-prompt must be one of {', '.join(TOOL_PROMPTS)}, got '{asked}'")
    trained = adapter_tool_format(adapter)
    if asked is None:
        return "chat_template" if trained == "chat_template" else "compact"
    if trained == "chat_template" and asked != "chat_template":
        raise PosttrainError(
            f"{adapter}: this adapter was trained with data.tool_format=chat_template; --tool-prompt "
            f"{asked} would list tools in the Thought→Action format it never saw (leave --tool-prompt "
            "out, or give chat_template)"
        )
    return asked  # type: ignore[return-value]  # checked against TOOL_PROMPTS above


def _gate(
    setting: float | str,
    model: Any,
    tokenizer: Any,
    console: Any,
    scorer: GateScorer = "model",
    keep: float = 0.9,
) -> RelevanceGate:
    """The server's gate (`pool_align.gate_from`), its calibration said at start when "auto"."""
    from posttrain.inference import gate_channel
    from posttrain.tasks.tool_use.pool_align import gate_from

    gate, found = gate_from(setting, gate_channel(model, tokenizer, scorer), scorer, keep)
    if found is not None:
        console.print(
            f"relevance gate ({scorer}-scored): threshold {gate.threshold} (keeps "
            f"{found['call_rows_passing']:.0%} of calls, declines {found['no_call_rows_declined']:.0%} of "
            f"requests no tool fits: {found['families']} tool families)"
        )
    return gate


def run_serve(
    model: str | None,
    adapter: Path | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str | None = None,
    tool_prompt: ToolPrompt | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    constrain_tools: bool = False,
    relevance_gate: float | Literal["auto"] | None = None,
    rerank_arguments: bool = False,
    relevance_gate_scorer: GateScorer = "model",
    relevance_gate_keep: float = 0.9,
    relevance_adapter: Path | None = None,
    rerank_scorer: GateScorer = "model",
    rerank_policy_weight: float = 0.0,
) -> None:
    """Load the model (with the adapter merged) and serve it until Ctrl-C.

    The served name is `served_model_name`, else the adapter path as given, else the model spec;
    clients must send it as `model`. Binds before loading, so a taken port fails fast.
    `tool_prompt` lists a request's tools as the adapter was trained to read them (`create_app`;
    None: `serve_tool_prompt` reads it from the adapter); `max_queue` requests may wait behind the
    one generating; `constrain_tools`, `relevance_gate` and `rerank_arguments` as in `create_app`
    (a gate of "auto": calibrated on posttrain's validation tool families before serving,
    `calibrated_gate`, keeping `relevance_gate_keep` of their calls). `relevance_gate_scorer`
    "base" scores relevance with the adapter off (kept unmerged for it: `load_for_inference`),
    "trained" with an align run's trained scorer (`relevance_adapter`, by default the
    relevance_adapter/ beside `adapter`) loaded beside the model; `rerank_scorer` picks the
    rerank's channel the same way (trained: the gate's scorer, so it needs that gate), and
    `rerank_policy_weight` weighs the model's own likelihood in (`create_app`).
    """
    check_rerank_scorer(rerank_arguments, rerank_scorer, relevance_gate_scorer, relevance_gate)
    if rerank_policy_weight and not rerank_arguments:
        raise ConfigError("--rerank-policy-weight weighs the argument rerank: add --rerank-arguments")
    if rerank_policy_weight < 0:
        raise ConfigError(f"--rerank-policy-weight must be 0 or more, got {rerank_policy_weight}")
    scorer_dir = gate_scorer_adapter(relevance_gate_scorer, adapter, relevance_adapter, relevance_gate)
    tool_prompt = serve_tool_prompt(adapter, tool_prompt)
    if constrain_tools and tool_prompt == "chat_template":
        raise ConfigError(
            "--constrain-tools needs the Thought→Action tool format (a chat template's tool format "
            "cannot mark a plain answer); tool_choice required still forces a call in it"
        )
    if relevance_gate is not None and not constrain_tools:
        raise ConfigError("--relevance-gate acts through the tools' grammar: add --constrain-tools")
    if rerank_arguments and tool_prompt == "chat_template":
        raise ConfigError("--rerank-arguments reads Thought→Action calls, not a chat template's tool calls")
    if max_queue < 0:
        raise PosttrainError(f"--max-queue must be 0 or more, got {max_queue}")
    sock = bind_socket(host, port)  # before torch is even imported: a taken port fails in a second
    try:
        import uvicorn
        from rich.console import Console

        from posttrain.inference import RELEVANCE_ADAPTER
        from posttrain.models import DEFAULT_MODEL, load_for_inference
        from posttrain.rundir import adapter_base_model

        console = Console()
        # As `posttrain chat` does: an adapter saved by posttrain remembers its base model.
        base = model or (adapter_base_model(adapter) if adapter is not None else None) or DEFAULT_MODEL
        base_scored = (relevance_gate is not None and relevance_gate_scorer == "base") or (
            rerank_arguments and rerank_scorer == "base"
        )
        beside = {RELEVANCE_ADAPTER: scorer_dir} if scorer_dir is not None else None
        llm, tok = load_for_inference(base, adapter, keep_base=base_scored, beside=beside)
        name = served_model_name or (str(adapter) if adapter is not None else base)
        gate = None
        if relevance_gate is not None:
            gate = _gate(relevance_gate, llm, tok, console, relevance_gate_scorer, relevance_gate_keep)
        app = create_app(
            llm,
            tok,
            name,
            tool_prompt,
            max_queue,
            constrain_tools,
            gate,
            rerank_arguments,
            rerank_scorer,
            rerank_policy_weight,
        )
        url = f"http://{host}:{sock.getsockname()[1]}/v1"
        what = f"{base} + adapter {adapter}" if adapter is not None else base
        console.print(
            f"serving [bold]{name}[/] ({what}) at {url}, one request at a time, up to {max_queue} "
            "queued; Ctrl-C stops",
            soft_wrap=True,
        )
        console.print(
            f"agents: OPENAI_BASE_URL={url} POSTTRAIN_AGENT_MODEL={name}", highlight=False, soft_wrap=True
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="off"))
        server.run(sockets=[sock])
        if server.should_exit:
            # Stopped by Ctrl-C/SIGTERM. uvicorn re-raises the signal after its graceful shutdown,
            # but under Python 3.11's asyncio.run that only cancels a task that is already
            # finishing, so whether KeyboardInterrupt reaches `main` (exit 130) was a race.
            raise KeyboardInterrupt
    finally:
        sock.close()
