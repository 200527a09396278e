"""`posttrain serve`: an OpenAI-compatible HTTP server for a base model or a trained adapter.

Endpoints: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`.
The official `openai` client, the `openai` agent backend and any OpenAI-compatible tool talk to
it unchanged. What a caller must know:

- One request is generated at a time (a lock around the model); others wait their turn. It is
  a server for one user, a test suite or an agent team, not a throughput server (use vLLM).
- `response_format` `json_schema` and `json_object` are enforced token by token with
  llguidance, so even a weak model answers with JSON that follows the schema (unless
  `max_tokens` cuts it: `finish_reason` is then "length"). The JSON is compact, and numbers
  without a `multipleOf` are written with at most 4 decimals (7 when the schema's maximum is
  at most 0.01) so a weak model cannot loop on digits; give a `multipleOf` to choose another.
- Sampling follows OpenAI's defaults: temperature 1, top_p 1; temperature 0 is greedy.
  `seed` makes a request reproducible; `n` choices come from one seeded generator in turn.
  `max_tokens` defaults to, and is capped at, what is left of the model's context; messages
  that fill the context alone are refused (400 `context_length_exceeded`).
- Tools (`tools`, `tool_choice`): listed in the system prompt the adapter was trained on, the
  reply parsed from the Thought→Action format into `tool_calls` (see `serve_tools`). "auto"
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

import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from posttrain.constrained import (
    Sample,
    SchemaError,
    chat_prompt_ids,
    context_length,
    grammar_tokenizer,
    json_schema_grammar,
    sample,
)
from posttrain.errors import PosttrainError
from posttrain.pipelines.serve_schema import (
    APIError,
    ChatRequest,
    NamedToolChoice,
    refuse_unsupported,
    validation_error,
)
from posttrain.pipelines.serve_stream import TextStream, completion_chunks, sse_response, text_chunks
from posttrain.pipelines.serve_tools import (
    OBSERVATION,
    ToolPrompt,
    choice_name,
    forced_call_grammar,
    render_messages,
    reply_message,
    request_registry,
)
from posttrain.toolcall import ToolRegistry

DEFAULT_MAX_TOKENS = 4096  # only for models whose config names no context length


# ---------------------------------------------------------------- the app


@dataclass
class Plan:
    """A validated request, ready to sample: everything decided before the first token."""

    id: str
    created: int
    prompt: list[int]
    max_new: int
    n: int
    temperature: float
    top_p: float
    generator: Any
    grammar: str | None
    stop: list[str]
    registry: ToolRegistry | None
    choice: str


class ChatService:
    """Answers validated chat requests with one model, one request at a time (a lock).

    Building llguidance's view of the tokenizer (~0.5 s) happens here, once; a tokenizer it
    cannot read (not a fast tokenizer) still serves plain text and answers JSON requests 400.
    """

    def __init__(
        self, model: Any, tokenizer: Any, model_name: str, tool_prompt: ToolPrompt = "compact"
    ) -> None:
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.tool_prompt = tool_prompt
        self.lock = threading.Lock()
        self.max_context = context_length(model)
        try:
            self.lltok, self.lltok_problem = grammar_tokenizer(tokenizer), ""
        except (ValueError, PosttrainError) as exc:
            self.lltok, self.lltok_problem = None, str(exc)

    def _need_lltok(self, param: str) -> Any:
        if self.lltok is None:
            raise APIError(400, f"{param} needs constrained decoding: {self.lltok_problem}", param)
        return self.lltok

    def grammar_for(self, req: ChatRequest, registry: ToolRegistry | None, choice: str) -> str | None:
        if registry is not None and choice in ("required", "named"):
            only = req.tool_choice.function.name if isinstance(req.tool_choice, NamedToolChoice) else None
            return forced_call_grammar(registry, only, self._need_lltok("tool_choice"))
        fmt = req.response_format
        if fmt is None or fmt.type == "text":
            return None
        lltok = self._need_lltok("response_format")
        schema = fmt.json_schema.schema_ if fmt.json_schema is not None else {"type": "object"}
        try:
            return json_schema_grammar(schema, lltok)
        except SchemaError as exc:
            raise APIError(400, f"invalid JSON schema: {exc}", "response_format.json_schema.schema") from exc

    def prompt_for(self, messages: list[dict[str, str]]) -> list[int]:
        import jinja2

        try:
            return chat_prompt_ids(self.tokenizer, messages)
        except jinja2.TemplateError as exc:  # e.g. "roles must alternate user/assistant"
            message = f"the model's chat template rejected the messages: {exc}"
            raise APIError(400, message, "messages") from exc

    def budget(self, req: ChatRequest, prompt_tokens: int) -> int:
        wanted = req.max_completion_tokens or req.max_tokens
        if self.max_context is None:
            return wanted or DEFAULT_MAX_TOKENS
        room = self.max_context - prompt_tokens
        if room < 1:
            raise APIError(
                400,
                f"This model's maximum context length is {self.max_context} tokens, and the messages "
                f"take {prompt_tokens}. Please reduce the length of the messages.",
                "messages",
                "context_length_exceeded",
            )
        # Capped rather than refused, as llama.cpp and Ollama do: the answer ends with
        # finish_reason "length" where the context does.
        return min(wanted or room, room)

    def plan(self, req: ChatRequest) -> Plan:
        """Validate `req` against this server and turn it into a Plan; raises APIError."""
        import torch

        refuse_unsupported(req)
        if req.model != self.model_name:
            raise _unknown_model(req.model, self.model_name)
        registry, choice = request_registry(req), choice_name(req)
        messages = render_messages(req.messages, registry, self.tool_prompt)
        grammar = self.grammar_for(req, registry, choice)
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        # A trained agent goes on to imagine the tool's answer; the client has the real one.
        stop = list(req.stop or [])  # the validator turns a string into a list; None stays None
        if registry is not None and grammar is None:
            stop.append(OBSERVATION)
        # The tokenizer too: a HF fast tokenizer shared across threads can raise "Already borrowed".
        with self.lock:
            prompt = self.prompt_for(messages)
        return Plan(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            prompt=prompt,
            max_new=self.budget(req, len(prompt)),
            n=req.n or 1,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            generator=torch.Generator().manual_seed(seed % 2**64),
            grammar=grammar,
            stop=stop,
            registry=registry,
            choice=choice,
        )

    def run(self, plan: Plan, stream: TextStream | None = None) -> list[Sample]:
        """The plan's n samples, one after another from one seeded generator, under the lock."""
        samples = []
        with self.lock:
            for i in range(plan.n):
                if stream is not None:
                    stream.start(i)
                result = sample(
                    self.model,
                    self.tokenizer,
                    plan.prompt,
                    max_new_tokens=plan.max_new,
                    temperature=plan.temperature,
                    top_p=plan.top_p,
                    generator=plan.generator,
                    grammar=plan.grammar,
                    lltok=self.lltok,
                    stop=plan.stop,
                    on_token=None if stream is None else partial(stream.token, i),
                )
                if stream is not None:
                    stream.done(i, result)
                samples.append(result)
        return samples

    def completion(self, plan: Plan, samples: list[Sample]) -> dict[str, Any]:
        """The chat.completion object: plain text, or with tools the parsed turn (`serve_tools`)."""
        choices = []
        for i, s in enumerate(samples):
            message: dict[str, Any] = {"role": "assistant", "content": s.text, "refusal": None}
            finish: str | None = None
            if plan.registry is not None:
                message, finish = reply_message(s.text, plan.registry, plan.choice)
            choice = {
                "index": i,
                "message": message,
                "logprobs": None,
                "finish_reason": finish or s.finish_reason,
            }
            choices.append(choice)
        completion_tokens = sum(s.tokens for s in samples)
        return {
            "id": plan.id,
            "object": "chat.completion",
            "created": plan.created,
            "model": self.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": len(plan.prompt),
                "completion_tokens": completion_tokens,
                "total_tokens": len(plan.prompt) + completion_tokens,
            },
            "system_fingerprint": None,
        }

    def complete(self, req: ChatRequest) -> dict[str, Any]:
        """The chat.completion object for `req`; raises APIError for what the request got wrong."""
        plan = self.plan(req)
        return self.completion(plan, self.run(plan))

    def stream(self, req: ChatRequest) -> StreamingResponse:
        """`stream: true`: validated first (errors keep their status), then Server-Sent Events."""
        plan = self.plan(req)
        usage = bool(req.stream_options and req.stream_options.include_usage)
        if plan.registry is not None:  # a turn is a call or not only once it is whole
            return sse_response(completion_chunks(self.completion(plan, self.run(plan)), usage))
        head = {"id": plan.id, "created": plan.created, "model": self.model_name, "system_fingerprint": None}
        text = TextStream(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True), plan.stop)
        return sse_response(
            text_chunks(head, text, lambda: self.completion(plan, self.run(plan, text)), usage)
        )


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


