"""Batched, left-padded generation from chat conversations, the `generate` callable the ReAct
loop takes, and LoRA weights merged for the time of a generation.

Left padding keeps every prompt's last token at the end of the row, so one `generate` call
serves a whole batch; decoding starts after the padded prompt width. When a batch's rows open with
the same tokens (a system prompt and tool list), that prefix is computed once and its KV cache is
shared: rows are then laid out [prefix][pad][own tokens], still ending at the row's end.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from posttrain.constrained import GrammarMasks, grammar_tokenizer


def render_prompts(
    tokenizer: Any, conversations: Sequence[list[dict]], tools: list[dict] | None = None
) -> list[str]:
    """Chat-template each conversation with the assistant turn opened. A conversation that ends in
    an assistant message is continued from it, left open (a prefilled reply, as Transformers'
    text-generation pipeline does); the generated text is then only what follows that prefix."""
    return [
        tokenizer.apply_chat_template(
            list(conv),
            tools=tools,
            tokenize=False,
            **(
                {"continue_final_message": True}
                if conv and conv[-1]["role"] == "assistant"
                else {"add_generation_prompt": True}
            ),
        )
        for conv in conversations
    ]


# Rows must share at least this many leading tokens before the shared-prefix path pays for its
# extra forward call; posttrain's compact tool_use system prompt is ~100 tokens.
MIN_SHARED_PREFIX = 32
# Rows that have ended leave the batch every this many new tokens (each is one `generate` call).
PRUNE_EVERY = 8


@torch.no_grad()
def generate_batch(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict]],
    *,
    max_new_tokens: int = 128,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 16,
    tools: list[dict] | None = None,
    progress: Callable[[int], None] | None = None,
    prefix_cache: bool = True,
    grammars: Sequence[str | None] | None = None,
    lltok: Any = None,
) -> list[str]:
    """Completions for every conversation, `num_return_sequences` per conversation, in order.

    With `prefix_cache` (the default) a batch whose rows share a long token prefix (the system
    prompt and tool list) computes that prefix once; greedy text is the same as without it.
    `grammars` (one llguidance grammar or None per conversation) keeps each completion inside
    its grammar (`constrained.GrammarMasks`); `lltok` is `constrained.grammar_tokenizer(tokenizer)`,
    built here when None.
    """
    texts = render_prompts(tokenizer, conversations, tools)
    if grammars is not None and len(grammars) != len(texts):
        raise ValueError(f"{len(grammars)} grammars for {len(texts)} conversations")
    if grammars is not None and lltok is None:
        lltok = grammar_tokenizer(tokenizer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    n = num_return_sequences if do_sample else 1
    out: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            if grammars is not None:
                mine = [g for g in grammars[start : start + batch_size] for _ in range(n)]
                masks = GrammarMasks(mine, lltok, _eos_ids(model))
                kwargs["logits_processor"] = _processors(masks)
            rows = tokenizer(chunk, add_special_tokens=False)["input_ids"]
            cache = _empty_cache(model)
            if cache is None:
                new = _generate_left_padded(model, tokenizer, rows, n, device, kwargs)
            else:
                shared = shared_prefix_length(rows) if prefix_cache else 0
                shared = shared if shared >= MIN_SHARED_PREFIX else 0
                new = _generate_in_cache(model, tokenizer, rows, shared, n, cache, kwargs)
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
            if progress is not None:
                progress(len(chunk))
    finally:
        model.train(was_training)
    return [t.strip() for t in out]


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Leading tokens common to every row, leaving each row at least one token of its own (the
    forward that follows the prefix must see one, or it has no logits to start from)."""
    if len(rows) < 2:
        return 0
    first, limit = rows[0], min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def _processors(masks: GrammarMasks) -> Any:
    from transformers import LogitsProcessorList

    return LogitsProcessorList([masks])


