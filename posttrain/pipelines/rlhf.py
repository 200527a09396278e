"""`posttrain rlhf` (seed 003): SFT -> reward model -> online RL with ADLF rewards -> held-out eval.

The run reads top to bottom in `run_rlhf`: validate the data (before any model loads) and
split it by prompt → claim the run directory and store row → SFT stage → reward-model
stage → RL stage (GRPO or RLOO) → score SFT and RL completions on the held-out prompts with
the external reward model → save the adapter, metrics, plots and report → rename the
directory to its final name.

Every stage checkpoints under `checkpoints/<stage>/` and logs per step to
`metrics_<stage>.jsonl`; `metrics.jsonl` joins them with a "stage" key. A finished stage
leaves its product (`sft_adapter/`, `reward_model/`), so `--resume` after a kill skips it
and continues the interrupted stage from its newest complete checkpoint. The reference of
the KL term is the policy at the start of RL: the SFT model when there was an SFT stage.

Technique flags and where they act:
- curriculum: RL prompts easy to hard (`curriculum_order`), visited in order (no shuffle);
- multi_objective: fluency, faithfulness and quality join the internal reward with weights;
- dynamic_kl: an adaptive controller sets the trainer's beta after every step;
- contrastive: an auxiliary loss in the RL stage on high- vs low-scored answers;
- self_critique: critique-then-revise rows mixed into SFT, critique_weight per answer row;
- decision_transformer: SFT on every answer tagged with its score; RL and eval ask for target_score;
- token_format: standard (chat template), role_markers or turn_markers, in every stage.

Under `--launcher accelerate` every rank runs `run_rlhf`: all train every stage and score the
held-out prompts (the same seeded samples), rank 0 alone writes the run directory, the store
rows and the report; rollouts.jsonl gathers every rank's completions.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from posttrain.config import RLHFConfig, dump_config
from posttrain.distributed import gather_objects, is_main_process, wait_for_everyone, world_size
from posttrain.errors import ConfigError, DivergedError, PosttrainError
from posttrain.models import DeviceSettings, ResidentModel, device_settings
from posttrain.report import format_value, markdown_table
from posttrain.rundir import ADAPTER_META, RunDir, default_run_name, open_run_store, save_adapter, tracked_run
from posttrain.store import Store
from posttrain.tasks.conversations import (
    ScoredConversation,
    contrastive_pairs,
    curriculum_order,
    read_scored_conversations,
    sample_path,
    score_pairs,
    self_critique_rows,
    split_by_prompt,
    to_prompts,
    to_sft_rows,
)
from posttrain.train.common import TrainResult, latest_complete_checkpoint, trim_metrics
from posttrain.train.kl import AdaptiveKLController, FixedKLController, mean_kl_after_warmup, within_band
from posttrain.train.reward_model import (
    META_FILE,
    ExternalRewardModel,
    RewardModelHParams,
    train_reward_model,
)
from posttrain.train.rl import (
    ADLFReward,
    ContrastiveAux,
    RLHParams,
    checkpoint_step,
    drop_reference_adapter,
    reference_scope,
    rl_train,
    sample_completions,
)
from posttrain.train.sft import SFTHParams, build_sft_trainer

STAGES = ("sft", "reward_model", "rl")
SFT_ADAPTER = "sft_adapter"
REWARD_MODEL = "reward_model"
BOOTSTRAP_RESAMPLES = 2000
NORM_SAMPLES = 64  # training answers whose reward-model scores set its center/scale (a forward each)
HELDOUT_PAIRS = 48  # held-out answer pairs the reward model's ranking accuracy is measured on
# Columns of the RL step table in report.md, in order; absent ones are skipped.
RL_COLUMNS = (
    "reward",
    "adlf/external",
    "adlf/internal",
    "adlf/coherence",
    "adlf/length",
    "adlf/fluency",
    "adlf/faithfulness",
    "kl",
    "beta",
    "completions/mean_length",
    "contrastive/loss",
)


def run_rlhf(cfg: RLHFConfig, resume: bool = False) -> dict[str, Any]:
    """Run the stages `cfg` asks for; returns the run summary (also in summary.json)."""
    cfg = resumed_rlhf_config(cfg, resume)
    settings = check_config(cfg)
    convs = read_scored_conversations(cfg.data_path or sample_path())
    train, heldout = split_by_prompt(convs, cfg.val_fraction, cfg.data_seed)
    run = RunDir.start(cfg.output_dir, cfg.run_name or default_run_name("rlhf"), resume)
    if is_main_process():
        dump_config(cfg, run.path / "config.yaml")
    store = open_run_store(cfg.store, cfg.output_dir)
    with tracked_run(store, "rlhf", run, cfg.model_dump(mode="json"), resume) as run_id:
        resident = ResidentModel(cfg.model_name, settings)
        summary: dict[str, Any] = {
            "model": cfg.model_name,
            "device": settings.describe(),
            "processes": world_size(),
            "algo": cfg.algo if cfg.run_rlhf else None,
            "train_prompts": len({c.prompt_key for c in train}),
            "heldout_prompts": len({c.prompt_key for c in heldout}),
        }
        model, sft = sft_stage(cfg, resident, train, run, resume)
        summary.update(sft)
        record_stage(store, run_id, 0, "sft", sft, run)
        if sft.get("sft_status") == "diverged":
            return finish(store, run_id, run, summary, "diverged", sft.get("sft_error"))
        if cfg.run_rlhf:
            rm, rm_summary = reward_model_stage(
                cfg, resident.tokenizer, train, heldout, settings, run, resume
            )
            summary.update(rm_summary)
            record_stage(store, run_id, 1, "reward_model", rm_summary, run)
            result = rl_stage(cfg, model, resident.tokenizer, rm, train, run, resume)
            summary.update(rl := rl_summary(cfg, result, run))
            record_stage(store, run_id, 2, "rl", rl, run)
            if result.status == "diverged":
                return finish(store, run_id, run, summary, "diverged", result.error)
            if cfg.eval_heldout and heldout:
                summary.update(evaluate_heldout(cfg, model, resident.tokenizer, rm, heldout, run))
            drop_reference_adapter(model)
        save_adapter(model, run.path / "adapter", cfg.model_name, {"kind": "rlhf" if cfg.run_rlhf else "sft"})
        return finish(store, run_id, run, summary, "completed", None)


# --------------------------------------------------------------------------- setup


def resumed_rlhf_config(cfg: RLHFConfig, resume: bool) -> RLHFConfig:
    """On resume the run's own config.yaml wins, so the continued run is the same run."""
    if not resume:
        return cfg
    if cfg.run_name is None:
        raise PosttrainError("--resume needs the run's name: add --name NAME (see `posttrain runs list`)")
    saved = RunDir(Path(cfg.output_dir), cfg.run_name).partial / "config.yaml"
    return RLHFConfig.model_validate(yaml.safe_load(saved.read_text())) if saved.exists() else cfg


