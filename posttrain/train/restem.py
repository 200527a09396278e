"""SEAL's two loops: the inner self-edit update and the pieces of the ReST-EM outer loop.

Inner loop (`InnerLoop`): a self-edit becomes a LoRA SFT update on the resident base model.
Between self-edits the adapter is reset in place (`ResidentModel.reset_adapter`: B back to
zero, A to its first draw), so the model is exactly the base again, bit for bit, without
re-wrapping PEFT or reloading weights; updates run through `lean_train`, whose losses
equal the HF Trainer's (labels mask padding there as in the Trainer path).

Outer loop (ReST-EM, Singh et al. 2023, as SEAL uses it): the E-step samples self-edits from
the current generator and scores each by the reward of its inner update; `select_kept`
applies the rejection rule; the M-step (`GeneratorAdapter.m_step`) is SFT of the generator
on the kept ones (prompt = the self-edit prompt, completion = the self-edit).

The generator is a second LoRA adapter ("generator") on the same resident base. The inner
updates always start from the plain base, never from the generator's weights: the reward
of a self-edit then measures the self-edit alone, stays comparable across rounds, and the
results table compares generators on one fixed downstream update, as the paper's does.

Rewards are the domain's (posttrain.tasks.seal.rewards): this module only sees their values.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from posttrain.inference import generate_batch
from posttrain.models import LORA_TARGETS, ResidentModel, lora_config, lora_state
from posttrain.train.args import SFTArgs
from posttrain.train.lean import lean_train
from posttrain.train.loop import TrainResult
from posttrain.train.sft import sft_train

GENERATOR = "generator"  # PEFT name of the generator adapter; the inner adapter is PEFT's "default"


def derive_seed(master: int, *parts: Any) -> int:
    """A stable 31-bit seed for one named piece of a run (same inputs, same seed, any machine)."""
    digest = hashlib.blake2b(repr((master, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)


# ---------------------------------------------------------------- inner loop


class InnerLoop:
    """Applies self-edits as LoRA updates on the resident base; the adapter is reset before each.

    `hp` holds the defaults of every update; a self-edit may override fields (ARC's
    learning_rate and epochs). `hp.packing` must be False (see `lean_train`).
    """

    def __init__(
        self,
        resident: ResidentModel,
        *,
        r: int,
        alpha: int,
        dropout: float,
        hp: SFTArgs,
        adapter_seed: int,
        targets: list[str] | None = None,
    ) -> None:
        self.resident = resident
        self.hp = replace(hp, packing=False)
        self.model = resident.fresh_adapter(r, alpha, dropout, adapter_seed, targets)
        self.tokenizer = resident.tokenizer

    def reset(self) -> None:
        """Make the model exactly the base again (the inner adapter becomes a no-op)."""
        self.resident.reset_adapter()

    def adapt(self, rows: Sequence[dict], seed: int, **overrides: Any) -> TrainResult:
        """Reset, then train the inner adapter on `rows`; the model stays adapted for evaluation."""
        self.reset()
        hp = replace(self.hp, seed=seed, **overrides)
        with active_adapter(self.model, "default"):
            return lean_train(self.model, self.tokenizer, rows, hp)

    def score(
        self, rows: Sequence[dict], evaluate: Callable[[], float], seeds: Sequence[int], **overrides: Any
    ) -> list[float]:
        """One adapted score per seed, each a fresh update from the base; a diverged update scores NaN."""
        scores = []
        for seed in seeds:
            result = self.adapt(rows, seed, **overrides)
            scores.append(evaluate() if result.status == "completed" else math.nan)
        self.reset()
        return scores


@contextmanager
def active_adapter(model: Any, name: str) -> Iterator[Any]:
    """Run a block with PEFT adapter `name` active (and trainable), restoring the previous one."""
    previous = model.active_adapter
    if previous != name:
        model.set_adapter(name)
    try:
        yield model
    finally:
        if previous != name:
            model.set_adapter(previous)


# ---------------------------------------------------------------- generator and M-step


class GeneratorAdapter:
    """The self-edit generator: a LoRA adapter named "generator" beside the inner one.

    At its initial weights (B = 0) it is the base model. `restart` puts it back there, which
    is ReST-EM's "fine-tune the base each round"; otherwise M-steps continue from the last
    round's weights.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, r: int, alpha: int, seed: int, targets: list[str] | None = None
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.add_adapter(GENERATOR, lora_config(r, alpha, 0.0, list(targets or LORA_TARGETS)))
        self._initial = {n: t for n, t in lora_state(model).items() if f".{GENERATOR}." in n}
        self.trained_rounds = 0

    def restart(self) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self._initial.items():
                params[name].copy_(value)
        self.trained_rounds = 0

    def generate(
        self,
        prompts: Sequence[list[dict]],
        *,
        k: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        batch_size: int,
        seed: int,
        use_base: bool = False,
    ) -> tuple[list[list[str]], list[int]]:
        """`k` sampled self-edits per prompt, and the sampling seed of each prompt's batch.

        Prompts are sampled `batch_size` at a time, `k` return sequences each; every batch
        seeds torch with `derive_seed(seed, batch_index)` first, so a run regenerates the same
        texts. `use_base` samples from the base model (all adapters off).
        """
        out: list[list[str]] = []
        seeds: list[int] = []
        for index, start in enumerate(range(0, len(prompts), batch_size)):
            chunk = list(prompts[start : start + batch_size])
            batch_seed = derive_seed(seed, "generate", index)
            torch.manual_seed(batch_seed)
            texts = self._sample(chunk, k, temperature, top_p, max_new_tokens, use_base)
            out += [texts[i * k : (i + 1) * k] for i in range(len(chunk))]
            seeds += [batch_seed] * len(chunk)
        return out, seeds

    def _sample(
        self, chunk: list, k: int, temperature: float, top_p: float, max_new_tokens: int, use_base: bool
    ) -> list[str]:
        kwargs = dict(
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            num_return_sequences=k,
            batch_size=len(chunk),
        )
        if use_base:
            with self.model.disable_adapter():
                return generate_batch(self.model, self.tokenizer, chunk, **kwargs)
        with active_adapter(self.model, GENERATOR):
            return generate_batch(self.model, self.tokenizer, chunk, **kwargs)

    def m_step(self, rows: list[dict], out_dir: Path, hp: SFTArgs, restart: bool) -> TrainResult:
        """SFT of the generator on prompt/completion rows of kept self-edits (TRL SFTTrainer path)."""
        if restart:
            self.restart()
        with active_adapter(self.model, GENERATOR):
            result = sft_train(
                self.model, self.tokenizer, rows, None, out_dir, hp, checkpoints=False, eval_before=False
            )
        if result.status == "completed":
            self.trained_rounds += 1
        return result

    def save(self, out: Path) -> Path:
        """Save only the generator adapter; PEFT writes it to `out/generator/`."""
        self.model.save_pretrained(str(out), selected_adapters=[GENERATOR])
        return out / GENERATOR


