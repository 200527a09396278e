"""Agent backends behind one interface, and the `AgentTeam` facade the tune pipeline calls.

`Backend.complete_json(role, messages, schema, context)` returns a validated reply model:
- `RulesBackend` ignores `messages` and answers from `context` with the role's rules policy;
- `OpenAIBackend` (any OpenAI-compatible endpoint) and `LocalBackend` (a Hugging Face model
  with llguidance JSON-schema constrained decoding) generate text from `messages`.

LLM output is parsed leniently (prose and code fences around the JSON are fine), validated
with the clamping reply models, repaired once (the error goes back to the model), and if the
repair fails too the rules policy answers and the fallback is logged. Nothing a model writes
raises out of `complete_json`. Every attempt goes to `AgentLog` (agents.jsonl and the store).

`AgentTeam` builds each role's JSON context once, so an LLM sees it as a prompt and the rules
see it as data, and it applies what must hold whatever the backend says: the judge cannot
stop before `force_min_episodes` without clear degradation, and the reward signal is always
the seed's formula (an LLM reward-penalty agent only chooses `say` and `override`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from posttrain.agents.roles import (
    REPLY_MODELS,
    EpisodeSummary,
    JudgeReply,
    QAEvalReply,
    QAGenReply,
    QAItem,
    RewardPenaltyReply,
    SealExpertReply,
    TunerReply,
    as_history,
    build_messages,
    enforce_min_episodes,
    history_context,
    jsonable,
    reply_schema,
    reward_signal,
    rules_answer,
    seal_effect_summary,
)
from posttrain.config.search_space import SearchSpace
from posttrain.constrained import (
    bounded_numbers,  # noqa: F401  (re-exported for callers and tests)
    constrained_generate,
    grammar_tokenizer,
)
from posttrain.errors import ConfigError

History = Sequence[EpisodeSummary | Mapping[str, Any]]
Generate = Callable[[str, list[dict[str, str]], dict[str, Any]], str]


class Backend(Protocol):
    """What every agent backend provides. `context` is the role's JSON context (rules need it;
    LLM backends use it to validate and, on failure, to fall back to the rules)."""

    name: str

    def complete_json(
        self,
        role: str,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        context: Mapping[str, Any] | None = None,
    ) -> BaseModel: ...


class AgentLog:
    """Appends every agent request/response to a JSONL file and, with a store and run id, to
    the store's agent_messages table. Either sink is optional."""

    def __init__(self, path: str | Path | None = None, store: Any = None, run_id: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.store = store
        self.run_id = run_id

    def record(
        self,
        role: str,
        backend: str,
        request: Any,
        response: Any,
        episode: int | None = None,
        fallback: bool = False,
        error: str | None = None,
    ) -> None:
        request, response = jsonable(request), jsonable(response)
        if self.path is not None:
            line = {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "role": role,
                "backend": backend,
                "episode": episode,
                "fallback": fallback,
                "error": error,
                "request": request,
                "response": response,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False, allow_nan=False, default=str) + "\n")
        if self.store is not None and self.run_id is not None:
            self.store.add_agent_message(
                self.run_id, episode, role, backend, request, response, fallback, error
            )


def _episode(context: Mapping[str, Any] | None) -> int | None:
    episode = (context or {}).get("episode")
    return episode if isinstance(episode, int) else None