def check_config(cfg: RLHFConfig) -> DeviceSettings:
    """Refuse combinations that cannot run, before any data or model loads; returns the device settings."""
    if not (cfg.run_sft or cfg.run_rlhf):
        raise ConfigError("nothing to do: add --run_sft and/or --run_rlhf")
    if not cfg.run_sft and (cfg.self_critique or (cfg.decision_transformer and not cfg.sft_adapter)):
        what = "self_critique" if cfg.self_critique else "decision_transformer"
        raise ConfigError(
            f"{what} trains in the SFT stage: add --run_sft (or give --sft_adapter trained with it)"
        )
    if cfg.run_sft and cfg.sft_adapter:
        raise ConfigError("sft_adapter replaces the SFT stage: drop --run_sft or --sft_adapter")
    if cfg.use_wandb:
        import importlib.util
        import os

        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("use_wandb needs the wandb package: pip install wandb")
        os.environ.setdefault("WANDB_PROJECT", cfg.wandb_project)
    settings = device_settings(cfg.device, "float16" if cfg.fp16 else "bfloat16" if cfg.bf16 else "auto")
    if cfg.fp16 and settings.device == "cpu":
        raise ConfigError("fp16 needs a CUDA GPU; on CPU leave it off (or use bf16)")
    return settings


