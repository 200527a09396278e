"""Fluency: how likely a reference model finds each response after its prompt."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from posttrain.train.rewards.text import Text, check_pairs


@torch.no_grad()
def fluency(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Text],
    responses: Sequence[Text],
    batch_size: int = 8,
    *,
    temperature: float = 5.0,
    max_length: int = 1024,
) -> list[float]:
    """How likely the reference model finds each response after its prompt, in (0, 1].

    fluency = exp(-mean NLL / temperature) = perplexity ** (-1 / temperature), with the NLL
    averaged over the response's tokens only (the prompt is context, not scored). With the
    default temperature 5: perplexity 1 -> 1.0, 10 -> 0.63, 100 -> 0.40, 50,000 -> 0.11.
    An empty response scores 0. Prompts are used as given when they are strings
    (format them first) and through the chat template when they are message lists.
    Prompt and response are tokenized separately and joined, so the scored tokens are
    exactly the response's; the prompt is cut from the left to fit `max_length`.
    The model runs in eval mode without gradients and is put back in its previous mode.
    """
    check_pairs(prompts, responses)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    pairs = [_token_pair(tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        for start in range(0, len(pairs), batch_size):
            scores.extend(_batch_nll(model, pairs[start : start + batch_size], tokenizer, device))
    finally:
        model.train(was_training)
    return [0.0 if nll is None else math.exp(-nll / temperature) for nll in scores]


def _token_pair(tokenizer: Any, prompt: Text, response: Text, max_length: int) -> tuple[list[int], list[int]]:
    if isinstance(prompt, list):
        prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    if isinstance(response, list):
        response = "".join(str(m.get("content", "")) for m in response)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"][:max_length]
    keep = max(0, max_length - len(r_ids))
    return p_ids[max(0, len(p_ids) - keep) :] if keep else [], r_ids


def _batch_nll(model: Any, pairs: list[tuple[list[int], list[int]]], tokenizer: Any, device: Any) -> list:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(p) + len(r) for p, r in pairs)
    if width == 0:
        return [None] * len(pairs)
    ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for i, (p, r) in enumerate(pairs):  # right padding: positions stay 0..n-1 for every row
        seq = p + r
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
        labels[i, len(p) : len(seq)] = torch.tensor(r, dtype=torch.long)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    shifted = labels[:, 1:].to(device)
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="none"
    )
    counted = (shifted != -100).sum(1)
    # The first response token of a row with no prompt has no context to be predicted from.
    return [None if c == 0 else float(n.sum() / c) for n, c in zip(nll, counted, strict=True)]
