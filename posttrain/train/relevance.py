"""A LoRA trained for the relevance gate's decision: which offered tool, if any, a request is about.

Why: the base model's noisy channel (`toolcall.relevance`) separates requests some tool fits from
those none does with AUC ~0.90 on tool families it never saw, and a threshold that keeps 90% of
calls declines only 0.54-0.74 of the no-call requests there. Training the channel itself for that
decision lifts it: a LoRA (r 8) on the base, fitted on 300 requests of 20 training families with
the loss below, reached AUC 0.96 and declined 0.85-0.94 at the same 90% on 7 training families
held back from it (two data orders and two family splits; bench/tool_relevance_trained.py,
variant gate_trained_relevance_scorer of bench/results/align_quality.json).

The loss is listwise over one request's candidates, so it trains exactly what the gate reads:
a softmax over `scale` x [the lift of each offered tool (log P(request | tool) - log P(request |
null tool), per token), 0 for "no tool"], with the gold tool, or "no tool" on a request none
fits, as the target. The scores are `inference.channel_logprob_tensor`, the same function the gate
calls, so what is trained is what is read.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from posttrain.inference import channel_logprob_tensor
from posttrain.toolcall.relevance import RelevanceExample


@dataclass(frozen=True)
class RelevanceArgs:
    """How the scorer is fitted. `scale` turns nats per token into logits: lifts are ~0.1-1.0
    nats, so at scale 1 the softmax is nearly flat and the loss barely moves them."""

    learning_rate: float = 3e-4
    scale: float = 10.0
    batch: int = 4  # requests per optimizer step
    warmup_ratio: float = 0.1
    seed: int = 0


def relevance_loss(
    model: Any, tokenizer: Any, examples: Sequence[RelevanceExample], scale: float
) -> torch.Tensor:
    """The mean listwise cross-entropy of `examples` (see the module docstring), all their
    candidates scored in one padded batch."""
    prefixes = [p for e in examples for p in e.prefixes]
    requests = [e.request for e in examples for _ in e.prefixes]
    logprobs = channel_logprob_tensor(model, tokenizer, prefixes, requests).split(
        [len(e.prefixes) for e in examples]
    )
    losses = []
    for example, own in zip(examples, logprobs, strict=True):
        lifts = own[:-1] - own[-1]
        logits = scale * torch.cat([lifts, lifts.new_zeros(1)])
        losses.append(torch.nn.functional.cross_entropy(logits.unsqueeze(0), torch.tensor([example.gold])))
    return torch.stack(losses).mean()


def train_relevance(
    model: Any, tokenizer: Any, examples: Sequence[RelevanceExample], args: RelevanceArgs
) -> dict[str, Any]:
    """One epoch over `examples` (shuffled by `args.seed`) on `model`'s trainable parameters,
    `args.batch` requests per AdamW step with linear warm-up and decay; deterministic for a seed.
    Returns what the run records."""
    if not examples:
        raise ValueError("training a relevance scorer needs at least one example")
    order = list(examples)
    random.Random(args.seed).shuffle(order)
    torch.manual_seed(args.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=0.0)
    warmup = max(1.0, args.warmup_ratio * len(order))
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    for first in range(0, len(order), args.batch):
        last = min(first + args.batch, len(order)) - 1  # the schedule runs per request
        rate = args.learning_rate * min(1.0, (last + 1) / warmup) * (1 - last / len(order))
        for group in optimizer.param_groups:
            group["lr"] = rate
        batch = order[first : first + args.batch]
        # one forward pass per request: padding a batch of them to one width was slower on
        # 2 CPU cores (52 s against 37-42 s for 32 requests of smollm2-135m)
        for example in batch:
            loss = relevance_loss(model, tokenizer, [example], args.scale)
            (loss / len(batch)).backward()
            losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    window = max(1, min(50, len(losses) // 4))
    return {
        "examples": len(order),
        "no_tool_examples": sum(e.gold == len(e.prefixes) - 1 for e in order),
        "steps": math.ceil(len(order) / args.batch),
        "loss_first": round(sum(losses[:window]) / window, 4),
        "loss_last": round(sum(losses[-window:]) / window, 4),
        "runtime_s": round(time.perf_counter() - start, 1),
    }