def _report_to(cfg: RLHFConfig) -> str:
    return "wandb" if cfg.use_wandb else "none"


def _scheduler_kwargs(cfg: RLHFConfig) -> dict[str, Any] | None:
    return {"num_cycles": cfg.cosine_cycles} if cfg.scheduler == "cosine_with_restarts" else None


# --------------------------------------------------------------------------- SFT


def sft_rows(cfg: RLHFConfig, train: list[ScoredConversation], tokenizer: Any) -> tuple[list[dict], int]:
    """SFT rows and how many of them are self-critique rows.

    Imitates answers scored >= sft_min_score, or every answer tagged with its score with
    decision_transformer. With self_critique, round(critique_weight x answer rows) critique
    rows are drawn (seeded; with replacement when more are asked for than exist) and mixed in.
    """
    fmt = cfg.token_format
    if cfg.decision_transformer:
        rows = to_sft_rows(train, fmt, tokenizer, condition_on_score=True)
    else:
        rows = to_sft_rows([c for c in train if c.score >= cfg.sft_min_score], fmt, tokenizer)
    if not rows:
        raise PosttrainError(f"no SFT rows: no training answer scores >= sft_min_score={cfg.sft_min_score}")
    critiques: list[dict] = []
    if cfg.self_critique:
        pool = [
            {"prompt": r["prompt"], "completion": r["completion"]}
            for r in self_critique_rows(train, fmt, tokenizer)
        ]
        want = round(cfg.critique_weight * len(rows))
        rng = random.Random(cfg.seed)
        if pool and want:
            critiques = rng.sample(pool, want) if want <= len(pool) else rng.choices(pool, k=want)
    return rows + critiques, len(critiques)


def sft_stage(
    cfg: RLHFConfig, resident: ResidentModel, train: list[ScoredConversation], run: RunDir, resume: bool
) -> tuple[Any, dict[str, Any]]:
    """The policy model after SFT (or as RL starts without it) and the stage's summary keys."""
    lora = cfg.lora
    done = run.path / SFT_ADAPTER
    if (done / ADAPTER_META).exists():  # finished before a kill
        model = resident.load_adapter(done, trainable=True)
        return model, json.loads((done / ADAPTER_META).read_text())["summary"]
    if not cfg.run_sft:
        if cfg.sft_adapter:
            return resident.load_adapter(cfg.sft_adapter, trainable=True), {"sft_adapter": cfg.sft_adapter}
        return resident.fresh_adapter(lora.r, lora.alpha, lora.dropout, cfg.seed, lora.target_modules), {}
    rows, n_critique = sft_rows(cfg, train, resident.tokenizer)
    model = resident.fresh_adapter(lora.r, lora.alpha, lora.dropout, cfg.seed, lora.target_modules)
    hp = SFTHParams(
        learning_rate=cfg.sft_learning_rate,
        batch_size=cfg.sft_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        epochs=cfg.sft_epochs,
        max_steps=cfg.sft_max_steps,
        warmup_ratio=cfg.warmup_ratio,
        scheduler=cfg.scheduler,
        seed=cfg.seed,
        save_steps=cfg.save_steps,
        report_to=_report_to(cfg),
        max_length=cfg.max_seq_length,
    )
    ckpts, metrics = run.checkpoints / "sft", run.path / "metrics_sft.jsonl"
    ckpts.mkdir(parents=True, exist_ok=True)
    trainer, log = build_sft_trainer(model, resident.tokenizer, rows, None, ckpts, hp, metrics_path=metrics)
    if _scheduler_kwargs(cfg):  # SFTHParams has no scheduler kwargs; the scheduler is built in train()
        trainer.args.lr_scheduler_kwargs = _scheduler_kwargs(cfg)
    resume_from = latest_complete_checkpoint(ckpts) if resume else None
    if resume:
        trim_metrics(metrics, checkpoint_step(resume_from))
    start, status, error = time.perf_counter(), "completed", None
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except DivergedError as exc:
        status, error = "diverged", str(exc)
    losses = [loss for _, loss in log.losses]
    summary = {
        "sft_status": status,
        "sft_rows": len(rows),
        "sft_critique_rows": n_critique,
        "sft_steps": trainer.state.global_step,
        "sft_first_loss": losses[0] if losses else None,
        "sft_last_loss": losses[-1] if losses else None,
        "sft_runtime_s": round(time.perf_counter() - start, 2),
    }
    if error:
        summary["sft_error"] = error
    else:
        save_adapter(model, done, cfg.model_name, {"kind": "sft", "summary": summary})
    return model, summary