# ---------------------------------------------------------------- E-step records and selection


@dataclass
class SelfEditSample:
    """One sampled self-edit and what its inner update did."""

    iteration: int
    context_id: str
    sample_index: int
    prompt: list[dict]
    text: str
    generation_seed: int
    inner_seeds: list[int] = field(default_factory=list)
    valid: bool = True
    score_before: float = 0.0
    run_scores: list[float] = field(default_factory=list)
    score_after: float | None = None
    reward: float = 0.0
    kept: bool = False
    completion: str = ""  # what the M-step trains on (the canonical form of `text`)

    @property
    def improvement(self) -> float | None:
        return None if self.score_after is None else self.score_after - self.score_before

    def to_json(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "context_id": self.context_id,
            "sample_index": self.sample_index,
            "text": self.text,
            "valid": self.valid,
            "generation_seed": self.generation_seed,
            "inner_seeds": self.inner_seeds,
            "score_before": self.score_before,
            "run_scores": self.run_scores,
            "score_after": self.score_after,
            "improvement": self.improvement,
            "reward": self.reward,
            "kept": self.kept,
        }


def mean_score(scores: Sequence[float]) -> float | None:
    """Mean of the finite scores (a diverged inner run is left out); None when none is finite."""
    finite = [s for s in scores if math.isfinite(s)]
    return sum(finite) / len(finite) if finite else None


