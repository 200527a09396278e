"""The batched ReAct loop, and a Hugging Face `generate` to drive it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from posttrain.toolcall.parse import ParseResult, parse_response
from posttrain.toolcall.spec import Tool, ToolCall, ToolRegistry

Generate = Callable[[list[list[dict[str, str]]]], list[str]]


class GrammarGenerate(Protocol):
    """A `Generate` that can also keep each reply inside a grammar, one per conversation (None:
    free), as `inference.generator`'s does: what constrained scoring of tool turns calls."""

    def __call__(
        self, conversations: list[list[dict[str, str]]], grammars: Sequence[str | None] | None = None
    ) -> list[str]: ...


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
