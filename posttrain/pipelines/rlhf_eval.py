"""`posttrain rlhf`'s held-out evaluation: SFT vs RL completions scored by the external reward model."""

from __future__ import annotations

import json
import statistics
from typing import Any

from posttrain.config import RLHFConfig
from posttrain.distributed import is_main_process
from posttrain.rundir import RunDir
from posttrain.tasks.metrics import bootstrap_ci
from posttrain.train.reward_model import ExternalRewardModel
from posttrain.train.rl import reference_scope, sample_completions

BOOTSTRAP_RESAMPLES = 2000


def evaluate_heldout(
    cfg: RLHFConfig,
    model: Any,
    tokenizer: Any,
    rm: ExternalRewardModel,
    rows: list[dict],
    run: RunDir,
) -> dict[str, Any]:
    """External reward of SFT vs RL completions on prompts no stage trained on.

    Both models sample `eval_samples` completions per prompt from the same seeded random
    stream; the SFT model is the KL reference (TRL's frozen copy of the starting adapter).
    The gain is the mean over prompts of (RL mean - SFT mean); its 95% CI is a bootstrap
    over prompts. Every completion and score goes to eval_heldout.jsonl.
    """
    prompts = [r["prompt"] for r in rows]
    sample = {
        "n": cfg.eval.samples,
        "max_new_tokens": cfg.rl.max_completion_length,
        "temperature": cfg.eval.temperature,
        "seed": cfg.train.seed,
    }
    with reference_scope(model):
        before = sample_completions(model, tokenizer, prompts, **sample)
    after = sample_completions(model, tokenizer, prompts, **sample)

    def scores(completions: list[list[str]]) -> list[list[float]]:
        return [
            rm.score_completions(
                [r["rm_prompt"]] * len(cs), [_as_completion(c, cfg.data.token_format) for c in cs]
            )
            for r, cs in zip(rows, completions, strict=True)
        ]

    sft_scores, rl_scores = scores(before), scores(after)
    sft_means = [statistics.fmean(s) for s in sft_scores]
    rl_means = [statistics.fmean(s) for s in rl_scores]
    gains = [a - b for a, b in zip(rl_means, sft_means, strict=True)]
    # The project's one bootstrap (numpy, interpolated percentiles); before it took its own
    # random.Random resamples and order statistics, so reruns of older runs differ in the CI's
    # third decimal.
    lo, hi = bootstrap_ci(gains, n_boot=BOOTSTRAP_RESAMPLES, seed=cfg.train.seed)
    if is_main_process():
        with (run.path / "eval_heldout.jsonl").open("w") as fh:
            for row, b, a, sb, sa in zip(rows, before, after, sft_scores, rl_scores, strict=True):
                record = {"context": row["context"], "sft": b, "rl": a, "sft_scores": sb, "rl_scores": sa}
                fh.write(json.dumps(record) + "\n")
    return {
        "eval_prompts": len(rows),
        "eval_samples": cfg.eval.samples,
        "sft_reward_mean": statistics.fmean(sft_means),
        "rl_reward_mean": statistics.fmean(rl_means),
        "reward_gain": statistics.fmean(gains),
        "reward_gain_ci": [lo, hi],
    }


def _as_completion(text: str, fmt: str) -> str | list[dict]:
    return [{"role": "assistant", "content": text}] if fmt == "standard" else text
