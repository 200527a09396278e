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

Technique keys and where they act:
- rl.curriculum: RL prompts easy to hard (`curriculum_order`), visited in order (no shuffle);
- adlf.multi_objective: fluency, faithfulness and quality join the internal reward with weights;
- rl.dynamic_kl: an adaptive controller sets the trainer's beta after every step;
- rl.contrastive: an auxiliary loss in the RL stage on high- vs low-scored answers;
- sft.self_critique: critique-then-revise rows mixed into SFT, critique_weight per answer row;
- sft.decision_transformer: SFT on every answer tagged with its score; RL and eval ask for
  rl.target_score;
- data.token_format: standard (chat template), role_markers or turn_markers, in every stage.

Under `--launcher accelerate` every rank runs `run_rlhf`: all train every stage and score the
held-out prompts (the same seeded samples), rank 0 alone writes the run directory, the store
rows and the report; rollouts.jsonl gathers every rank's completions.
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any, TypeVar

from posttrain.config import RLHFConfig
from posttrain.config.rlhf import StageSettings
from posttrain.distributed import gather_objects, is_main_process, wait_for_everyone, world_size
from posttrain.errors import ConfigError, DivergedError, PosttrainError
from posttrain.models import ResidentModel, device_settings
from posttrain.pipelines._run import Run, open_run, resumed
from posttrain.pipelines.rlhf_eval import evaluate_heldout
from posttrain.report.rlhf import join_stage_metrics, record_stage, stage_rows, write_rlhf_report
from posttrain.rundir import RunDir, adapter_meta, save_adapter
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
from posttrain.train.args import RewardModelArgs, RLArgs, SFTArgs, TrainArgs
from posttrain.train.kl import AdaptiveKLController, FixedKLController, mean_kl_after_warmup, within_band
from posttrain.train.loop import TrainResult, checkpoint_step, latest_complete_checkpoint, trim_metrics
from posttrain.train.reward_model import META_FILE, ExternalRewardModel, train_reward_model
from posttrain.train.rl import ADLFReward, ContrastiveAux, drop_reference_adapter, rl_train
from posttrain.train.sft import sft_train

SFT_ADAPTER = "sft_adapter"
REWARD_MODEL = "reward_model"
A = TypeVar("A", bound=TrainArgs)
NORM_SAMPLES = 64  # training answers whose reward-model scores set its center/scale (a forward each)
HELDOUT_PAIRS = 48  # held-out answer pairs the reward model's ranking accuracy is measured on


def run_rlhf(cfg: RLHFConfig, resume: bool = False) -> dict[str, Any]:
    """Run the stages `cfg` asks for; returns the run summary (also in summary.json)."""
    cfg = resumed(cfg, resume)
    check_config(cfg)
    convs = read_scored_conversations(cfg.data.path or sample_path())
    train, heldout = split_by_prompt(convs, cfg.data.val_fraction, cfg.data.seed)
    with open_run("rlhf", cfg, resume) as run:
        store, run_id, resident = run.store, run.run_id, run.resident
        summary: dict[str, Any] = {
            "model": cfg.model.name,
            "device": run.settings.describe(),
            "processes": world_size(),
            "algo": cfg.rl.algo if cfg.rl.enabled else None,
            "train_prompts": len({c.prompt_key for c in train}),
            "heldout_prompts": len({c.prompt_key for c in heldout}),
        }
        model, sft = sft_stage(cfg, resident, train, run.dir, resume)
        summary.update(sft)
        record_stage(store, run_id, 0, "sft", sft, run.dir)
        if sft.get("sft_status") == "diverged":
            return finish(run, summary, "diverged", sft.get("sft_error"))
        if cfg.rl.enabled:
            rm, rm_summary = reward_model_stage(
                cfg, resident.tokenizer, train, heldout, run.settings, run.dir, resume
            )
            summary.update(rm_summary)
            record_stage(store, run_id, 1, "reward_model", rm_summary, run.dir)
            result = rl_stage(cfg, model, resident.tokenizer, rm, train, run.dir, resume)
            summary.update(rl := rl_summary(cfg, result, run.dir))
            record_stage(store, run_id, 2, "rl", rl, run.dir)
            if result.status == "diverged":
                return finish(run, summary, "diverged", result.error)
            if cfg.eval.enabled and heldout:
                rows = rl_prompt_rows(cfg, heldout, resident.tokenizer, ordered=False)
                summary.update(evaluate_heldout(cfg, model, resident.tokenizer, rm, rows, run.dir))
            drop_reference_adapter(model)
        save_adapter(
            model, run.path / "adapter", cfg.model.name, {"kind": "rlhf" if cfg.rl.enabled else "sft"}
        )
        return finish(run, summary, "completed", None)


def finish(run: Run, summary: dict[str, Any], status: str, error: str | None) -> dict[str, Any]:
    """metrics.jsonl joins the stages' metrics (rank 0, which alone logged them), then the run closes:
    report.md and the rename when completed, `.partial` with the error otherwise."""
    rows = join_stage_metrics(run.dir) if is_main_process() else []
    return run.finish(
        summary, status=status, error=error, report=lambda path, s: write_rlhf_report(path, s, rows)
    )