# --------------------------------------------------------------------------- reward model


def reward_model_stage(
    cfg: RLHFConfig,
    tokenizer: Any,
    train: list[ScoredConversation],
    heldout: list[ScoredConversation],
    settings: Any,
    run: RunDir,
    resume: bool,
) -> tuple[ExternalRewardModel, dict[str, Any]]:
    """Train (or load) the external reward model; report its pair accuracy on held-out prompts."""
    rm_cfg, fmt = cfg.reward_model, cfg.token_format
    out = Path(rm_cfg.path) if rm_cfg.path else run.path / REWARD_MODEL
    summary: dict[str, Any] = {"rm_source": rm_cfg.path or REWARD_MODEL}
    if not (out / META_FILE).exists():
        if rm_cfg.path:
            raise ConfigError(f"reward_model.path {out}: no trained reward model there ({META_FILE} missing)")
        pairs = score_pairs(train, rm_cfg.min_gap, fmt=fmt, tokenizer=tokenizer)
        answers = to_sft_rows(train, fmt, tokenizer)
        answers = random.Random(cfg.seed).sample(answers, min(NORM_SAMPLES, len(answers)))
        norm_rows = [(r["prompt"], r["completion"]) for r in answers]
        hp = RewardModelHParams(
            learning_rate=rm_cfg.learning_rate,
            batch_size=rm_cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            epochs=rm_cfg.epochs,
            max_steps=rm_cfg.max_steps,
            warmup_ratio=cfg.warmup_ratio,
            scheduler=cfg.scheduler,
            scheduler_kwargs=_scheduler_kwargs(cfg),
            seed=cfg.seed,
            save_steps=cfg.save_steps,
            report_to=_report_to(cfg),
            max_length=cfg.max_seq_length,
            lora_r=rm_cfg.lora_r,
            lora_alpha=rm_cfg.lora_alpha,
        )
        result = train_reward_model(
            cfg.model_name,
            tokenizer,
            pairs,
            norm_rows,
            out,
            run.checkpoints / REWARD_MODEL,
            hp,
            settings=settings,
            metrics_path=run.path / "metrics_reward_model.jsonl",
            resume=resume,
        )
        if result.status != "completed":
            raise DivergedError(f"reward model: {result.error}")
        losses = [loss for _, loss in result.losses]
        summary.update(
            rm_pairs=len(pairs),
            rm_steps=result.steps,
            rm_first_loss=losses[0] if losses else None,
            rm_last_loss=losses[-1] if losses else None,
            rm_train_accuracy=result.extra.get("train_accuracy"),
            rm_runtime_s=round(result.runtime_s, 2),
        )
        if is_main_process():
            (out / "stage_summary.json").write_text(json.dumps(summary) + "\n")
    elif (out / "stage_summary.json").exists():  # trained before a kill: keep its training numbers
        summary = json.loads((out / "stage_summary.json").read_text())
    rm = ExternalRewardModel.load(out, tokenizer, settings)
    held_pairs = score_pairs(heldout, rm_cfg.min_gap, fmt=fmt, tokenizer=tokenizer)
    held_pairs = random.Random(cfg.seed).sample(held_pairs, min(HELDOUT_PAIRS, len(held_pairs)))
    if held_pairs:
        prompts = [p["prompt"] for p in held_pairs]
        better = rm.score_completions(prompts, [p["chosen"] for p in held_pairs])
        worse = rm.score_completions(prompts, [p["rejected"] for p in held_pairs])
        right = sum(b > w for b, w in zip(better, worse, strict=True))
        summary.update(rm_heldout_pairs=len(held_pairs), rm_heldout_accuracy=right / len(held_pairs))
    return rm, summary