def create_app(model: Any, tokenizer: Any, model_name: str, tool_prompt: ToolPrompt = "compact") -> FastAPI:
    """The FastAPI app serving `model` (eval mode, e.g. from `load_for_inference`) as `model_name`.

    `tool_prompt` is the system prompt tools are listed in: the one the adapter was trained on
    ("compact" for `posttrain align` and the quickstart, "full" for `posttrain data tool-use`).

    Requests are generated one at a time; the model is never trained or moved. Run it with
    uvicorn (`run_serve`), or in a thread for tests (`serve_in_thread`).
    """
    app = FastAPI(title="posttrain serve", description="OpenAI-compatible chat completions.")
    _install_error_handlers(app)
    service = ChatService(model, tokenizer, model_name, tool_prompt)
    card = {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "posttrain"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}")
    def get_model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise _unknown_model(model_id, model_name)
        return card

    # A plain `def`: FastAPI runs it in a worker thread, so the event loop keeps answering
    # /v1/models and /health while a generation holds the lock.
    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(req: ChatRequest) -> dict[str, Any] | StreamingResponse:
        return service.stream(req) if req.stream else service.complete(req)

    return app


def _unknown_model(asked: str, served: str) -> APIError:
    return APIError(
        404,
        f"The model `{asked}` does not exist: this server serves `{served}` "
        f"(for the agent backend: POSTTRAIN_AGENT_MODEL={served}).",
        "model",
        "model_not_found",
    )


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


