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
- Errors have OpenAI's shape `{"error": {"message", "type", "param", "code"}}`: 400 for any
  invalid request (validation included, as OpenAI and vLLM answer), 404 `model_not_found`
  for a model name this server does not serve. Streaming, tools, logprobs, logit_bias and
  penalties are refused with 400 rather than silently ignored.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from posttrain.constrained import (
    SchemaError,
    chat_prompt_ids,
    context_length,
    grammar_tokenizer,
    json_schema_grammar,
    sample,
)
from posttrain.errors import PosttrainError

MAX_N = 16  # choices per request; each is a full generation under the lock
MAX_STOP = 4  # OpenAI's limit on stop strings
DEFAULT_MAX_TOKENS = 4096  # only for models whose config names no context length


# ---------------------------------------------------------------- the wire format


class _Wire(BaseModel):
    # OpenAI clients send many optional fields (user, metadata, store, stream_options, ...) that
    # do not change the answer; they are ignored, as OpenAI and vLLM do. Fields that would change
    # the answer are declared below and refused when set (`_refuse_unsupported`).
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ChatMessage(_Wire):
    """One turn. Text content parts are joined with newlines; `developer` is sent as `system`."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[Any] | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role in ("tool", "function"):
            raise ValueError(f"'{role}' messages are not supported: posttrain serve has no tool calling")
        if role not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"'{role}' is not a role (use system, developer, user or assistant)")
        return role

    @field_validator("content")
    @classmethod
    def _text_parts(cls, content: str | list[dict[str, Any]] | None) -> str | None:
        if not isinstance(content, list):
            return content
        texts = []
        for part in content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"only text content parts are supported, got type '{part.get('type')}'")
            texts.append(part["text"])
        return "\n".join(texts)

    @model_validator(mode="after")
    def _has_text(self) -> ChatMessage:
        if self.tool_calls:
            raise ValueError("tool_calls are not supported: posttrain serve has no tool calling")
        if self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        return self

    def for_template(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": str(self.content)}


class JSONSchemaFormat(_Wire):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="OpenAI's rule: a-z, 0-9, _ or -.")
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = Field(None, description="Accepted; the schema is always enforced.")


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object: {name, schema, strict}")
        return self


class ChatRequest(_Wire):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Wins over max_tokens.")
    n: int | None = Field(None, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    response_format: ResponseFormat | None = None
    # Declared only to be refused: each would change the answer.
    stream: bool | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, got {len(stops)}")
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops


class APIError(Exception):
    """An error answered in OpenAI's shape; `param` names the request field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


def _refuse_unsupported(req: ChatRequest) -> None:
    refused = {
        "stream": (req.stream, "streaming is not supported: send stream=false (or leave it out)"),
        "tools": (req.tools, "tools are not supported: posttrain serve has no tool calling"),
        "functions": (req.functions, "functions are not supported: posttrain serve has no tool calling"),
        "logprobs": (req.logprobs, "logprobs are not supported"),
        "top_logprobs": (req.top_logprobs, "top_logprobs are not supported"),
        "logit_bias": (req.logit_bias, "logit_bias is not supported"),
        "presence_penalty": (req.presence_penalty, "presence_penalty is not supported (send 0)"),
        "frequency_penalty": (req.frequency_penalty, "frequency_penalty is not supported (send 0)"),
    }
    for param, (value, message) in refused.items():
        if value:  # None, False, 0, [] and {} mean "not used"
            raise APIError(400, message, param)


def _validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 detail as one OpenAI-style 400 message naming the fields."""
    parts, first_param = [], None
    for err in exc.errors()[:3]:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            return APIError(400, f"the request body is not valid JSON: {reason}".rstrip(": "))
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        param = ".".join(loc) or None
        first_param = first_param or param
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{param}: {msg}" if param else msg)
    return APIError(400, "; ".join(parts) or "invalid request", first_param)


# ---------------------------------------------------------------- the app


class ChatService:
    """Answers validated chat requests with one model, one request at a time (a lock).

    Building llguidance's view of the tokenizer (~0.5 s) happens here, once; a tokenizer it
    cannot read (not a fast tokenizer) still serves plain text and answers JSON requests 400.
    """

    def __init__(self, model: Any, tokenizer: Any, model_name: str) -> None:
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.lock = threading.Lock()
        self.max_context = context_length(model)
        try:
            self.lltok, self.lltok_problem = grammar_tokenizer(tokenizer), ""
        except (ValueError, PosttrainError) as exc:
            self.lltok, self.lltok_problem = None, str(exc)

    def grammar_for(self, fmt: ResponseFormat | None) -> str | None:
        if fmt is None or fmt.type == "text":
            return None
        if self.lltok is None:
            message = f"response_format needs constrained decoding: {self.lltok_problem}"
            raise APIError(400, message, "response_format")
        schema = fmt.json_schema.schema_ if fmt.json_schema is not None else {"type": "object"}
        try:
            return json_schema_grammar(schema, self.lltok)
        except SchemaError as exc:
            raise APIError(400, f"invalid JSON schema: {exc}", "response_format.json_schema.schema") from exc

    def prompt_for(self, req: ChatRequest) -> list[int]:
        import jinja2

        try:
            return chat_prompt_ids(self.tokenizer, [m.for_template() for m in req.messages])
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

    def complete(self, req: ChatRequest) -> dict[str, Any]:
        """The chat.completion object for `req`; raises APIError for what the request got wrong."""
        import torch

        _refuse_unsupported(req)
        if req.model != self.model_name:
            raise _unknown_model(req.model, self.model_name)
        grammar = self.grammar_for(req.response_format)
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        generator = torch.Generator().manual_seed(seed % 2**64)
        temperature = 1.0 if req.temperature is None else req.temperature
        top_p = 1.0 if req.top_p is None else req.top_p
        # The tokenizer too: a HF fast tokenizer shared across threads can raise "Already borrowed".
        with self.lock:
            prompt = self.prompt_for(req)
            max_new = self.budget(req, len(prompt))
            samples = [
                sample(
                    self.model,
                    self.tokenizer,
                    prompt,
                    max_new_tokens=max_new,
                    temperature=temperature,
                    top_p=top_p,
                    generator=generator,
                    grammar=grammar,
                    lltok=self.lltok,
                    stop=req.stop or [],
                )
                for _ in range(req.n or 1)
            ]
        completion_tokens = sum(s.tokens for s in samples)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": s.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": s.finish_reason,
                }
                for i, s in enumerate(samples)
            ],
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": completion_tokens,
                "total_tokens": len(prompt) + completion_tokens,
            },
            "system_fingerprint": None,
        }


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in OpenAI's shape; FastAPI's 422 validation detail becomes a 400."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

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


def create_app(model: Any, tokenizer: Any, model_name: str) -> FastAPI:
    """The FastAPI app serving `model` (eval mode, e.g. from `load_for_inference`) as `model_name`.

    Requests are generated one at a time; the model is never trained or moved. Run it with
    uvicorn (`run_serve`), or in a thread for tests (`serve_in_thread`).
    """
    app = FastAPI(title="posttrain serve", description="OpenAI-compatible chat completions.")
    _install_error_handlers(app)
    service = ChatService(model, tokenizer, model_name)
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
    @app.post("/v1/chat/completions")
    def chat_completions(req: ChatRequest) -> dict[str, Any]:
        return service.complete(req)

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
) -> None:
    """Load the model (with the adapter merged) and serve it until Ctrl-C.

    The served name is `served_model_name`, else the adapter path as given, else the model spec;
    clients must send it as `model`. Binds before loading, so a taken port fails fast.
    """
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
        app = create_app(llm, tok, name)
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
