"""An auxiliary loss for the RL trainers: rank a better answer above a worse one to the same
prompt (seed 003's contrastive term, added to the GRPO/RLOO loss by `ContrastiveLossMixin`)."""

from __future__ import annotations

import random
from typing import Any

import torch


class ContrastiveAux:
    """Auxiliary loss that ranks a better answer above a worse one to the same prompt.

    Each item is a row of `contrastive_pairs` (prompt, chosen, rejected). With s = the mean
    log-probability of an answer's tokens under the policy,

        loss = softplus((s_rejected - s_chosen) / temperature)    (= -log softmax over the pair)

    averaged over `batch_size` pairs per micro-step, visited in a seeded order. A low
    temperature (seed 003 uses 0.07) makes it a near-hinge: pairs already ranked by a
    clear margin stop contributing. The trainer adds `weight` x loss to the RL loss.
    """

    def __init__(
        self,
        tokenizer: Any,
        pairs: list[dict],
        *,
        temperature: float,
        weight: float,
        batch_size: int = 2,
        max_length: int = 512,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise ValueError("the contrastive loss needs at least one (chosen, rejected) pair")
        if temperature <= 0:
            raise ValueError(f"contrastive temperature must be > 0, got {temperature}")
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.weight = weight
        self.batch_size = batch_size
        self.items = [
            (
                _encode(tokenizer, p["prompt"], p["chosen"], max_length),
                _encode(tokenizer, p["prompt"], p["rejected"], max_length),
            )
            for p in pairs
        ]
        self.order = list(range(len(self.items)))
        random.Random(seed).shuffle(self.order)

    def batch(self, index: int) -> list[int]:
        """Item indices for micro-step `index` (cycles through the seeded order)."""
        n = len(self.order)
        return [self.order[(index * self.batch_size + k) % n] for k in range(min(self.batch_size, n))]

    def loss(self, model: Any, index: int) -> tuple[torch.Tensor, float]:
        """(loss with grad, share of pairs ranked correctly) for micro-step `index`."""
        chosen = [self.items[i][0] for i in self.batch(index)]
        rejected = [self.items[i][1] for i in self.batch(index)]
        scores = _mean_logprobs(model, [*chosen, *rejected], self.tokenizer.pad_token_id or 0)
        s_hi, s_lo = scores[: len(chosen)], scores[len(chosen) :]
        loss = torch.nn.functional.softplus((s_lo - s_hi) / self.temperature).mean()
        return loss, float((s_hi > s_lo).float().mean())


def _encode(tokenizer: Any, prompt: Any, answer: Any, max_length: int) -> tuple[list[int], int]:
    """(token ids of prompt + answer + EOS, number of prompt tokens); the prompt is cut from the left."""
    if isinstance(prompt, list):
        prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(_answer_text(answer) + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    a_ids = a_ids[: max_length - 1]
    p_ids = p_ids[max(0, len(p_ids) - (max_length - len(a_ids))) :]
    return p_ids + a_ids, len(p_ids)


def _mean_logprobs(model: Any, items: list[tuple[list[int], int]], pad: int) -> torch.Tensor:
    """Mean log-probability of each item's answer tokens (right-padded batch, one forward)."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width - 1), -100, dtype=torch.long)
    for row, (seq, n_prompt) in enumerate(items):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        start = max(1, n_prompt)  # token 0 has nothing to be predicted from
        labels[row, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    # Project to the vocabulary only where some row has an answer token: the full logits of
    # a batch are vocab x longer than the hidden states and dominated the cost on CPU.
    keep = (labels != -100).any(0).nonzero().squeeze(-1)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits.float()
    targets = labels[:, keep]
    nll = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none"
    ).view(targets.shape)
    return -nll.sum(1) / (targets != -100).sum(1).clamp(min=1)


class ContrastiveLossMixin:
    """Adds `contrastive.weight` x ContrastiveAux loss to the RL loss of each training micro-step."""

    contrastive: ContrastiveAux | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        aux = self.contrastive
        if aux is None or aux.weight == 0 or not self.model.training:  # type: ignore[attr-defined]
            return loss
        c_loss, accuracy = aux.loss(model, getattr(self, "_step", 0))
        # GRPO returns a loss already divided over accumulation steps, RLOO leaves that to HF.
        if getattr(self, "loss_is_scaled_for_ga", False):
            c_loss = c_loss / self.current_gradient_accumulation_steps  # type: ignore[attr-defined]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        metrics["contrastive/loss"].append(float(c_loss.detach()))
        metrics["contrastive/accuracy"].append(accuracy)
        return loss + aux.weight * c_loss


def _answer_text(value: Any) -> str:
    return "".join(m.get("content", "") for m in value) if isinstance(value, list) else str(value)