# --------------------------------------------------------------------------- setup


def check_config(cfg: RLHFConfig) -> None:
    """Refuse combinations that cannot run, before any data or model loads."""
    sft = cfg.sft
    if not (sft.enabled or cfg.rl.enabled):
        raise ConfigError("nothing to do: add --run-sft and/or --run-rlhf (sft.enabled, rl.enabled)")
    if not sft.enabled and (sft.self_critique or (sft.decision_transformer and not sft.adapter)):
        what = "sft.self_critique" if sft.self_critique else "sft.decision_transformer"
        raise ConfigError(
            f"{what} trains in the SFT stage: add --run-sft (or give sft.adapter trained with it)"
        )
    if sft.enabled and sft.adapter:
        raise ConfigError("sft.adapter replaces the SFT stage: drop --run-sft or sft.adapter")
    if cfg.train.report_to == "wandb":
        import importlib.util
        import os

        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("train.report_to=wandb needs the wandb package: pip install wandb")
        os.environ.setdefault("WANDB_PROJECT", cfg.train.wandb_project)
    m = cfg.model
    settings = device_settings(m.device, m.dtype, m.attn_implementation, m.use_kernels)
    if m.dtype == "float16" and settings.device == "cpu":
        raise ConfigError("model.dtype float16 needs a CUDA GPU; on CPU use auto, float32 or bfloat16")


def stage_args(cls: type[A], cfg: RLHFConfig, stage: StageSettings, **extra: Any) -> A:
    """A stage's training arguments: the shared `train` section, then the stage's own learning
    rate, batch size, epochs and step limit (`sft`, `reward_model` or `rl`), then `extra`."""
    scheduler_kwargs = (
        {"num_cycles": cfg.train.cosine_cycles} if cfg.train.scheduler == "cosine_with_restarts" else None
    )
    return cls.from_settings(
        cfg.train,
        learning_rate=stage.learning_rate,
        batch_size=stage.batch_size,
        epochs=stage.epochs,
        max_steps=stage.max_steps,
        scheduler_kwargs=scheduler_kwargs,
        **extra,
    )


# --------------------------------------------------------------------------- SFT


def sft_rows(cfg: RLHFConfig, train: list[ScoredConversation], tokenizer: Any) -> tuple[list[dict], int]:
    """SFT rows and how many of them are self-critique rows.

    Imitates answers scored >= sft_min_score, or every answer tagged with its score with
    decision_transformer. With self_critique, round(critique_weight x answer rows) critique
    rows are drawn (seeded; with replacement when more are asked for than exist) and mixed in.
    """
    fmt = cfg.data.token_format
    if cfg.sft.decision_transformer:
        rows = to_sft_rows(train, fmt, tokenizer, condition_on_score=True)
    else:
        rows = to_sft_rows([c for c in train if c.score >= cfg.sft.min_score], fmt, tokenizer)
    if not rows:
        raise PosttrainError(f"no SFT rows: no training answer scores >= sft_min_score={cfg.sft.min_score}")
    critiques: list[dict] = []
    if cfg.sft.self_critique:
        pool = [
            {"prompt": r["prompt"], "completion": r["completion"]}
            for r in self_critique_rows(train, fmt, tokenizer)
        ]
        want = round(cfg.sft.critique_weight * len(rows))
        rng = random.Random(cfg.train.seed)
        if pool and want:
            critiques = rng.sample(pool, want) if want <= len(pool) else rng.choices(pool, k=want)
    return rows + critiques, len(critiques)