# --------------------------------------------------------------------------- RL


def reward_weights(cfg: RLHFConfig) -> dict[str, float]:
    """The internal reward's weights by component name (see rewards.internal_reward)."""
    weights: dict[str, float] = {}
    if cfg.use_coherence_reward:
        weights["coherence"] = cfg.coherence_weight
    if cfg.use_length_penalty:
        weights["length"] = cfg.length_weight
    if cfg.multi_objective:
        weights.update(
            fluency=cfg.fluency_weight, faithfulness=cfg.faithfulness_weight, quality=cfg.quality_weight
        )
    return weights


def rl_prompt_rows(cfg: RLHFConfig, convs: list[ScoredConversation], tokenizer: Any) -> list[dict]:
    """to_prompts rows in curriculum order; `rm_prompt` is the prompt without a score tag."""
    if cfg.curriculum != "none":
        convs = curriculum_order(convs, cfg.curriculum)
    target = cfg.target_score if cfg.decision_transformer else None
    rows = to_prompts(convs, cfg.token_format, tokenizer, target_score=target)
    plain = to_prompts(convs, cfg.token_format, tokenizer)
    return [{**row, "rm_prompt": bare["prompt"]} for row, bare in zip(rows, plain, strict=True)]


def rl_stage(
    cfg: RLHFConfig,
    model: Any,
    tokenizer: Any,
    rm: ExternalRewardModel,
    train: list[ScoredConversation],
    run: RunDir,
    resume: bool,
) -> TrainResult:
    """GRPO/RLOO on the training prompts with the ADLF reward; rollouts go to rollouts.jsonl."""
    ckpts, rollouts = run.checkpoints / "rl", run.path / "rollouts.jsonl"
    if resume:
        trim_metrics(rollouts, checkpoint_step(latest_complete_checkpoint(ckpts)))

    def write_rollouts(step: int, rows: list[dict[str, Any]]) -> None:
        rows = gather_objects(rows)  # every rank scores its own share of the completions
        if is_main_process():
            with rollouts.open("a") as fh:
                fh.writelines(json.dumps({"step": step, **row}) + "\n" for row in rows)

    weights = reward_weights(cfg)
    reward = ADLFReward(
        rm.score_completions,
        weights,
        cfg.adlf_alpha,
        tokenizer=tokenizer,
        fluency_model=model if weights.get("fluency") else None,
        length_target=(cfg.length_min_tokens, cfg.length_max_tokens),
        on_batch=write_rollouts,
    )
    controller = (
        AdaptiveKLController(cfg.init_kl_coef, cfg.kl_target, cfg.kl_horizon)
        if cfg.dynamic_kl
        else FixedKLController(cfg.init_kl_coef)
    )
    contrastive = None
    if cfg.contrastive:
        pairs = contrastive_pairs(train, fmt=cfg.token_format, tokenizer=tokenizer)
        if not pairs:
            raise PosttrainError(
                "contrastive: no prompt has answers 2 or more points apart in the training split"
            )
        contrastive = ContrastiveAux(
            tokenizer,
            pairs,
            temperature=cfg.contrastive_temp,
            weight=cfg.contrastive_weight,
            max_length=cfg.max_seq_length,
            seed=cfg.seed,
        )
    hp = RLHParams(
        algo=cfg.algo,
        learning_rate=cfg.rl_learning_rate,
        batch_size=cfg.rl_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        epochs=cfg.rl_epochs,
        max_steps=cfg.rl_max_steps,
        warmup_ratio=cfg.warmup_ratio,
        scheduler=cfg.scheduler,
        scheduler_kwargs=_scheduler_kwargs(cfg),
        seed=cfg.seed,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        shuffle=cfg.curriculum == "none",
        save_steps=cfg.save_steps,
        report_to=_report_to(cfg),
    )
    result = rl_train(
        model,
        tokenizer,
        rl_prompt_rows(cfg, train, tokenizer),
        reward,
        ckpts,
        hp,
        kl_controller=controller,
        contrastive=contrastive,
        metrics_path=run.path / "metrics_rl.jsonl",
        resume=resume,
    )
    wait_for_everyone()  # rank 0 has logged every step before any rank reads metrics_rl.jsonl
    return result


