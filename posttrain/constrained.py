"""Token-by-token sampling from a causal LM, optionally constrained by a JSON schema (llguidance).

Used by the `local` agent backend and by `posttrain serve`. One loop serves both plain text and
grammar-constrained JSON, so seeds, `top_p`, stop strings and token counts behave the same way
in both. Batch size is one; the KV cache carries the prompt, so each step feeds one token.

Constrained JSON is compact (no free whitespace) and numbers without a `multipleOf` get one
(`bounded_numbers`): a weak model can neither stall in an endless run of spaces nor write
0.0000111111… until it runs out of tokens.

For batches, `GrammarMasks` is the same constraint as a logits processor, one grammar per row, for
`inference.generate_batch` (scoring tool turns by the hundred).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from posttrain.errors import PosttrainError

if TYPE_CHECKING:  # torch loads on first use, so importing the agent backends stays fast
    import torch


class SchemaError(ValueError):
    """llguidance cannot compile the JSON schema (invalid, unsatisfiable or unsupported)."""


def llguidance_module() -> Any:
    """The `llguidance` package, or a PosttrainError saying how to install it."""
    try:
        import llguidance
        import llguidance.hf  # noqa: F401
    except ImportError as exc:
        raise PosttrainError(
            "constrained decoding needs llguidance: pip install 'llguidance>=1.9,<2'"
        ) from exc
    return llguidance


def grammar_tokenizer(tokenizer: Any) -> Any:
    """llguidance's view of a fast HF tokenizer. Costs ~0.5 s: build it once per tokenizer."""
    return llguidance_module().hf.from_tokenizer(tokenizer)