def sft_stage(
    cfg: RLHFConfig, resident: ResidentModel, train: list[ScoredConversation], run: RunDir, resume: bool
) -> tuple[Any, dict[str, Any]]:
    """The policy model after SFT (or as RL starts without it) and the stage's summary keys."""
    lora = cfg.lora
    done = run.path / SFT_ADAPTER
    finished = adapter_meta(done)
    if finished:  # the stage finished before a kill
        return resident.load_adapter(done, trainable=True), finished["summary"]
    if not cfg.sft.enabled:
        if cfg.sft.adapter:
            return resident.load_adapter(cfg.sft.adapter, trainable=True), {"sft_adapter": cfg.sft.adapter}
        return resident.fresh_adapter(
            lora.r, lora.alpha, lora.dropout, cfg.train.seed, lora.target_modules
        ), {}
    rows, n_critique = sft_rows(cfg, train, resident.tokenizer)
    model = resident.fresh_adapter(lora.r, lora.alpha, lora.dropout, cfg.train.seed, lora.target_modules)
    hp = stage_args(SFTArgs, cfg, cfg.sft, max_length=cfg.data.max_length)
    ckpts, metrics = run.checkpoints / "sft", run.path / "metrics_sft.jsonl"
    result = sft_train(
        model,
        resident.tokenizer,
        rows,
        None,
        ckpts,
        hp,
        metrics_path=metrics,
        resume=resume,
        eval_before=False,
    )
    losses = [loss for _, loss in result.losses]
    summary = {
        "sft_status": result.status,
        "sft_rows": len(rows),
        "sft_critique_rows": n_critique,
        "sft_steps": result.steps,
        "sft_first_loss": losses[0] if losses else None,
        "sft_last_loss": losses[-1] if losses else None,
        "sft_runtime_s": round(result.runtime_s, 2),
    }
    if result.error:
        summary["sft_error"] = result.error
    else:
        save_adapter(model, done, cfg.model.name, {"kind": "sft", "summary": summary})
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
    rm_cfg, fmt = cfg.reward_model, cfg.data.token_format
    out = Path(rm_cfg.path) if rm_cfg.path else run.path / REWARD_MODEL
    summary: dict[str, Any] = {"rm_source": rm_cfg.path or REWARD_MODEL}
    if not (out / META_FILE).exists():
        if rm_cfg.path:
            raise ConfigError(f"reward_model.path {out}: no trained reward model there ({META_FILE} missing)")
        pairs = score_pairs(train, rm_cfg.min_gap, fmt=fmt, tokenizer=tokenizer)
        answers = to_sft_rows(train, fmt, tokenizer)
        answers = random.Random(cfg.train.seed).sample(answers, min(NORM_SAMPLES, len(answers)))
        norm_rows = [(r["prompt"], r["completion"]) for r in answers]
        hp = stage_args(
            RewardModelArgs,
            cfg,
            rm_cfg,
            max_length=cfg.data.max_length,
            lora_r=rm_cfg.lora.r,
            lora_alpha=rm_cfg.lora.alpha,
        )
        result = train_reward_model(
            cfg.model.name,
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
    held_pairs = random.Random(cfg.train.seed).sample(held_pairs, min(HELDOUT_PAIRS, len(held_pairs)))
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
    if cfg.adlf.coherence:
        weights["coherence"] = cfg.adlf.coherence_weight
    if cfg.adlf.length_penalty:
        weights["length"] = cfg.adlf.length_weight
    if cfg.adlf.multi_objective:
        weights.update(
            fluency=cfg.adlf.fluency_weight,
            faithfulness=cfg.adlf.faithfulness_weight,
            quality=cfg.adlf.quality_weight,
        )
    return weights


def rl_prompt_rows(
    cfg: RLHFConfig, convs: list[ScoredConversation], tokenizer: Any, ordered: bool = True
) -> list[dict]:
    """to_prompts rows, in curriculum order when `ordered`; `rm_prompt` is the prompt without a score tag."""
    if ordered and cfg.rl.curriculum != "none":
        convs = curriculum_order(convs, cfg.rl.curriculum)
    target = cfg.rl.target_score if cfg.sft.decision_transformer else None
    rows = to_prompts(convs, cfg.data.token_format, tokenizer, target_score=target)
    plain = to_prompts(convs, cfg.data.token_format, tokenizer)
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
        cfg.adlf.alpha,
        tokenizer=tokenizer,
        fluency_model=model if weights.get("fluency") else None,
        length_target=(cfg.adlf.length_min_tokens, cfg.adlf.length_max_tokens),
        on_batch=write_rollouts,
    )
    controller = (
        AdaptiveKLController(cfg.rl.init_kl_coef, cfg.rl.kl_target, cfg.rl.kl_horizon)
        if cfg.rl.dynamic_kl
        else FixedKLController(cfg.rl.init_kl_coef)
    )
    contrastive = None
    if cfg.rl.contrastive:
        pairs = contrastive_pairs(train, fmt=cfg.data.token_format, tokenizer=tokenizer)
        if not pairs:
            raise PosttrainError(
                "contrastive: no prompt has answers 2 or more points apart in the training split"
            )
        contrastive = ContrastiveAux(
            tokenizer,
            pairs,
            temperature=cfg.rl.contrastive_temp,
            weight=cfg.rl.contrastive_weight,
            max_length=cfg.data.max_length,
            seed=cfg.train.seed,
        )
    hp = stage_args(
        RLArgs,
        cfg,
        cfg.rl,
        algo=cfg.rl.algo,
        num_generations=cfg.rl.num_generations,
        max_completion_length=cfg.rl.max_completion_length,
        temperature=cfg.rl.temperature,
        shuffle=cfg.rl.curriculum == "none",
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
        "dynamic_kl": cfg.rl.dynamic_kl,
        "kl_target": cfg.rl.kl_target if cfg.rl.dynamic_kl else None,
        "rl_runtime_s": round(result.runtime_s, 2),
    }
    if kls:
        warmup = min(cfg.rl.kl_warmup_steps, len(kls) - 1)
        mean = mean_kl_after_warmup(kls, warmup)
        out.update(kl_warmup_steps=warmup, kl_mean_after_warmup=mean)
        out["kl_within_band"] = within_band(mean, cfg.rl.kl_target) if cfg.rl.dynamic_kl else None
    if result.error:
        out["rl_error"] = result.error
    return out