def _eos_ids(model: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def _empty_cache(model: Any) -> Any | None:
    """A KV cache whose rows can be copied, laid out with padding in the middle and dropped, or
    None where the model's cache or attention cannot take that (then: one plain `generate`)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    # Flash-attention kernels assume left padding; sliding-window and linear-attention layers do
    # not keep one entry per token.
    if getattr(model.config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return None
    if getattr(model.generation_config, "cache_implementation", None) is not None:
        return None  # the model asks `generate` for a cache of its own kind
    cache = DynamicCache(config=model.config)
    return cache if all(type(layer) is DynamicLayer for layer in cache.layers) else None


def _generate_left_padded(
    model: Any, tokenizer: Any, rows: list[list[int]], n: int, device: Any, kwargs: dict[str, Any]
) -> torch.Tensor:
    """Generated tokens of rows laid out [pad][prompt]: every prompt's last token is the row's last."""
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    extra = {"num_return_sequences": n} if n > 1 else {}
    out = model.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad, **kwargs, **extra)
    return out[:, width:]


def _generate_in_cache(
    model: Any,
    tokenizer: Any,
    rows: list[list[int]],
    shared: int,
    n: int,
    cache: Any,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    """Generated tokens (pad after a row's end) of rows whose first `shared` tokens are equal:
    that prefix runs once (batch 1) and its KV cache is copied to every row, laid out
    [prefix][pad][suffix_i]; with `shared=0` this is plain left padding.

    Why: batched prefill is compute-bound and on tool_use prompts the shared system prompt is
    ~85% of it (106 of ~125 tokens). Measured on smollm2-135m (bench/rollout_throughput.py, CPU,
    one thread, same text out): batched ReAct rollouts 1.39x faster at batch 16, 1.57x at batch
    32; 4.9x and 6.1x one-at-a-time, against 3.5x and 3.9x without it.

    `generate` derives positions as cumsum(attention_mask) - 1, so a suffix token sits at
    shared, shared+1, ... exactly as in its unpadded row, and the zero mask hides the pad slots;
    given a cache, `generate` feeds only the tokens past it (input_ids[:, cache_len:]).
    """
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    if shared:
        prefix = torch.tensor([rows[0][:shared]], device=device)
        model(input_ids=prefix, cache=cache, use_cache=True, logits_to_keep=1)
    rows = [r for r in rows for _ in range(n)]  # what num_return_sequences would repeat
    cache.batch_repeat_interleave(len(rows))  # a no-op on the empty cache of shared=0
    width = max(len(r) for r in rows)
    ids = torch.tensor([r[:shared] + [pad] * (width - len(r)) + r[shared:] for r in rows], device=device)
    mask = torch.tensor(
        [[1] * shared + [0] * (width - len(r)) + [1] * (len(r) - shared) for r in rows], device=device
    )
    return _decode_pruning(model, ids, mask, cache, pad, kwargs)


def _decode_pruning(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, pad: int, kwargs: dict[str, Any]
) -> torch.Tensor:
    """`generate` PRUNE_EVERY tokens at a time, dropping the rows that ended from the batch and
    the cache in between, so they stop costing decode steps.

    Why: a batch decodes until its longest row ends; on the base model's tool_use rollouts 7 of 16
    rows end early (722 of 1024 row-steps used), and pruning took ~9% off batched generation.
    A row's tokens do not depend on its batch-mates, so greedy output is unchanged.
    """
    eos = torch.tensor(_eos_ids(model), dtype=ids.dtype, device=ids.device)
    masks = [p for p in kwargs.get("logits_processor", ()) if isinstance(p, GrammarMasks)]
    total = kwargs["max_new_tokens"]
    # One row gains nothing (`generate` stops at its end): one call, as one-at-a-time always cost.
    every = PRUNE_EVERY if ids.shape[0] > 1 else total
    out = torch.full((ids.shape[0], total), pad, dtype=ids.dtype, device=ids.device)
    alive = torch.arange(ids.shape[0], device=ids.device)
    done = 0
    while done < total and len(alive):
        step = {**kwargs, "max_new_tokens": min(every, total - done)}
        res = model.generate(input_ids=ids, attention_mask=mask, cache=cache, pad_token_id=pad, **step)
        new = res[:, ids.shape[1] :]
        out[alive, done : done + new.shape[1]] = new
        done += new.shape[1]
        keep = (~torch.isin(new, eos).any(1)).nonzero().squeeze(1)
        if len(keep) < len(alive):
            cache.batch_select_indices(keep)
            for m in masks:
                m.keep(keep.tolist())
        mask = torch.cat([mask, mask.new_ones(len(alive), new.shape[1])], 1)[keep]
        ids, alive = res[keep], alive[keep]
    return out


@torch.no_grad()
def channel_logprobs(
    model: Any,
    tokenizer: Any,
    prefixes: Sequence[str],
    targets: Sequence[str],
    batch_size: int = 16,
    share_prefixes: bool = True,
) -> list[float]:
    """Mean per-token log P(target | prefix) for each pair (`toolcall.relevance.ChannelScore`):
    plain text, no chat template, prefix and target tokenized apart so a target's tokens are the
    same after every prefix; batches of `batch_size` rows, left-padded.

    Rows are batched in order of length and the scores put back in the caller's order: a gate
    scores every offered tool's prefix (12 to 150 tokens) against one request, so batches in
    request order were mostly padding. With logits kept only at target positions
    (`channel_logprob_tensor`), 1.61x the plain form's speed on a gate's pairs of 120 requests,
    1.42x on 30 (smollm2-135m, 2 CPU threads, median of 3 interleaved rounds, scores within 4e-6:
    bench/channel_scoring.py). With `share_prefixes`, rows whose prefix is the same text of more
    than MIN_SHARED_PREFIX tokens read it once (`_after_shared_prefix`): 3.13x on the argument
    rerank's policy pairs (100 pairs of 21 calls; same bench, scores within 2e-6).
    """
    out = [0.0] * len(prefixes)
    rest = set(range(len(prefixes)))
    if share_prefixes and _empty_cache(model) is not None:
        for prefix, rows in _repeated_prefixes(prefixes).items():
            ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            if len(ids) > MIN_SHARED_PREFIX:
                for start in range(0, len(rows), batch_size):
                    chunk = rows[start : start + batch_size]
                    found = _after_shared_prefix(model, tokenizer, ids, [targets[i] for i in chunk])
                    for i, score in zip(chunk, found, strict=True):
                        out[i] = score
                rest -= set(rows)
    order = sorted(rest, key=lambda i: len(prefixes[i]) + len(targets[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        found = channel_logprob_tensor(
            model, tokenizer, [prefixes[i] for i in chunk], [targets[i] for i in chunk]
        ).tolist()
        for i, score in zip(chunk, found, strict=True):
            out[i] = score
    return out


def _repeated_prefixes(prefixes: Sequence[str]) -> dict[str, list[int]]:
    """The rows of each prefix that more than one row has, in order."""
    rows: dict[str, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        rows.setdefault(prefix, []).append(i)
    return {prefix: found for prefix, found in rows.items() if len(found) > 1}


def _after_shared_prefix(
    model: Any, tokenizer: Any, prefix: list[int], targets: Sequence[str]
) -> list[float]:
    """`channel_logprobs` of targets after one prefix of token ids: all but its last token run
    once (batch 1) into a KV cache copied to every row, then each row feeds [last prefix
    token][its target][pad]. Pads only follow a row's own tokens, so causal attention keeps them
    out of every score, and positions continue from the cache as in the unpadded row.

    Why: the policy's side of the argument rerank (`tasks.tool_use.user_eval.policy_scorer`)
    scores ~5 candidates of ~20 tokens after one ~300-token prompt, so the prompt was ~90% of
    the tokens it read."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    own = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]
    cache = _empty_cache(model)
    model(input_ids=torch.tensor([prefix[:-1]], device=device), cache=cache, use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(len(own))
    width = max(map(len, own))
    ids = torch.tensor([[prefix[-1], *o] + [pad] * (width - len(o)) for o in own], device=device)
    logits = model(input_ids=ids, cache=cache, use_cache=True).logits
    scores = []
    for i, o in enumerate(own):
        if not o:
            scores.append(0.0)
            continue
        logp = logits[i, : len(o)].float().log_softmax(-1)
        scores.append(logp.gather(-1, ids[i, 1 : len(o) + 1].unsqueeze(-1)).mean().item())
    return scores


def channel_logprob_tensor(
    model: Any, tokenizer: Any, prefixes: Sequence[str], targets: Sequence[str]
) -> torch.Tensor:
    """`channel_logprobs` of one batch as a tensor that keeps its graph: what a relevance scorer
    is trained on (`train.relevance`) is then exactly what the gate reads. An empty target
    scores 0.0."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    rows, widths = [], []
    for prefix, target in zip(prefixes, targets, strict=True):
        own = tokenizer(target, add_special_tokens=False)["input_ids"]
        rows.append(tokenizer(prefix, add_special_tokens=False)["input_ids"] + own)
        widths.append(len(own))
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # Logits only where a target token is predicted (the last `keep` positions): the LM head over
    # a 49k vocabulary is ~a fifth of a 135M model's compute per token, and most tokens are prefix.
    keep = min(max(widths) + 1, width)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
    scores = []
    for i, k in enumerate(widths):
        if k == 0:
            scores.append(logits.new_zeros((), dtype=torch.float32))
            continue
        logp = logits[i, keep - k - 1 : keep - 1].float().log_softmax(-1)
        scores.append(logp.gather(-1, ids[i, width - k :].unsqueeze(-1)).mean())
    return torch.stack(scores)


def generator(
    model: Any,
    tokenizer: Any,
    max_new_tokens: int,
    batch_size: int,
    sample: tuple[float, float] | None = None,
    prefix_cache: bool = True,
) -> Callable[..., list[str]]:
    """A `generate` for the ReAct loop (`toolcall.Generate`) over `generate_batch`: batches of
    `batch_size`, greedy, or sampled with `sample=(temperature, top_p)`; `prefix_cache` as there.
    It also takes `grammars` (`toolcall.GrammarGenerate`), with the grammar tokenizer built once,
    and carries `channel` (`channel_logprobs` on the same model) for a relevance gate, and
    `base_channel` (the same with its adapter off, `base_weights`) for a gate the base model scores,
    and `render` (`render_prompts` with its tokenizer) for scoring a reply after its prompt."""
    temperature, top_p = sample or (1.0, 1.0)
    lltok: list[Any] = []  # built on the first constrained call (~0.5 s), then reused

    def generate(
        conversations: list[list[dict[str, str]]], grammars: Sequence[str | None] | None = None
    ) -> list[str]:
        if grammars is not None and not lltok:
            lltok.append(grammar_tokenizer(tokenizer))
        return generate_batch(
            model,
            tokenizer,
            conversations,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            do_sample=sample is not None,
            temperature=temperature,
            top_p=top_p,
            prefix_cache=prefix_cache,
            grammars=grammars,
            lltok=lltok[0] if lltok else None,
        )

    generate.channel = channel_scorer(model, tokenizer, batch_size)  # type: ignore[attr-defined]
    generate.render = functools.partial(render_prompts, tokenizer)  # type: ignore[attr-defined]
    generate.base_channel = channel_scorer(model, tokenizer, batch_size, base=True)  # type: ignore[attr-defined]
    if RELEVANCE_ADAPTER in getattr(model, "peft_config", {}):
        trained = channel_scorer(model, tokenizer, batch_size, adapter=RELEVANCE_ADAPTER)
        generate.trained_channel = trained  # type: ignore[attr-defined]
    return generate


def channel_scorer(
    model: Any, tokenizer: Any, batch_size: int = 16, base: bool = False, adapter: str | None = None
) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    """`channel_logprobs` on `model` as a `toolcall.relevance.ChannelScore`; with `base`, scored
    with a PEFT model's adapter off (`base_weights`); with `adapter`, scored through that one of
    its adapters (`adapter_weights`), e.g. a trained relevance scorer's."""

    def channel(prefixes: Sequence[str], targets: Sequence[str]) -> list[float]:
        if adapter is not None:
            context: Any = adapter_weights(model, adapter)
        else:
            context = base_weights(model) if base else contextlib.nullcontext()
        with context, torch.no_grad():
            return channel_logprobs(model, tokenizer, prefixes, targets, batch_size)

    return channel


def gate_channel(
    model: Any, tokenizer: Any, scorer: str, batch_size: int = 16
) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    """The channel a relevance gate of `scorer` reads on `model`: its own ("model"), its base's
    ("base"), or the trained scorer's loaded beside it ("trained", `RELEVANCE_ADAPTER`)."""
    if scorer == "trained":
        return channel_scorer(model, tokenizer, batch_size, adapter=RELEVANCE_ADAPTER)
    return channel_scorer(model, tokenizer, batch_size, base=scorer == "base")


@contextlib.contextmanager
def base_weights(model: Any) -> Iterator[Any]:
    """A PEFT model with its adapter off for the duration, merged (`merged`) or not, and as it
    was afterwards; any other model as it is.

    A merged adapter lives in the base weights, so switching it off alone would compute with
    them (PEFT then unmerges inside the forward and leaves the model unmerged): unmerge first,
    merge back after. Each such round trip rounds the weights once (harmless in float32, a
    bfloat16 ulp at worst), so a model scored this way often (`posttrain serve`) is best kept
    unmerged (`models.load_for_inference(keep_base=True)`).
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        yield model
        return
    was_merged = any(layer.merged for layer in layers)
    if was_merged:
        model.unmerge_adapter()
    try:
        with model.disable_adapter():
            yield model
    finally:
        if was_merged:
            model.merge_adapter()


@contextlib.contextmanager
def adapter_weights(model: Any, name: str) -> Iterator[Any]:
    """A PEFT model computing through its adapter `name` alone for the duration, whatever state it
    was in (another adapter active and merged for generation, or every adapter switched off to
    score the base model), and back in that state afterwards. A relevance scorer loaded beside the
    policy (`RELEVANCE_ADAPTER`) is read this way; the same rounding note as `base_weights`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if name not in getattr(model, "peft_config", {}):
        raise ValueError(f"the model has no adapter named {name!r}")
    was_merged = any(layer.merged for layer in layers)
    was_disabled = any(layer.disable_adapters for layer in layers)
    active = model.active_adapter
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    if was_merged:
        model.unmerge_adapter()
    if was_disabled:
        model.base_model.enable_adapter_layers()
    model.base_model.set_adapter(name, inference_mode=True)
    try:
        yield model
    finally:
        model.base_model.set_adapter(active, inference_mode=True)
        for n, p in model.named_parameters():
            p.requires_grad_(grads[n])
        if was_disabled:
            model.base_model.disable_adapter_layers()
        if was_merged:
            model.merge_adapter()


RELEVANCE_ADAPTER = "relevance"
"""The name a trained relevance scorer's LoRA has when loaded beside a policy's adapter."""


@contextlib.contextmanager
def merged(model: Any) -> Iterator[Any]:
    """Fold a PEFT model's LoRA weights into the base for generation, and back out afterwards.

    Unmerged LoRA costs extra matmuls on every projection, a real share of a 135M model's time on
    CPU. Unmerging before anything else touches the model matters: `unload()` on a merged model
    would keep the adapter baked into the base.
    """
    can = hasattr(model, "merge_adapter") and getattr(model, "peft_config", None)
    if can:
        model.merge_adapter()
    try:
        yield model
    finally:
        if can:
            model.unmerge_adapter()