def bounded_numbers(schema: Any) -> Any:
    """`schema` with a `multipleOf` on every number that has none: 1e-7 for ranges at most 0.01
    wide at the top (learning rates), else 1e-4. For constrained decoding only; the wire schema
    sent to OpenAI-compatible servers stays as is (not every server implements multipleOf)."""
    if isinstance(schema, list):
        return [bounded_numbers(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded_numbers(v) for k, v in schema.items()}
    if out.get("type") == "number" and "multipleOf" not in out:
        out["multipleOf"] = 1e-7 if abs(out.get("maximum", 1.0)) <= 0.01 else 1e-4
    return out


def json_schema_grammar(schema: Mapping[str, Any], lltok: Any = None) -> str:
    """Compile a JSON schema (numbers bounded, compact JSON) into an llguidance grammar.

    Raises SchemaError with llguidance's reason (e.g. "Invalid type: nonsense", "Unsatisfiable
    schema: minItems (3) is greater than maxItems (1)"); pass `lltok` to check it against the
    tokenizer too.
    """
    matcher_cls = llguidance_module().LLMatcher
    try:
        grammar = matcher_cls.grammar_from_json_schema(
            bounded_numbers(dict(schema)), overrides={"whitespace_flexible": False}
        )
    except ValueError as exc:
        raise SchemaError(str(exc)) from exc
    is_error, messages = matcher_cls.validate_grammar_with_warnings(grammar, lltok)
    if is_error:
        raise SchemaError(messages[0].strip() if messages else "llguidance rejected the schema")
    return grammar


def chat_prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of `messages` with the assistant turn opened (a plain `role: content` layout for
    tokenizers without a chat template). Jinja errors from the template propagate."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    else:
        text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant: "
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def context_length(model: Any) -> int | None:
    """The model's maximum sequence length (prompt + completion), when its config says."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


@dataclass(frozen=True)
class Sample:
    """One completion. `tokens` counts every sampled token, the final EOS included;
    `finish_reason` is "stop" (EOS, grammar complete or a stop string) or "length"."""

    text: str
    tokens: int
    finish_reason: Literal["stop", "length"]


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    generation_config = getattr(model, "generation_config", None)
    ids: set[int] = set()
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        # Nucleus: keep the most likely tokens until their mass reaches top_p (at least one).
        sorted_p, order = torch.sort(probs, descending=True)
        keep = (torch.cumsum(sorted_p, 0) - sorted_p) < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _grammar_masked(matcher: Any, logits: torch.Tensor) -> torch.Tensor:
    """`logits` with every token the grammar forbids next at -inf."""
    import torch

    allowed = torch.frombuffer(bytearray(matcher.compute_logit_bias()), dtype=torch.uint8) > 0
    masked = torch.full_like(logits, float("-inf"))
    n = min(len(allowed), len(logits))  # the model's vocabulary may be padded past the tokenizer's
    masked[:n] = torch.where(allowed[:n], logits[:n], masked[:n])
    return masked


def _cut_at_stop(text: str, stop: Sequence[str]) -> str | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(hits)] if hits else None


def sample(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    grammar: str | None = None,
    lltok: Any = None,
    stop: Sequence[str] = (),
    on_token: Callable[[list[int]], None] | None = None,
) -> Sample:
    """Sample up to `max_new_tokens` after `prompt_ids`; greedy when `temperature` is 0.

    With `grammar` (from `json_schema_grammar`) every token is masked to the grammar and `lltok`
    (from `grammar_tokenizer`, built here when None) is required to track it; generation ends
    when the grammar is complete. `stop` strings end the text before their first occurrence, as
    OpenAI's `stop` does. The model runs in eval mode and gets its training mode back.
    `on_token` sees the kept tokens after each step (for streaming; an exception it raises stops
    the generation and propagates).
    """
    import torch

    generator = generator or torch.Generator().manual_seed(secrets.randbits(63))
    matcher = None
    if grammar is not None:
        lltok = lltok if lltok is not None else grammar_tokenizer(tokenizer)
        matcher = llguidance_module().LLMatcher(lltok, grammar, log_level=0)
        if matcher.is_error():
            raise SchemaError(matcher.get_error())
        eos = set(lltok.eos_tokens)
    else:
        eos = _eos_ids(model, tokenizer)

    def decode(tokens: list[int]) -> str:
        if matcher is not None:
            return lltok.decode_str(tokens)
        return tokenizer.decode(tokens, skip_special_tokens=True)

    # A stop string spans at most 4 tokens per character (byte-level BPE), so a short tail
    # suffices to notice one as soon as it is complete.
    window = 4 * max((len(s) for s in stop), default=0) + 8
    device = next(model.parameters()).device
    out: list[int] = []
    sampled = 0
    finish: Literal["stop", "length"] = "length"
    inputs = torch.tensor([list(prompt_ids)], device=device)
    past = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                result = model(input_ids=inputs, past_key_values=past, use_cache=True)
                past = result.past_key_values
                logits = result.logits[0, -1].float().cpu()
                if matcher is not None:
                    logits = _grammar_masked(matcher, logits)
                token = _pick(logits, temperature, top_p, generator)
                sampled += 1
                if matcher is not None and not matcher.consume_token(token):
                    raise ValueError(f"constrained decoding failed: {matcher.get_error()}")
                if token in eos:
                    finish = "stop"
                    break
                out.append(token)
                if on_token is not None:
                    on_token(out)
                if stop and _cut_at_stop(decode(out[-window:]), stop) is not None:
                    finish = "stop"
                    break
                if matcher is not None and matcher.is_stopped():
                    finish = "stop"
                    break
                inputs = torch.tensor([[token]], device=device)
    finally:
        model.train(was_training)
    text = decode(out)
    if stop:
        cut = _cut_at_stop(text, stop)
        text = text if cut is None else cut
    return Sample(text, sampled, finish)


def constrained_generate(
    model: Any,
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    schema: Mapping[str, Any],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    lltok: Any = None,
) -> str:
    """JSON text that follows `schema` (unless cut by `max_new_tokens`), answering `messages`.

    Deterministic for a given `seed`; pass a cached `lltok` to skip the ~0.5 s tokenizer build.
    Raises SchemaError for a schema llguidance cannot compile.
    """
    import torch

    lltok = lltok if lltok is not None else grammar_tokenizer(tokenizer)
    result = sample(
        model,
        tokenizer,
        chat_prompt_ids(tokenizer, messages),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        generator=torch.Generator().manual_seed(seed),
        grammar=json_schema_grammar(schema, lltok),
        lltok=lltok,
    )
    return result.text


class GrammarMasks:
    """Keeps each row of a batched `generate` inside its own grammar (a transformers logits
    processor; a None grammar leaves its row free).

    Why a processor and not `sample`'s loop: tool turns are scored by the hundred. One at a time,
    120 validation requests took 720 s; batched by 16, 275 s, with the same figures (smollm2-135m
    with an SFT adapter, one thread each, beside another job). Inside `inference.generate_batch`
    the shared prompt prefix, pruning of ended rows and left padding work as for free text.

    A row's token is fed to its matcher on the next call (the first call sees the prompt's last
    token and feeds nothing); once a grammar is complete its row may only end (`eos_ids`).
    `keep` follows the batch when rows that ended are dropped between `generate` calls.
    """

    def __init__(self, grammars: Sequence[str | None], lltok: Any, eos_ids: Sequence[int]) -> None:
        matcher = llguidance_module().LLMatcher
        self.matchers = [None if g is None else matcher(lltok, g, log_level=0) for g in grammars]
        for m in self.matchers:
            if m is not None and m.is_error():
                raise SchemaError(m.get_error())
        self.vocab = lltok.vocab_size
        self.eos = list(eos_ids) or [lltok.eos_token]
        self.fed = False

    def keep(self, rows: Sequence[int]) -> None:
        """Only `rows` (indices into the current batch, in order) go on decoding."""
        self.matchers = [self.matchers[i] for i in rows]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch
        from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

        if self.fed:
            for m, token in zip(self.matchers, input_ids[:, -1].tolist(), strict=True):
                if m is not None and not m.is_stopped() and not m.consume_token(token):
                    raise ValueError(f"constrained decoding failed: {m.get_error()}")
        self.fed = True
        rows = [i for i, m in enumerate(self.matchers) if m is not None]
        if not rows:
            return scores
        bitmask = allocate_token_bitmask(len(self.matchers), self.vocab)
        for i in rows:
            fill_next_token_bitmask(self.matchers[i], bitmask, i)
        bits = (bitmask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        n = min(self.vocab, scores.shape[1])  # the model's vocabulary may be padded past the tokenizer's
        allowed[:, :n] = bits.reshape(len(self.matchers), -1)[:, :n].bool()
        for i, m in enumerate(self.matchers):
            if m is None:
                allowed[i] = True
            elif m.is_stopped():
                allowed[i] = False
                allowed[i, self.eos] = True
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))
