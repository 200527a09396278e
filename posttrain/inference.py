"""Batched, left-padded generation from chat conversations, the `generate` callable the ReAct
loop takes, and LoRA weights merged for the time of a generation.

Left padding keeps every prompt's last token at the end of the row, so one `generate` call
serves a whole batch; decoding starts after the padded prompt width.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch


def render_prompts(
    tokenizer: Any, conversations: Sequence[list[dict]], tools: list[dict] | None = None
) -> list[str]:
    """Chat-template each conversation with the assistant turn opened."""
    return [
        tokenizer.apply_chat_template(list(conv), tools=tools, add_generation_prompt=True, tokenize=False)
        for conv in conversations
    ]


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
) -> list[str]:
    """Completions for every conversation, `num_return_sequences` per conversation, in order."""
    texts = render_prompts(tokenizer, conversations, tools)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p, num_return_sequences=num_return_sequences)
            ids = model.generate(**enc, pad_token_id=tokenizer.pad_token_id, **kwargs)
            new = ids[:, enc["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
            if progress is not None:
                progress(len(chunk))
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return [t.strip() for t in out]


def generator(
    model: Any,
    tokenizer: Any,
    max_new_tokens: int,
    batch_size: int,
    sample: tuple[float, float] | None = None,
) -> Callable[[list[list[dict[str, str]]]], list[str]]:
    """A `generate` for the ReAct loop (`toolcall.Generate`) over `generate_batch`: batches of
    `batch_size`, greedy, or sampled with `sample=(temperature, top_p)`."""
    temperature, top_p = sample or (1.0, 1.0)

    def generate(conversations: list[list[dict[str, str]]]) -> list[str]:
        return generate_batch(
            model,
            tokenizer,
            conversations,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            do_sample=sample is not None,
            temperature=temperature,
            top_p=top_p,
        )

    return generate


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