def rl_summary(cfg: RLHFConfig, result: TrainResult, run: RunDir) -> dict[str, Any]:
    """RL stage keys for the summary: steps, reward at start and end, KL against its target.

    Read from metrics_rl.jsonl, not the trainer's memory, so a resumed run counts every step.
    """
    rows = [r for r in stage_rows(run) if r["stage"] == "rl" and "loss" in r]
    rewards = [r["reward"] for r in rows if isinstance(r.get("reward"), int | float)]
    kls = [r["kl"] for r in rows if isinstance(r.get("kl"), int | float)]
    head = max(1, len(rewards) // 4)
    out: dict[str, Any] = {
        "rl_status": result.status,
        "rl_steps": result.steps,
        "rl_resumed_from_step": checkpoint_step(Path(r)) if (r := result.extra.get("resumed_from")) else None,
        "rl_reward_first_quarter": statistics.fmean(rewards[:head]) if rewards else None,
        "rl_reward_last_quarter": statistics.fmean(rewards[-head:]) if rewards else None,
        "beta_final": result.extra.get("beta"),
        "dynamic_kl": cfg.dynamic_kl,
        "kl_target": cfg.kl_target if cfg.dynamic_kl else None,
        "rl_runtime_s": round(result.runtime_s, 2),
    }
    if kls:
        warmup = min(cfg.kl_warmup_steps, len(kls) - 1)
        mean = mean_kl_after_warmup(kls, warmup)
        out.update(kl_warmup_steps=warmup, kl_mean_after_warmup=mean)
        out["kl_within_band"] = within_band(mean, cfg.kl_target) if cfg.dynamic_kl else None
    if result.error:
        out["rl_error"] = result.error
    return out


# --------------------------------------------------------------------------- held-out evaluation


def bootstrap_ci(
    values: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (one value per held-out prompt)."""
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(resamples))
    lo = means[int(math.floor((1 - level) / 2 * resamples))]
    hi = means[min(resamples - 1, int(math.ceil((1 + level) / 2 * resamples)) - 1)]
    return lo, hi


def evaluate_heldout(
    cfg: RLHFConfig,
    model: Any,
    tokenizer: Any,
    rm: ExternalRewardModel,
    heldout: list[ScoredConversation],
    run: RunDir,
) -> dict[str, Any]:
    """External reward of SFT vs RL completions on prompts no stage trained on.

    Both models sample `eval_samples` completions per prompt from the same seeded random
    stream; the SFT model is the KL reference (TRL's frozen copy of the starting adapter).
    The gain is the mean over prompts of (RL mean - SFT mean); its 95% CI is a bootstrap
    over prompts. Every completion and score goes to eval_heldout.jsonl.
    """
    rows = rl_prompt_rows(cfg.model_copy(update={"curriculum": "none"}), heldout, tokenizer)
    prompts = [r["prompt"] for r in rows]
    sample = {
        "n": cfg.eval_samples,
        "max_new_tokens": cfg.max_completion_length,
        "temperature": cfg.eval_temperature,
        "seed": cfg.seed,
    }
    with reference_scope(model):
        before = sample_completions(model, tokenizer, prompts, **sample)
    after = sample_completions(model, tokenizer, prompts, **sample)

    def scores(completions: list[list[str]]) -> list[list[float]]:
        return [
            rm.score_completions(
                [r["rm_prompt"]] * len(cs), [_as_completion(c, cfg.token_format) for c in cs]
            )
            for r, cs in zip(rows, completions, strict=True)
        ]

    sft_scores, rl_scores = scores(before), scores(after)
    sft_means = [statistics.fmean(s) for s in sft_scores]
    rl_means = [statistics.fmean(s) for s in rl_scores]
    gains = [a - b for a, b in zip(rl_means, sft_means, strict=True)]
    lo, hi = bootstrap_ci(gains, seed=cfg.seed)
    if is_main_process():
        with (run.path / "eval_heldout.jsonl").open("w") as fh:
            for row, b, a, sb, sa in zip(rows, before, after, sft_scores, rl_scores, strict=True):
                record = {"context": row["context"], "sft": b, "rl": a, "sft_scores": sb, "rl_scores": sa}
                fh.write(json.dumps(record) + "\n")
    return {
        "eval_prompts": len(rows),
        "eval_samples": cfg.eval_samples,
        "sft_reward_mean": statistics.fmean(sft_means),
        "rl_reward_mean": statistics.fmean(rl_means),
        "reward_gain": statistics.fmean(gains),
        "reward_gain_ci": [lo, hi],
    }


def _as_completion(text: str, fmt: str) -> str | list[dict]:
    return [{"role": "assistant", "content": text}] if fmt == "standard" else text


# --------------------------------------------------------------------------- metrics, store, report


def stage_rows(run: RunDir) -> list[dict[str, Any]]:
    """Every stage's per-step rows, each with its "stage"."""
    rows = []
    for stage in STAGES:
        path = run.path / f"metrics_{stage}.jsonl"
        if path.exists():
            rows += [{"stage": stage, **json.loads(x)} for x in path.read_text().splitlines() if x]
    return rows


def record_stage(
    store: Store | None, run_id: int | None, index: int, stage: str, summary: dict[str, Any], run: RunDir
) -> None:
    """One store episode per finished stage: its summary and every logged step (rank 0 only)."""
    if (
        store is None
        or run_id is None
        or not summary
        or any(e.kind == stage for e in store.list_episodes(run_id))
    ):
        return
    steps = [{k: v for k, v in r.items() if k != "stage"} for r in stage_rows(run) if r["stage"] == stage]
    store.add_episode(run_id, index, stage, {}, {**summary, "per_step": steps}, {})


def finish(
    store: Store | None,
    run_id: int | None,
    run: RunDir,
    summary: dict[str, Any],
    status: str,
    error: str | None,
) -> dict[str, Any]:
    """Write metrics.jsonl, summary.json and report.md; rename the directory when completed.

    Under a launch every rank calls it; rank 0 (the one with the store) writes after the others
    are done with the partial directory.
    """
    wait_for_everyone()
    summary = {"run": run.name, "status": status, **summary}
    if store is None or run_id is None:
        return summary
    rows = stage_rows(run)
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status != "completed":
        summary["error"] = error
        run.write_json("summary.json", summary)
        store.update_run(run_id, status=status, error=error, metrics=summary)
        summary["run_dir"] = str(run.path)  # stays .partial: it is not a complete run
        return summary
    write_report(run.path, summary, rows)
    run.write_json("summary.json", summary)
    final = run.finish()
    summary["run_dir"] = str(final)
    store.update_run(run_id, status="completed", metrics=summary, run_dir=str(final))
    return summary


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [
        (r["step"], float(r[key]))
        for r in rows
        if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool) and math.isfinite(r[key])
    ]


def _plot(path: Path, title: str, rows: list[dict[str, Any]], left: list[str], right: list[str] = ()) -> bool:
    """Lines of `left` keys per step (and `right` keys on a second axis); False when nothing to draw."""
    if not any(_series(rows, k) for k in [*left, *right]):
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for key in left:
        if points := _series(rows, key):
            axes.plot(*zip(*points, strict=True), label=key, linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if right:
        twin = axes.twinx()
        for key in right:
            if points := _series(rows, key):
                twin.plot(*zip(*points, strict=True), label=key, linewidth=1.2, linestyle="--", color="black")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    axes.legend(handles, labels, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return True


def write_report(run_dir: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """report.md with the summary, held-out result, each stage's steps and plots/*.png."""
    by_stage = {s: [r for r in rows if r["stage"] == s and "loss" in r] for s in STAGES}
    plots = run_dir / "plots"
    parts = [f"# posttrain rlhf: {summary['run']}\n", "## Summary\n"]
    parts.append(markdown_table(["key", "value"], [(k, format_value(v)) for k, v in summary.items()]))
    if "reward_gain" in summary:
        lo, hi = summary["reward_gain_ci"]
        parts += [
            "## Held-out prompts (external reward model)\n",
            f"SFT {summary['sft_reward_mean']:.4f} → RL {summary['rl_reward_mean']:.4f}: gain "
            f"{summary['reward_gain']:+.4f}, 95% bootstrap CI [{lo:+.4f}, {hi:+.4f}] over "
            f"{summary['eval_prompts']} prompts × {summary['eval_samples']} samples "
            "(every completion in `eval_heldout.jsonl`).\n",
        ]
    for stage, title in (("sft", "SFT"), ("reward_model", "Reward model")):
        if by_stage[stage]:
            columns = [
                c for c in ("loss", "accuracy", "learning_rate", "grad_norm") if c in by_stage[stage][0]
            ]
            parts += [f"## {title} per step\n", _step_table(by_stage[stage], columns)]
            if _plot(plots / f"{stage}_loss.png", f"{title} loss", by_stage[stage], ["loss"]):
                parts.append(f"![{title} loss](plots/{stage}_loss.png)\n")
    rl = by_stage["rl"]
    if rl:
        parts += ["## RL per step\n", _step_table(rl, [c for c in RL_COLUMNS if any(c in r for r in rl)])]
        components = ["reward", "adlf/external", "adlf/internal"] + [
            k
            for k in rl[0]
            if k.startswith("adlf/") and k not in ("adlf/external", "adlf/internal", "adlf/reward")
        ]
        for name, title, left, right in (
            ("rewards", "ADLF reward and its components", components, []),
            ("kl_beta", "KL to the reference (solid) and beta (dashed)", ["kl"], ["beta"]),
            ("lengths", "completion length (tokens)", ["completions/mean_length"], []),
        ):
            if _plot(plots / f"{name}.png", title, rl, left, right):
                parts.append(f"![{title}](plots/{name}.png)\n")
    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _step_table(rows: list[dict[str, Any]], columns: list[str], limit: int = 20) -> str:
    shown = (
        rows if len(rows) <= limit else [rows[round(i * (len(rows) - 1) / (limit - 1))] for i in range(limit)]
    )
    note = (
        f"{len(shown)} of {len(rows)} steps; every step is in `metrics.jsonl`.\n\n"
        if len(shown) < len(rows)
        else ""
    )
    return note + markdown_table(
        ["step", *columns], [[r["step"], *(r.get(c) for c in columns)] for r in shown]
    )