def run_serve(
    model: str | None,
    adapter: Path | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str | None = None,
    tool_prompt: ToolPrompt = "compact",
) -> None:
    """Load the model (with the adapter merged) and serve it until Ctrl-C.

    The served name is `served_model_name`, else the adapter path as given, else the model spec;
    clients must send it as `model`. Binds before loading, so a taken port fails fast.
    `tool_prompt` lists a request's tools as the adapter was trained to read them (`create_app`).
    """
    if tool_prompt not in ("compact", "full"):
        raise PosttrainError(f"--tool-prompt must be compact or full, got '{tool_prompt}'")
    sock = bind_socket(host, port)  # before torch is even imported: a taken port fails in a second
    try:
        import uvicorn
        from rich.console import Console

        from posttrain.models import DEFAULT_MODEL, load_for_inference
        from posttrain.rundir import adapter_base_model

        console = Console()
        # As `posttrain chat` does: an adapter saved by posttrain remembers its base model.
        base = model or (adapter_base_model(adapter) if adapter is not None else None) or DEFAULT_MODEL
        llm, tok = load_for_inference(base, adapter)
        name = served_model_name or (str(adapter) if adapter is not None else base)
        app = create_app(llm, tok, name, tool_prompt)
        url = f"http://{host}:{sock.getsockname()[1]}/v1"
        what = f"{base} + adapter {adapter}" if adapter is not None else base
        console.print(
            f"serving [bold]{name}[/] ({what}) at {url}, one request at a time; Ctrl-C stops", soft_wrap=True
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