def select_kept(
    samples: Sequence[SelfEditSample],
    keep: str = "all_positive",
    min_gain: float = 0.0,
    max_per_context: int | None = None,
) -> list[SelfEditSample]:
    """ReST-EM's rejection step: mark and return the self-edits the M-step trains on.

    Eligible: valid, reward > 0 and improvement >= `min_gain`. `keep="top1"` keeps the best
    eligible self-edit of each context (SEAL's knowledge setting), `"all_positive"` keeps
    every eligible one (SEAL's ARC setting); `max_per_context` caps either. Ranking is by
    reward, then improvement, then sample order.
    """
    if keep not in ("all_positive", "top1"):
        raise ValueError(f"keep must be all_positive or top1, got {keep!r}")
    cap = 1 if keep == "top1" else max_per_context
    if keep == "top1" and max_per_context is not None:
        cap = min(1, max_per_context)
    by_context: dict[str, list[SelfEditSample]] = {}
    for s in samples:
        s.kept = False
        gain = s.improvement
        if s.valid and s.reward > 0 and gain is not None and gain >= min_gain:
            by_context.setdefault(s.context_id, []).append(s)
    kept: list[SelfEditSample] = []
    for group in by_context.values():
        group.sort(key=lambda s: (-s.reward, -(s.improvement or 0.0), s.sample_index))
        for s in group[:cap] if cap is not None else group:
            s.kept = True
            kept.append(s)
    return kept


def restem_rows(kept: Sequence[SelfEditSample]) -> list[dict]:
    """M-step rows: TRL conversational prompt/completion, loss on the self-edit only."""
    return [
        {"prompt": list(s.prompt), "completion": [{"role": "assistant", "content": s.completion or s.text}]}
        for s in kept
    ]


# ---------------------------------------------------------------- metrics


def _histogram(values: Sequence[float], bins: int = 10) -> dict[str, int]:
    if not values:
        return {}
    lo, hi = min(values), max(values)
    if len(set(values)) <= bins:  # few distinct rewards (binary): count each value
        return {f"{v:g}": sum(1 for x in values if x == v) for v in sorted(set(values))}
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    return {f"[{lo + i * width:.3g},{lo + (i + 1) * width:.3g})": c for i, c in enumerate(counts)}


def reward_stats(samples: Sequence[SelfEditSample]) -> dict[str, Any]:
    """Per-iteration metrics: reward mean/std/min/max/distribution, success rate, before/after."""
    rewards = [s.reward for s in samples]
    scored = [s for s in samples if s.score_after is not None]
    before = [s.score_before for s in samples]
    after = [s.score_after for s in scored]
    gains = [s.improvement for s in scored]
    return {
        "n_samples": len(samples),
        "n_valid": sum(s.valid for s in samples),
        "n_kept": sum(s.kept for s in samples),
        "reward_mean": statistics.fmean(rewards) if rewards else 0.0,
        "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "reward_min": min(rewards) if rewards else 0.0,
        "reward_max": max(rewards) if rewards else 0.0,
        "reward_hist": _histogram(rewards),
        "success_rate": sum(r > 0 for r in rewards) / len(rewards) if rewards else 0.0,
        "score_before_mean": statistics.fmean(before) if before else 0.0,
        "score_after_mean": statistics.fmean(after) if after else None,
        "improvement_mean": statistics.fmean(gains) if gains else None,  # type: ignore[arg-type]
        "improvement_best_per_context": _best_gain_mean(scored),
    }


def _best_gain_mean(scored: Sequence[SelfEditSample]) -> float | None:
    best: dict[str, float] = {}
    for s in scored:
        gain = s.improvement or 0.0
        best[s.context_id] = max(best.get(s.context_id, -math.inf), gain)
    return statistics.fmean(best.values()) if best else None


def trend(values: Sequence[float | None]) -> float | None:
    """Least-squares slope per iteration of a metric (None with fewer than two finite points)."""
    points = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(points) < 2:
        return None
    mx = statistics.fmean(i for i, _ in points)
    my = statistics.fmean(v for _, v in points)
    den = sum((i - mx) ** 2 for i, _ in points)
    return sum((i - mx) * (v - my) for i, v in points) / den
