"""One model answering validated chat requests for `posttrain serve`: a request's plan (checked
without the model, so a bad request never queues), its samples, and the chat.completion object.
Who may use the model when is `serve_queue`'s job; the HTTP side is `serve`'s.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fastapi.responses import StreamingResponse

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
from posttrain.pipelines.serve_queue import ClientGone
from posttrain.pipelines.serve_schema import APIError, ChatRequest, NamedToolChoice, refuse_unsupported
from posttrain.pipelines.serve_stream import Generation, TextStream, sse_response, text_chunks
from posttrain.pipelines.serve_tools import (
    OBSERVATION,
    ToolPrompt,
    chat_template_messages,
    choice_name,
    forced_call_grammar,
    render_messages,
    reply_message,
    request_registry,
)
from posttrain.tasks.tool_use.chat_format import ChatToolFormat, chat_tool_format
from posttrain.toolcall import ToolRegistry, tool_turn_grammar
from posttrain.toolcall.relevance import GateScorer, RelevanceGate, last_request, relevance_scores
from posttrain.toolcall.rerank import rerank_replies

DEFAULT_MAX_TOKENS = 4096  # only for models whose config names no context length


@dataclass
class Plan:
    """A validated request: everything decided before it queues. `prompt` and `max_new` are
    filled in (`tokenize`) once it holds the model, because the tokenizer is not shared."""

    id: str
    created: int
    messages: list[dict[str, str]]
    wanted: int | None  # max_tokens as asked
    n: int
    temperature: float
    top_p: float
    generator: Any
    grammar: str | None
    stop: list[str]
    registry: ToolRegistry | None
    choice: str
    prompt: list[int] = field(default_factory=list)
    max_new: int = 0
    gated: bool = False  # the grammar is narrowed by the relevance gate once the model is held


class ChatService:
    """Answers validated chat requests with one model. The model and its tokenizer are used only
    by the request holding the Admission ticket (a HF fast tokenizer shared across threads can
    raise "Already borrowed"), so `tokenize`, `run`, `complete` and `start_stream` assume it.

    Building llguidance's view of the tokenizer (~0.5 s) happens here, once; a tokenizer it
    cannot read (not a fast tokenizer) still serves plain text and answers JSON requests 400.
    `tool_prompt="chat_template"` needs a chat template that renders tools: ConfigError otherwise,
    here, before any request. `relevance_gate` (with `constrain_tools`) narrows a tool_choice
    "auto" turn to the offered tool the last user turn is about, or to a plain answer
    (`toolcall.relevance`); `rerank_arguments` re-reads each call's arguments before it is
    returned (`toolcall.rerank`; Thought→Action only) through `rerank_scorer`'s channel: the
    served model's, its base model's with the adapter off, or the trained gate scorer's; with
    `rerank_policy_weight` > 0 the served model's own likelihood of the edits that keep the call's
    arguments weighs in too (`tasks.tool_use.user_eval.policy_scorer`, as in eval and align).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_name: str,
        tool_prompt: ToolPrompt = "compact",
        constrain_tools: bool = False,
        relevance_gate: RelevanceGate | None = None,
        rerank_arguments: bool = False,
        rerank_scorer: GateScorer = "model",
        rerank_policy_weight: float = 0.0,
    ) -> None:
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.rerank, self.rerank_scorer = rerank_arguments, rerank_scorer
        self.rerank_policy_weight = rerank_policy_weight
        self.tool_prompt, self.constrain_tools = tool_prompt, constrain_tools
        self.gate = relevance_gate
        self.chat_format: ChatToolFormat | None = (
            chat_tool_format(tokenizer, model_name) if tool_prompt == "chat_template" else None
        )
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
            return forced_call_grammar(registry, only, self._need_lltok("tool_choice"), self.chat_format)
        fmt = req.response_format
        if fmt is None or fmt.type == "text":
            if registry is not None and choice == "auto" and self.constrain_tools and not self.chat_format:
                try:
                    return tool_turn_grammar(registry.values(), lltok=self._need_lltok("tools"))
                except SchemaError as exc:
                    raise APIError(400, f"cannot constrain calls of these tools: {exc}", "tools") from exc
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

    def budget(self, wanted: int | None, prompt_tokens: int) -> int:
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
        """Validate `req` against this server and turn it into a Plan; raises APIError. Needs
        neither the model nor the tokenizer, so a bad request is answered before it queues."""
        import torch

        refuse_unsupported(req)
        if req.model != self.model_name:
            raise unknown_model(req.model, self.model_name)
        registry, choice = request_registry(req), choice_name(req)
        grammar = self.grammar_for(req, registry, choice)
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        # A trained agent goes on to imagine the tool's answer; the client has the real one. (A chat
        # template's call turn ends with its end-of-turn token, which stops sampling anyway.)
        stop = list(req.stop or [])  # the validator turns a string into a list; None stays None
        if registry is not None and grammar is None and self.chat_format is None:
            stop.append(OBSERVATION)
        plain = req.response_format is None or req.response_format.type == "text"
        gated = (
            self.gate is not None
            and grammar is not None
            and registry is not None
            and choice == "auto"
            and plain
        )
        if self.chat_format is not None:
            messages = chat_template_messages(req.messages, registry, self.chat_format)
        else:
            messages = render_messages(req.messages, registry, self.tool_prompt)
        return Plan(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            messages=messages,
            wanted=req.max_completion_tokens or req.max_tokens,
            n=req.n or 1,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            generator=torch.Generator().manual_seed(seed % 2**64),
            grammar=grammar,
            stop=stop,
            registry=registry,
            choice=choice,
            gated=gated,
        )

    def tokenize(self, plan: Plan) -> None:
        """The prompt and the token budget (400 `context_length_exceeded` when none is left), and a
        gated plan's grammar narrowed to the tool its request is about (the model's first use)."""
        plan.prompt = self.prompt_for(plan.messages)
        plan.max_new = self.budget(plan.wanted, len(plan.prompt))
        if plan.gated and plan.registry is not None and self.gate is not None:
            from posttrain.inference import gate_channel  # torch: not before the server binds

            tools = list(plan.registry.values())
            channel = gate_channel(self.model, self.tokenizer, self.gate.scorer)
            (scores,) = relevance_scores(channel, [last_request(plan.messages)], [tools])
            chosen = self.gate.choose(scores)
            plan.grammar = tool_turn_grammar([] if chosen is None else [tools[chosen]], lltok=self.lltok)

    def run(
        self, plan: Plan, stream: TextStream | None = None, cancel: threading.Event | None = None
    ) -> list[Sample]:
        """The plan's n samples, one after another from one seeded generator. Setting `cancel`
        (or the stream's `closed`) stops at the next token with ClientGone."""
        samples = []
        for i in range(plan.n):
            if stream is not None:
                stream.start(i)
            on_token: Callable[[list[int]], None] | None = None
            if stream is not None:
                on_token = partial(stream.token, i)
            elif cancel is not None:
                on_token = partial(_stop_if_set, cancel)
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
                on_token=on_token,
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
                text = self.reranked(plan, s.text) if self.rerank and plan.choice != "none" else s.text
                message, finish = reply_message(text, plan.registry, plan.choice, self.chat_format)
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

    def reranked(self, plan: Plan, text: str) -> str:
        """`text` with its call's arguments re-read by the model (unchanged when not a call)."""
        from posttrain.inference import channel_scorer, gate_channel, render_prompts  # torch: after binding
        from posttrain.tasks.tool_use.user_eval import policy_scorer

        if plan.registry is None:
            return text
        channel = gate_channel(self.model, self.tokenizer, self.rerank_scorer)
        tools = [list(plan.registry.values())]
        policy = None
        if self.rerank_policy_weight > 0:
            # the policy's prompt offers the called tool alone, in place of the tool system prompt
            turns = [m for m in plan.messages if m["role"] != "system"]
            render = partial(render_prompts, self.tokenizer)
            policy = policy_scorer(render, channel_scorer(self.model, self.tokenizer), [turns])
        (out,), _ = rerank_replies(
            channel, [text], [last_request(plan.messages)], tools, policy, self.rerank_policy_weight
        )
        return out

    def complete(self, plan: Plan, cancel: threading.Event | None = None) -> dict[str, Any]:
        """The whole chat.completion for `plan`; raises APIError for what the request got wrong."""
        self.tokenize(plan)
        return self.completion(plan, self.run(plan, cancel=cancel))

    def start_stream(
        self, plan: Plan, include_usage: bool, on_exit: Callable[[], None]
    ) -> tuple[StreamingResponse, Generation]:
        """`stream: true` for plain text, `plan` tokenized (so its errors kept their status):
        sampled from now on in its own thread, which calls `on_exit` when it ends, into
        Server-Sent Events. Returns at once, so nothing can come between starting the thread and
        the caller knowing `on_exit` is now the generation's to call."""
        head = {"id": plan.id, "created": plan.created, "model": self.model_name, "system_fingerprint": None}
        text = TextStream(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True), plan.stop)
        generation = Generation(text, lambda: self.completion(plan, self.run(plan, text)), on_exit)
        return sse_response(text_chunks(head, generation, include_usage)), generation


def _stop_if_set(cancel: threading.Event, tokens: list[int]) -> None:
    if cancel.is_set():
        raise ClientGone


def unknown_model(asked: str, served: str) -> APIError:
    return APIError(
        404,
        f"The model `{asked}` does not exist: this server serves `{served}` "
        f"(for the agent backend: POSTTRAIN_AGENT_MODEL={served}).",
        "model",
        "model_not_found",
    )
