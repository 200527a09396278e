"""The wire format of `posttrain serve`: OpenAI's chat-completion request as pydantic models, and
errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`).

Validation happens here, before the request queues for the model, so a bad request never waits behind a
generation; every error names the request field at fault (`tools.0.function.parameters`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 16  # choices per request; each is a full generation under the lock
MAX_STOP = 4  # OpenAI's limit on stop strings
# OpenAI's rule plus dots: BFCL-style function names (`algebra.quadratic_roots`) are common.
TOOL_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class _Wire(BaseModel):
    # OpenAI clients send many optional fields (user, metadata, store, ...) that do not change
    # the answer; they are ignored, as OpenAI and vLLM do. Fields that would change the answer are
    # declared below and refused when set (`refuse_unsupported`).
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class CalledFunction(_Wire):
    name: str
    arguments: str = Field(description="A JSON object as a string, as OpenAI sends it.")

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, arguments: str) -> str:
        try:
            value = json.loads(arguments or "{}")
        except ValueError as exc:
            raise ValueError(f"arguments must be a JSON object as a string: {exc}") from exc
        if not isinstance(value, dict):
            raise ValueError("arguments must be a JSON object as a string")
        return arguments or "{}"

    def args(self) -> dict[str, Any]:
        return json.loads(self.arguments)


class AssistantToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(_Wire):
    """One turn. Text content parts are joined with newlines; `developer` is sent as `system`.

    An assistant turn may carry `tool_calls` (and `reasoning_content`, the Thought this server
    returned with them); a `tool` turn answers one of them by `tool_call_id`.
    """

    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[AssistantToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role == "function":
            raise ValueError("'function' messages are OpenAI's deprecated form: send 'tool' messages")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise ValueError(f"'{role}' is not a role (use system, developer, user, assistant or tool)")
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
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role} messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.content is None and not self.tool_calls:
            raise ValueError(f"a {self.role} message needs content")
        return self

    def for_template(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": str(self.content)}


class FunctionSpec(_Wire):
    name: str = Field(pattern=TOOL_NAME, description="a-z, A-Z, 0-9, _, . or -, at most 64.")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = Field(None, description="Accepted; a forced call always follows the schema.")

    @field_validator("parameters")
    @classmethod
    def _json_schema(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        if parameters.get("type") != "object":
            raise ValueError('parameters must be a JSON schema of "type": "object"')
        try:
            jsonschema.Draft202012Validator.check_schema(parameters)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path)
            raise ValueError(f"invalid JSON schema{f' at {where}' if where else ''}: {exc.message}") from None
        return parameters


class ToolSpec(_Wire):
    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Wire):
    include_usage: bool | None = None


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
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="Accepted; a turn holds at most one call.")
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # Declared only to be refused: each would change the answer.
    functions: list[Any] | None = None
    function_call: Any = None
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

    def tool_names(self) -> list[str]:
        return [t.function.name for t in self.tools or []]


class APIError(Exception):
    """An error answered in OpenAI's shape; `param` names the request field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers  # e.g. Retry-After on a 503

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def refuse_unsupported(req: ChatRequest) -> None:
    """400 for what this server cannot honour, and for tool fields that contradict each other."""
    legacy = "functions are OpenAI's deprecated form: send tools (and tool_choice)"
    refused = {
        "functions": (req.functions, legacy),
        "function_call": (req.function_call, legacy),
        "logprobs": (req.logprobs, "logprobs are not supported"),
        "top_logprobs": (req.top_logprobs, "top_logprobs are not supported"),
        "logit_bias": (req.logit_bias, "logit_bias is not supported"),
        "presence_penalty": (req.presence_penalty, "presence_penalty is not supported (send 0)"),
        "frequency_penalty": (req.frequency_penalty, "frequency_penalty is not supported (send 0)"),
    }
    for param, (value, message) in refused.items():
        if value:  # None, False, 0, [] and {} mean "not used"
            raise APIError(400, message, param)
    names = req.tool_names()
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise APIError(400, f"tool names must be unique: {', '.join(twice)} offered twice", "tools")
    if req.tool_choice is not None and not names:
        raise APIError(400, "tool_choice is only allowed when tools are specified", "tool_choice")
    if isinstance(req.tool_choice, NamedToolChoice) and req.tool_choice.function.name not in names:
        message = (
            f"tool_choice names '{req.tool_choice.function.name}', which is not in tools ({', '.join(names)})"
        )
        raise APIError(400, message, "tool_choice")
    if names and req.response_format is not None and req.response_format.type != "text":
        raise APIError(400, "response_format cannot be combined with tools here", "response_format")


def validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 detail as one OpenAI-style 400 message naming the fields."""
    parts, first_param = [], None
    for err in exc.errors()[:3]:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            return APIError(400, f"the request body is not valid JSON: {reason}".rstrip(": "))
        # Union members show up in the location (`tool_choice.literal['none','auto','required']`).
        loc = [
            str(x) for x in err.get("loc", ()) if x != "body" and not str(x).startswith(("literal[", "Named"))
        ]
        param = ".".join(loc) or None
        first_param = first_param or param
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{param}: {msg}" if param else msg)
    return APIError(400, "; ".join(parts) or "invalid request", first_param)
