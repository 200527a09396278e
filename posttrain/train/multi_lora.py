"""Several LoRA updates trained together in one batched pass over the frozen base (SEAL's inner loop).

SEAL scores a self-edit by a LoRA update at batch 1: one short sequence per step, so on a CPU
most of every GEMM's width is wasted. Here K updates share each forward/backward: step s
stacks update k's step-s rows into one batch, and every row goes through its own adapter.
Each update stays exactly the one `lean_train` would run alone:

- its own rows, shuffle, epoch order, step count and LR schedule (its own `SFTArgs`: seed,
  learning rate, epochs), built by the same code; an update whose steps ran out just
  leaves the batch, so it never sees an extra step;
- its own loss normalisation (its rows' CE sum over its own label count) and the batch loss is
  the SUM over updates, so d(batch loss)/d(adapter k) is update k's gradient alone: rows do
  not interact in a causal LM (no batch norm), and each adapter only touches its own rows;
- its own parameters, AdamW (so Adam's moments and bias corrections count its own steps)
  and gradient clipping by ITS norm: clipping by the global norm over all adapters would
  couple them;
- its own divergence check: a NaN update stops alone and the others go on.

How rows reach their adapter: every LoRA layer of the PEFT model's `default` adapter has its
`forward` swapped, for the pass only, for one that adds `B_k(A_k(x[tokens of k])) * scaling`
to the frozen base output (PEFT's own mixed-adapter batches refuse training mode:
`Cannot pass adapter_names when the model is in training mode`). LoRA dropout must be 0:
dropout masks drawn for a batch of K cannot equal the masks of K separate runs.

The rows of a step are packed end to end into one sequence where the model runs its head
apart (below): a self-edit's rows are 16-111 tokens, and padding four of them to the longest
made the batch 1.69x the real tokens in the SEAL bench, more than batching saved. Attention
then runs row by row (`_rows_attention`), not under a block mask: a masked-out key still
enters the arithmetic as 0 x value, so one diverged update's NaNs would reach every row of
the pack. Other models pad.

On tiny-random K batched updates equal K `lean_train` runs step for step within float
rounding (tests/train/test_multi_lora.py).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from posttrain.train.args import SFTArgs
from posttrain.train.lean import Example, _epoch_order, _optimizer, _shifted, collate, prepare_examples
from posttrain.train.loop import TrainResult
from posttrain.train.restem import InnerLoop, active_adapter

ADAPTER = "default"  # the PEFT adapter whose layers are batched (InnerLoop's inner adapter)


@dataclass
class TrainedUpdate:
    """One update of a batched pass: its result (as `lean_train`'s) and its final LoRA weights,
    keyed like `lora_state(model)` for the `default` adapter."""

    result: TrainResult
    weights: dict[str, torch.Tensor]


@dataclass
class _Update:
    hp: SFTArgs
    plan: list[list[list[Example]]]  # step -> micro-batches -> rows, in lean_train's order
    items: list[int]  # label count of each step: the loss divisor (`num_items_in_batch`)
    params: list[nn.Parameter]  # (A, B) per LoRA layer, in layer order
    result: TrainResult = field(default_factory=lambda: TrainResult(status="completed", steps=0))
    optimizer: Any = None
    scheduler: Any = None
    loss: float = 0.0  # of the current step

    def live(self, step: int) -> bool:
        return self.result.status == "completed" and step < len(self.plan)


def lora_layers(model: Any) -> list[tuple[str, nn.Module]]:
    """The PEFT LoRA layers of the `default` adapter, by module name; refuses what cannot batch."""
    layers = []
    for name, module in model.named_modules():
        if ADAPTER in getattr(module, "lora_embedding_A", {}):
            raise ValueError(f"{name}: LoRA on an embedding does not batch; adapt linear layers only")
        lora_a = getattr(module, "lora_A", None)
        if not isinstance(lora_a, nn.ModuleDict) or ADAPTER not in lora_a:
            continue
        if not isinstance(module.lora_dropout[ADAPTER], nn.Identity):
            raise ValueError(
                "batched LoRA updates need lora dropout 0 (set inner.lora.dropout=0): masks drawn for "
                "a batch of K rows cannot equal those of K separate runs"
            )
        if ADAPTER in getattr(module, "lora_variant", {}) or not isinstance(lora_a[ADAPTER], nn.Linear):
            raise ValueError(f"{name}: only plain LoRA on linear layers batches (no DoRA or variants)")
        layers.append((name, module))
    if not layers:
        raise ValueError(f"the model has no LoRA adapter named {ADAPTER!r} to batch")
    return layers


class _Routing:
    """Which part of the current batch belongs to which update: (update slot, start, end) along
    `dim`, rows (0) of a padded batch or tokens (1) of a packed one."""

    def __init__(self) -> None:
        self.segments: list[tuple[int, int, int]] = []
        self.dim = 0


def _batched_forward(
    module: nn.Module, pairs: list[tuple[nn.Parameter, nn.Parameter]], routing: _Routing
) -> Callable[..., torch.Tensor]:
    scaling = module.scaling[ADAPTER]

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = module.base_layer(x, *args, **kwargs)
        parts = []
        for slot, start, end in routing.segments:
            a, b = pairs[slot]
            # The same two GEMMs as PEFT's lora_B(lora_A(x)) * scaling, on this update's rows only.
            mine = x.narrow(routing.dim, start, end - start)
            parts.append(F.linear(F.linear(mine.to(a.dtype), a), b))
        return result + (torch.cat(parts, routing.dim) * scaling).to(result.dtype)

    return forward


@contextmanager
def _routed(
    layers: list[tuple[str, nn.Module]], updates: Sequence[_Update], routing: _Routing
) -> Iterator[None]:
    """Swap each LoRA layer's forward for the routed one for the pass; always restore the old one."""
    saved = [module.__dict__.get("forward") for _, module in layers]  # an instance forward (hooks) stays
    try:
        for i, (_, module) in enumerate(layers):
            pairs = [(u.params[2 * i], u.params[2 * i + 1]) for u in updates]
            module.forward = _batched_forward(module, pairs, routing)  # type: ignore[method-assign]
        yield
    finally:
        for (_, module), old in zip(layers, saved, strict=True):
            module.__dict__.pop("forward", None)
            if old is not None:
                module.forward = old  # type: ignore[method-assign]


def _plan(examples: list[Example], hp: SFTArgs) -> list[list[list[Example]]]:
    """The optimizer steps `lean_train` would take on these examples: same count, order, batches."""
    if not examples:
        return []
    per_epoch = math.ceil(len(examples) / hp.batch_size)
    ga = hp.gradient_accumulation_steps
    updates_per_epoch = max(per_epoch // ga + int(per_epoch % ga > 0), 1)
    total = hp.max_steps if hp.max_steps > 0 else math.ceil(hp.epochs * updates_per_epoch)
    steps: list[list[list[Example]]] = []
    epoch = 0
    while len(steps) < total:
        order = _epoch_order(len(examples), hp.seed, epoch)
        batches = [
            [examples[i] for i in order[b : b + hp.batch_size]] for b in range(0, len(order), hp.batch_size)
        ]
        for first in range(0, len(batches), ga):
            steps.append(batches[first : first + ga])
            if len(steps) >= total:
                break
        epoch += 1
    return steps


def _new_update(tokenizer: Any, rows: Sequence[dict], hp: SFTArgs, layers: list) -> _Update:
    from transformers import get_scheduler

    if hp.packing:
        raise ValueError("batched LoRA updates do not pack: set SFTArgs(packing=False)")
    plan = _plan(prepare_examples(tokenizer, rows, hp.max_length, hp.seed), hp)
    # lean counts labels[:, 1:] of the padded batch; pads are -100, so this is the same count.
    items = [sum(label != -100 for micro in step for ex in micro for label in ex.labels[1:]) for step in plan]
    params = []
    for _, module in layers:  # every update starts from the adapter's current (initial) weights
        for lora in (module.lora_A[ADAPTER], module.lora_B[ADAPTER]):
            params.append(nn.Parameter(lora.weight.detach().clone()))
    update = _Update(hp, plan, items, params)
    if plan:
        update.optimizer = _optimizer(params, hp)
        total = len(plan)
        warmup = int(hp.warmup_ratio) if hp.warmup_ratio >= 1 else math.ceil(total * hp.warmup_ratio)
        update.scheduler = get_scheduler(
            hp.scheduler, update.optimizer, num_warmup_steps=warmup, num_training_steps=total
        )
    return update


# Causal LMs whose logits are exactly `lm_head(last_hidden_state)`: no soft-capping or logit
# scaling between the two (Gemma, Cohere and Granite have one), so the head can run apart;
# their attention goes through transformers' AttentionInterface with the forward's keyword
# arguments, which is how `_rows_attention` gets the packed rows' bounds.
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def _unwrapped(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _body_and_head(model: Any) -> tuple[nn.Module, nn.Module] | None:
    """The decoder body and LM head of a plain-head model whose head is not a LoRA layer and
    whose rows can be packed, else None. A sliding window is left to the padded path: SDPA
    without a mask (`_rows_attention`) would attend past it."""
    lm = _unwrapped(model)
    head = lm.get_output_embeddings()
    body = lm.base_model
    if lm.config.model_type not in PLAIN_HEAD_TYPES or head is None or body is lm or hasattr(head, "lora_A"):
        return None
    if getattr(lm.config, "sliding_window", None) and getattr(lm.config, "use_sliding_window", True):
        return None
    return body, head


def _packed(examples: Sequence[Example], device: Any) -> tuple[dict[str, torch.Tensor], list[int]]:
    """The rows end to end in one sequence, positions restarting at 0 for each, `row` naming each
    token's row; and the row bounds (row i is tokens bounds[i]:bounds[i + 1]). A row's first
    label is dropped: the shift would have the previous row's last token predict it, and lean
    never counts it (it counts labels[:, 1:])."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    row: list[int] = []
    for i, ex in enumerate(examples):
        ids += ex.input_ids
        labels += [-100, *ex.labels[1:]]
        positions += range(len(ex.input_ids))
        row += [i] * len(ex.input_ids)
    out = {"input_ids": ids, "labels": labels, "position_ids": positions, "row": row}
    bounds = [0, *itertools.accumulate(len(ex.input_ids) for ex in examples)]
    return {k: torch.tensor([v], dtype=torch.long, device=device) for k, v in out.items()}, bounds


ROWS_ATTENTION = "posttrain_packed_rows"


def _rows_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    row_bounds: Sequence[int],
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA over each packed row alone (rows at `row_bounds[i]:row_bounds[i + 1]`)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    parts = [
        sdpa_attention_forward(
            module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, is_causal=True, **kwargs
        )[0]
        for a, b in itertools.pairwise(row_bounds)
    ]
    return torch.cat(parts, 1), None


@contextmanager
def _rows_attention_on(model: Any, on: bool) -> Iterator[None]:
    """The model's attention is `_rows_attention` for the pass (if `on`); always restored."""
    lm = _unwrapped(model)
    old = lm.config._attn_implementation
    if on:
        from transformers import AttentionInterface

        AttentionInterface.register(ROWS_ATTENTION, _rows_attention)
        lm.set_attn_implementation(ROWS_ATTENTION)
    try:
        yield
    finally:
        if on:
            lm.set_attn_implementation(old)


def _packed_row_losses(
    body: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor], bounds: list[int]
) -> torch.Tensor:
    """Per-row cross-entropy sums of a `_packed` batch (lean's `summed_loss`, one sum per row).

    The head runs on the label positions only: on a 49k vocabulary it is most of a small
    model's compute. Runs under `_rows_attention_on`.
    """
    labels = _shifted(batch["labels"])[0]
    hidden = body(
        input_ids=batch["input_ids"],
        position_ids=batch["position_ids"],
        use_cache=False,
        row_bounds=bounds,
    ).last_hidden_state[0]
    cols = (labels != -100).nonzero().squeeze(-1)
    ce = F.cross_entropy(head(hidden[cols]).float(), labels[cols], reduction="none")
    return ce.new_zeros(len(bounds) - 1).index_add(0, batch["row"][0][cols], ce)


def _padded_row_losses(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-row cross-entropy sums of a padded batch, for models whose head cannot run apart:
    HF's `logits_to_keep` takes every position where any row has a label."""
    labels = _shifted(batch["labels"])
    keep = (labels != -100).any(0).nonzero().squeeze(-1)
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        use_cache=False,
        logits_to_keep=keep,
    )
    targets = labels[:, keep]
    ce = F.cross_entropy(
        out.logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none"
    )
    return ce.view(targets.shape).sum(1)


@dataclass
class _Pass:
    """What every micro-batch of one batched pass shares."""

    model: Any
    split: tuple[nn.Module, nn.Module] | None
    routing: _Routing
    pad_id: int
    device: Any


def _micro_pass(p: _Pass, live: list[tuple[int, _Update]], step: int, m: int) -> None:
    """Forward/backward of micro-batch `m` of step `step` of every live update, as one batch."""
    rows: list[Example] = []
    owners: list[tuple[int, _Update, int, int]] = []
    for slot, u in live:
        micros = u.plan[step]
        if m < len(micros):
            owners.append((slot, u, len(rows), len(rows) + len(micros[m])))
            rows += micros[m]
    if not rows:
        return
    if p.split is not None:  # packed: the segments are token ranges of the one sequence
        batch, bounds = _packed(rows, p.device)
        p.routing.dim = 1
        p.routing.segments = [(slot, bounds[start], bounds[end]) for slot, _, start, end in owners]
        per_row = _packed_row_losses(*p.split, batch, bounds)
    else:
        p.routing.dim = 0
        p.routing.segments = [(slot, start, end) for slot, _, start, end in owners]
        per_row = _padded_row_losses(p.model, collate(rows, p.pad_id, p.device))
    losses = []
    for _, u, start, end in owners:
        loss = per_row[start:end].sum() / max(u.items[step], 1)
        losses.append(loss)
        u.loss += float(loss.detach())
        u.result.train_tokens += sum(len(ex.input_ids) for ex in rows[start:end])
    # A sum, not a mean: each adapter's gradient is then exactly its own update's.
    torch.stack(losses).sum().backward()


def _apply(u: _Update, step: int) -> None:
    """Clip by this update's own norm and step its own optimizer; or stop it alone if it diverged."""
    number, loss = step + 1, u.loss
    u.loss = 0.0
    error = None
    if not math.isfinite(loss):
        error = f"training diverged at step {number}: loss is {loss}"
    else:
        norm = torch.nn.utils.clip_grad_norm_(u.params, u.hp.max_grad_norm)  # as lean_train checks it
        if not torch.isfinite(norm):
            error = f"training diverged at step {number}: non-finite gradient"
    if error is not None:
        u.optimizer.zero_grad(set_to_none=True)
        u.result.status, u.result.error = "diverged", f"{error} (try a lower learning rate)"
        return
    u.optimizer.step()
    u.scheduler.step()
    u.optimizer.zero_grad(set_to_none=True)
    u.result.steps = number
    u.result.losses.append((number, loss))


def multi_lean_train(
    model: Any, tokenizer: Any, updates: Sequence[tuple[Sequence[dict], SFTArgs]]
) -> list[TrainedUpdate]:
    """Train one LoRA update per `(rows, hp)` together, each as `lean_train(model, rows, hp)` alone.

    Every update starts from the current weights of the PEFT adapter `default` (reset it
    first) and trains a copy of them; the model itself is left unchanged. Load an update's
    weights with `load_lora_weights` to evaluate it. `hp.packing` must be False and the
    adapter's dropout 0. `runtime_s` of every result is the wall time of the whole pass.
    """
    layers = lora_layers(model)
    states = [_new_update(tokenizer, rows, hp, layers) for rows, hp in updates]
    p = _Pass(
        model, _body_and_head(model), _Routing(), tokenizer.pad_token_id, next(model.parameters()).device
    )
    was_training = model.training
    model.train()
    start = time.perf_counter()
    try:
        with _routed(layers, states, p.routing), _rows_attention_on(model, p.split is not None):
            step = 0
            while live := [(slot, u) for slot, u in enumerate(states) if u.live(step)]:
                for m in range(max(len(u.plan[step]) for _, u in live)):
                    _micro_pass(p, live, step, m)
                for _, u in live:
                    _apply(u, step)
                step += 1
    finally:
        model.train(was_training)
    elapsed = time.perf_counter() - start
    out = []
    for u in states:
        u.result.runtime_s = elapsed
        weights = {}
        for i, (name, _) in enumerate(layers):
            weights[f"{name}.lora_A.{ADAPTER}.weight"] = u.params[2 * i].detach()
            weights[f"{name}.lora_B.{ADAPTER}.weight"] = u.params[2 * i + 1].detach()
        out.append(TrainedUpdate(u.result, weights))
    return out


def load_lora_weights(model: Any, weights: dict[str, torch.Tensor]) -> None:
    """Copy one trained update's weights into the model's `default` adapter (to evaluate it)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


@dataclass(frozen=True)
class InnerRun:
    """One inner update to score: a self-edit's rows, the run's seed and its hparam overrides."""

    rows: Sequence[dict]
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)


def score_together(
    inner: InnerLoop, runs: Sequence[InnerRun], evaluate: Callable[[int], float]
) -> list[float]:
    """`InnerLoop.score` for many runs in one batched pass: the adapted score of each run.

    `evaluate(i)` scores the model with run i's update loaded (NaN for a diverged run, as in
    `InnerLoop.score`). The adapter ends reset. Train as many runs together as memory allows:
    each holds a copy of the adapter and its AdamW moments.
    """
    if not runs:
        return []
    inner.reset()
    hps = [replace(inner.hp, seed=run.seed, **run.overrides) for run in runs]
    with active_adapter(inner.model, ADAPTER):
        trained = multi_lean_train(
            inner.model, inner.tokenizer, [(run.rows, hp) for run, hp in zip(runs, hps, strict=True)]
        )
    scores = []
    for i, update in enumerate(trained):
        if update.result.status != "completed":
            scores.append(math.nan)
            continue
        load_lora_weights(inner.model, update.weights)
        scores.append(evaluate(i))
    inner.reset()
    return scores