# ---------------------------------------------------------------- parsing and repair

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The first JSON object in `text`: the whole text, a ```json fence, or the first `{...}`
    that decodes (prose around it is ignored). Raises ValueError when there is none."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the reply is empty")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        try:
            return json.loads(candidate.strip())
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise ValueError("no complete JSON object found in the reply (truncated or not JSON)")


def parse_reply(text: str, schema: type[BaseModel], context: Mapping[str, Any] | None = None) -> BaseModel:
    """Extract and validate; raises ValueError (pydantic's ValidationError is one) on failure."""
    return schema.model_validate(extract_json(text), context=dict(context or {}))


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()[:5]]
        return "; ".join(parts)[:500]
    return f"{exc}"[:500]


REPAIR_PROMPT = (
    "Your reply could not be used: {error}. Reply again with only the corrected JSON object, "
    "matching the schema, with every required key."
)


def complete_with_repair(
    backend: str,
    generate: Generate,
    role: str,
    messages: list[dict[str, str]],
    schema: type[BaseModel],
    context: Mapping[str, Any] | None,
    log: AgentLog | None,
    max_text: int = 400,
) -> BaseModel:
    """Ask, validate, repair once, else answer with the rules policy (logged as a fallback).

    `generate(role, messages, json_schema) -> text` does the model call; empty `messages` are
    built from the context with `build_messages`. A failure inside it
    (connection refused, timeout after the client's own retries, out of memory) is not worth
    a repair request: the rules answer at once.
    """
    log = log or AgentLog()
    json_schema = reply_schema(role, context, max_text)
    episode = _episode(context)
    attempt_messages = list(messages) or build_messages(role, context or {}, max_text)
    error = "no attempt"
    for attempt in (1, 2):
        request = {"messages": attempt_messages, "attempt": attempt}
        try:
            text = generate(role, attempt_messages, json_schema)
        except Exception as exc:  # any transport/model failure ends in the logged rules fallback
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.record(role, backend, request, None, episode, error=error)
            break
        try:
            reply = parse_reply(text, schema, context)
        except ValueError as exc:
            error = _short_error(exc)
            log.record(role, backend, request, {"raw": text}, episode, error=error)
            attempt_messages = [
                *attempt_messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": REPAIR_PROMPT.format(error=error)},
            ]
            continue
        log.record(role, backend, request, {"raw": text, "parsed": reply}, episode)
        return reply
    reply = rules_answer(role, context or {})
    log.record(role, backend, {"context": context}, {"parsed": reply}, episode, fallback=True, error=error)
    return reply


# ---------------------------------------------------------------- backends


class RulesBackend:
    """Deterministic policies from `roles`; the offline default and every LLM's fallback."""

    name = "rules"
    max_text_chars = 400

    def __init__(self, log: AgentLog | None = None) -> None:
        self.log = log or AgentLog()

    def complete_json(
        self,
        role: str,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        context: Mapping[str, Any] | None = None,
    ) -> BaseModel:
        reply = rules_answer(role, context or {})
        self.log.record(role, self.name, {"context": context}, {"parsed": reply}, _episode(context))
        return reply


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint through the official `openai` client.

    `base_url`, `model` and `api_key` default to $OPENAI_BASE_URL, $POSTTRAIN_AGENT_MODEL
    (else gpt-4o-mini) and $OPENAI_API_KEY; a base URL alone is enough for keyless local servers
    (vLLM, Ollama, llama.cpp, `posttrain serve`). The client retries connection errors, 408,
    409, 429 and 5xx `max_retries` times with exponential backoff (0.5 s doubling, at most 8 s,
    honouring Retry-After). The reply format starts as `json_schema`; an endpoint that answers
    400/422 to it is asked again with `json_object`, then with no response_format (the prompt
    still carries the schema), and the backend remembers the level that worked.
    """

    name = "openai"
    FORMATS = ("json_schema", "json_object", "none")

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        temperature: float | None = 0.2,
        max_tokens: int | None = 1024,
        strict: bool = True,
        max_text_chars: int = 400,
        log: AgentLog | None = None,
    ) -> None:
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or ("no-key" if base_url else None)
        if api_key is None:
            raise ConfigError(
                "the openai agent backend needs an API key or an endpoint: set OPENAI_API_KEY, or "
                "OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1 for `posttrain serve`, vLLM or Ollama)"
            )
        self.model = model or os.environ.get("POSTTRAIN_AGENT_MODEL") or "gpt-4o-mini"
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.strict = strict
        self.max_text_chars = max_text_chars
        self.format = "json_schema"
        self.log = log or AgentLog()

    def complete_json(
        self,
        role: str,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        context: Mapping[str, Any] | None = None,
    ) -> BaseModel:
        return complete_with_repair(
            self.name, self._generate, role, messages, schema, context, self.log, self.max_text_chars
        )

    def _generate(self, role: str, messages: list[dict[str, str]], json_schema: dict[str, Any]) -> str:
        import openai

        while True:
            kwargs: dict[str, Any] = {}
            if self.temperature is not None:
                kwargs["temperature"] = self.temperature
            if self.max_tokens is not None:
                kwargs["max_tokens"] = self.max_tokens
            if self.format == "json_schema":
                spec = {"name": role, "schema": json_schema, "strict": self.strict}
                kwargs["response_format"] = {"type": "json_schema", "json_schema": spec}
            elif self.format == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
            try:
                response = self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                if self.format == "none":
                    raise
                self.format = self.FORMATS[self.FORMATS.index(self.format) + 1]
                continue
            if not response.choices:
                raise ValueError("the endpoint returned no choices")
            return response.choices[0].message.content or ""


class LocalBackend:
    """A local Hugging Face causal LM whose every token is constrained by llguidance to the
    role's JSON schema, so even a weak (or random) model writes schema-valid JSON; strings and
    arrays are bounded in the schema, so `max_new_tokens` is only a safety net.

    Greedy by default (`temperature=0`), deterministic under `seed` otherwise. Building the
    llguidance tokenizer costs ~0.5 s once per backend.
    """

    name = "local"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
        max_text_chars: int = 200,
        seed: int = 0,
        log: AgentLog | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.lltok = grammar_tokenizer(tokenizer)  # raises PosttrainError without llguidance
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_text_chars = max_text_chars
        self.seed = seed
        self.log = log or AgentLog()

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> LocalBackend:
        """Load `spec` (e.g. "smollm2-135m", a hub id or a directory) and wrap it."""
        from posttrain.models import load_model

        model, tokenizer = load_model(spec)
        return cls(model, tokenizer, **kwargs)

    def complete_json(
        self,
        role: str,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        context: Mapping[str, Any] | None = None,
    ) -> BaseModel:
        return complete_with_repair(
            self.name, self._generate, role, messages, schema, context, self.log, self.max_text_chars
        )

    def _generate(self, role: str, messages: list[dict[str, str]], json_schema: dict[str, Any]) -> str:
        return constrained_generate(
            self.model,
            self.tokenizer,
            messages,
            json_schema,
            self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
            lltok=self.lltok,
        )


def make_backend(kind: Literal["rules", "openai", "local"], **kwargs: Any) -> Backend:
    """Build a backend by name. `local` takes `model` + `tokenizer` objects, or `model` as a spec
    string to load. Every kind accepts `log=AgentLog(...)`."""
    if kind == "rules":
        return RulesBackend(log=kwargs.get("log"))
    if kind == "openai":
        return OpenAIBackend(**kwargs)
    if kind == "local":
        model = kwargs.pop("model", None)
        if isinstance(model, str):
            return LocalBackend.from_spec(model, **kwargs)
        if model is None or kwargs.get("tokenizer") is None:
            raise ConfigError(
                "the local agent backend needs model= (a spec or a loaded model) and tokenizer="
            )
        return LocalBackend(model, kwargs.pop("tokenizer"), **kwargs)
    raise ConfigError(f"unknown agent backend {kind!r} (choose rules, openai or local)")


# ---------------------------------------------------------------- the team


class AgentTeam:
    """Seed 000's six roles on one backend, in the order the episode loop calls them.

    Every method takes the history (a list of `EpisodeSummary` or dicts with its fields) and
    the episode index (it goes to the log), and returns the role's validated reply. A reply from
    an LLM that stays unusable after one repair is replaced by the rules answer, so every method
    always returns a valid reply.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        space: SearchSpace | None = None,
        *,
        force_min_episodes: int = 3,
        max_episodes: int = 4,
        patience: int = 2,
        qa_weight: float = 0.0,
        plateau_tol: float = 0.01,
        degrade_tol: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.backend = backend or RulesBackend()
        self.space = space or SearchSpace()
        self.force_min_episodes = force_min_episodes
        self.max_episodes = max_episodes
        self.patience = patience
        self.qa_weight = qa_weight
        self.plateau_tol = plateau_tol
        self.degrade_tol = degrade_tol
        self.seed = seed

    def ask(self, role: str, context: dict[str, Any]) -> BaseModel:
        """One role call: prompt (for LLM backends), backend, validated reply."""
        if self.backend.name == "rules":
            messages: list[dict[str, str]] = []
        else:
            messages = build_messages(role, context, getattr(self.backend, "max_text_chars", 400))
        return self.backend.complete_json(role, messages, REPLY_MODELS[role], context)

    def _context(self, episode: int, history: History, **extra: Any) -> dict[str, Any]:
        return {"episode": episode, "history": history_context(history), **jsonable(extra)}

    def judge(self, history: History, episode: int) -> JudgeReply:
        """Step 1. Stops before `force_min_episodes` only on clear degradation, whatever the LLM says."""
        context = self._context(
            episode,
            history,
            force_min_episodes=self.force_min_episodes,
            max_episodes=self.max_episodes,
            patience=self.patience,
            degrade_tol=self.degrade_tol,
        )
        reply = self.ask("judge", context)
        return enforce_min_episodes(reply, history, self.force_min_episodes, self.degrade_tol)

    def reward_penalty(self, history: History, episode: int) -> RewardPenaltyReply:
        """Step 2. `reward_signal` is always the seed's formula; the backend proposes the override."""
        signal = reward_signal(history, self.qa_weight, self.plateau_tol)
        context = self._context(
            episode,
            history,
            space=self.space.model_dump(),
            qa_weight=self.qa_weight,
            plateau_tol=self.plateau_tol,
            reward_signal=signal.model_dump(),
        )
        reply = self.ask("reward_penalty", context)
        return reply.model_copy(update={"reward_signal": signal})

    def seal_summary(self, history: History) -> str:
        """Step 3."""
        return seal_effect_summary(history)

    def tuner(
        self,
        history: History,
        episode: int,
        judge_feedback: str = "",
        reward: RewardPenaltyReply | Mapping[str, Any] | None = None,
        seal_summary: str | None = None,
    ) -> TunerReply:
        """Step 4. The proposal is clamped into the space; merge it with `roles.merge_hparams`."""
        context = self._context(
            episode,
            history,
            judge_feedback=judge_feedback,
            reward_feedback=reward,
            seal_summary=seal_summary if seal_summary is not None else seal_effect_summary(history),
            space=self.space.model_dump(),
            seed=self.seed,
        )
        return self.ask("tuner", context)

    def seal_expert(
        self,
        history: History,
        episode: int,
        judge_feedback: str = "",
        reward: RewardPenaltyReply | Mapping[str, Any] | None = None,
        seal_summary: str | None = None,
    ) -> SealExpertReply:
        """Step 7: seal_epochs (1 or 2) for the SEAL stage after this episode's TRAIN."""
        h = as_history(history)
        context = self._context(
            episode,
            h,
            last_train=h[-1].model_dump(exclude_none=True) if h else None,
            judge_feedback=judge_feedback,
            reward_feedback=reward,
            seal_summary=seal_summary if seal_summary is not None else seal_effect_summary(h),
        )
        return self.ask("seal_expert", context)

    def qa_generate(self, val_rows: Sequence[Mapping[str, Any]], n: int, episode: int) -> QAGenReply:
        """Step 9a: up to `n` QA items from the validation rows (at most 3n rows are shown)."""
        rows = list(val_rows)
        shown = max(3 * n, 1)
        if len(rows) > shown:
            rows = [rows[i * len(rows) // shown] for i in range(shown)]
        return self.ask("qa_generator", {"episode": episode, "val_rows": jsonable(rows), "n": n})

    def qa_evaluate(
        self, items: Sequence[QAItem | Mapping[str, Any]], answers: Sequence[str], episode: int
    ) -> QAEvalReply:
        """Step 9b: one score in [0, 1] per item; `mean_score` is the episode's qa_score."""
        context = {"episode": episode, "items": jsonable(list(items)), "answers": list(answers)}
        return self.ask("qa_evaluator", context)
