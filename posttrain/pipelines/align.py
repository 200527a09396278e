"""`posttrain align`: a base model to a tool-using agent (seeds 002 and 004).

    1. SFT        LoRA on whole conversations, loss on the assistant turns only
    2. rollouts   the SFT model acts on held-in prompts: k trajectories each (the first greedy),
                  every one scored by the task's reward and recorded in the store; with
                  `executor: ray` shards of `rollouts.prompts_per_task` prompts run as Ray tasks
    3. pairs      the task's synthetic pairs + on-policy pairs (best vs worst trajectory of a
                  prompt, when the reward gap is clear)
    4. DPO        on top of the SFT adapter, which is also the frozen reference
    5. eval       base, SFT and DPO side by side on held-out data (tool_use: in-distribution and
                  held-out tools; meetings: held-out scenarios beside the majority baseline and
                  the oracle), every figure with n and a bootstrap 95% CI

The task (`tasks.base.AlignTask`, looked up once by `--task`) supplies the data, the rollouts
and their rewards, the metrics and the references; this recipe never branches on its name. The
rollout shards are in align_rollouts.py, the report in posttrain.report.align.

Run directory: config.yaml, relevance_adapter/ (with evaluation.relevance_gate_scorer: trained, the
gate's scorer, trained before SFT), sft_adapter/, adapter/ (DPO), metrics_sft.jsonl, metrics_dpo.jsonl,
trajectories/agent_traces.json, trajectories/preference_pairs.json, eval/<model>.json,
eval.json, report.md, plots/*.png, summary.json. With --resume every stage whose output is
already in the partial run directory is skipped; SFT and DPO continue from their newest
complete checkpoint.
"""

from __future__ import annotations

import functools
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.config import AlignConfig
from posttrain.errors import ConfigError, PosttrainError
from posttrain.executors import Executor
from posttrain.inference import merged
from posttrain.models import ResidentModel
from posttrain.pipelines._run import Run, open_run, resumed
from posttrain.pipelines.align_eval import MODELS, evaluate_models, gate_dpo
from posttrain.pipelines.align_rollouts import (
    PolicySource,
    RolloutJob,
    RolloutShard,
    rollout_shard,
    rollout_shard_in_worker,
    run_rollouts,
)
from posttrain.report import eval_tables, write_align_report
from posttrain.rundir import RELEVANCE_DIR, RunDir, save_adapter
from posttrain.store import Store
from posttrain.tasks.align import align_task
from posttrain.tasks.base import AlignTask, TrainingData, TrainsGateScorer
from posttrain.tasks.episodes import on_policy_pairs
from posttrain.toolcall import load_tools
from posttrain.train.args import DPOArgs, SFTArgs
from posttrain.train.dpo import dpo_train
from posttrain.train.relevance import RelevanceArgs, train_relevance
from posttrain.train.sft import sft_train


@dataclass
class AlignData:
    """Everything the run needs that no model produces; built before any model loads."""

    training: TrainingData
    rollout_prompts: list[dict[str, Any]]  # {"id", "prompt", and what the task's reward needs}
    eval_sets: dict[str, Any]


def run_align(cfg: AlignConfig, resume: bool = False) -> dict[str, Any]:
    """The five stages for `cfg.task`; returns the run summary (also in summary.json)."""
    cfg = resumed(cfg, resume)
    ev = cfg.evaluation
    task = align_task(
        cfg.task,
        cfg.data.tool_format,
        cfg.model.name,
        ev.force_answer,
        ev.constrained,
        ev.relevance_gate,
        ev.rerank_arguments,
        ev.relevance_gate_scorer,
        ev.relevance_gate_keep,
        ev.rerank_scorer,
        ev.rerank_policy_weight,
    )
    _check_seeds(cfg, task)
    data = prepare_data(cfg, task)
    _check_model_splits(cfg, data.eval_sets)
    executor = cfg.executor.model_dump()
    with open_run("align", cfg, resume, default_name=f"align-{cfg.task}", executor=executor) as run:
        start = time.perf_counter()
        resident = run.resident
        stages = _load_json(run.path / "stages.json") if resume else {}

        if ev.relevance_gate is not None and ev.relevance_gate_scorer == "trained":
            stages["relevance"] = train_gate_scorer(resident, task, cfg, run.dir, stages.get("relevance"))
            _save_stages(run.dir, stages)
        stages["sft"] = train_sft(resident, data, cfg, run.dir, stages.get("sft"), resume)
        _save_stages(run.dir, stages)
        if stages["sft"]["status"] != "completed":
            return _diverged(run, cfg, stages, "sft")

        traces = collect_trajectories(resident, data, cfg, run.dir, run.store, run.run_id, run.executor)
        stages["trajectories"] = task.trajectory_stats(traces)
        pairs = build_preference_pairs(data, traces, cfg, run.dir)
        stages["pairs"] = _pair_stats(pairs)
        _save_stages(run.dir, stages)

        stages["dpo"] = train_dpo(resident, pairs, cfg, run.dir, stages.get("dpo"), resume)
        _save_stages(run.dir, stages)
        if stages["dpo"]["status"] != "completed":
            return _diverged(run, cfg, stages, "dpo")

        stages["gate"] = gate_dpo(resident, task, cfg, run.dir)
        _save_stages(run.dir, stages)
        results = evaluate_models(resident, task, data.eval_sets, data.training.train_outcomes, cfg, run.dir)
        summary = _summary(cfg, task, run.settings.describe(), stages, results, time.perf_counter() - start)
        title = f"posttrain align --task {cfg.task}: {run.name}"
        write_align_report(run.path, title, summary, results, task.plot_metrics, task.split_titles)
        return run.finish(summary)


# --------------------------------------------------------------------------- data


def _check_model_splits(cfg: AlignConfig, eval_sets: dict[str, Any]) -> None:
    """A split the task does not have would silently score nothing: say so before any model loads."""
    for model, splits in cfg.evaluation.model_splits.items():
        unknown = [s for s in splits if s not in eval_sets]
        if unknown:
            raise ConfigError(
                f"evaluation.model_splits.{model}: '{unknown[0]}' is not a {cfg.task} evaluation split; "
                f"pick from {', '.join(eval_sets)}"
            )


def _check_seeds(cfg: AlignConfig, task: AlignTask) -> None:
    """Held-out data comes from its own seed; sharing one with training would test on training data."""
    used = {"data.seed": cfg.data.seed, "rollouts.seed": cfg.rollouts.seed}
    used |= task.derived_seeds(cfg.data.seed)
    clash = [k for k, v in used.items() if v == cfg.evaluation.seed]
    if clash:
        raise ConfigError(
            f"evaluation.seed={cfg.evaluation.seed} equals {clash[0]}: the held-out data would repeat "
            "training data; pick another evaluation.seed"
        )
    if cfg.pairs.synthetic == 0 and cfg.pairs.on_policy == 0:
        raise ConfigError("pairs.synthetic and pairs.on_policy are both 0: DPO would have no data")


def prepare_data(cfg: AlignConfig, task: AlignTask) -> AlignData:
    """The task's SFT conversations, synthetic pairs, held-in prompts and held-out sets."""
    d, ev = cfg.data, cfg.evaluation
    training = task.training_data(
        rows=d.train_rows,
        demos=d.agent_demos,
        val_rows=d.val_rows,
        seed=d.seed,
        compact=d.compact_prompt,
        synthetic_pairs=cfg.pairs.synthetic,
        min_margin=cfg.pairs.min_margin,
        pool_rows=d.pool_rows,
        user_tools=load_tools(d.tools_file) if d.tools_file else (),
        user_rows=d.tools_rows,
    )
    return AlignData(
        training=training,
        rollout_prompts=task.rollout_prompts(cfg.rollouts.prompts, cfg.rollouts.seed, d.compact_prompt),
        eval_sets=task.eval_sets(
            ev.seed, task.eval_size(ev.episodes, ev.scenarios, ev.items), d.compact_prompt
        ),
    )


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> dict[str, list]:
    """`input_ids` of the chat-templated conversation and a `completion_mask` that is 1 exactly on
    the assistant turns (their text and end-of-turn tokens), cut to `max_length`.

    TRL takes such pre-tokenized rows as they are, so every assistant turn of a multi-turn
    episode is learned in ONE row instead of one row per turn re-reading the whole prefix, and the
    tool observations in between are context, never targets. Needs a chat template that renders a
    conversation's prefix the same way alone (ChatML and Llama 3 do); others raise ValueError.
    """
    ids: list[int] = []
    mask: list[int] = []

    def add(text: str, bit: int) -> None:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        mask.extend([bit] * len(piece))

    def render(turns: list[dict[str, str]], opened: bool = False) -> str:
        if not turns:
            return ""
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=opened)

    done = ""
    for i, msg in enumerate(messages):
        full = render(messages[: i + 1])
        head = render(messages[:i], opened=True) if msg["role"] == "assistant" else full
        if not (head.startswith(done) and full.startswith(head)):
            raise ValueError("the chat template does not render conversation prefixes stably")
        add(head[len(done) :], 0)
        add(full[len(head) :], 1)
        done = full
    return {"input_ids": ids[:max_length], "completion_mask": mask[:max_length]}


# --------------------------------------------------------------------------- 0. the gate's scorer

RELEVANCE_LORA = (8, 16)  # (r, alpha) of the scorer measured in bench/tool_relevance_trained.py


def train_gate_scorer(
    resident: ResidentModel, task: AlignTask, cfg: AlignConfig, run: RunDir, done: dict[str, Any] | None
) -> dict[str, Any]:
    """A LoRA on the base fitted for the relevance gate's decision (`train.relevance`), saved to
    relevance_adapter/; evaluation loads it beside each model it scores (`align_eval`). A kill
    before it is saved trains it again from the start, which gives the same weights."""
    out = run.path / RELEVANCE_DIR
    if done and done.get("status") == "completed" and (out / "adapter_config.json").exists():
        return done
    if not isinstance(task, TrainsGateScorer):
        raise ConfigError(f"--task {cfg.task} has no relevance gate to train a scorer for")
    ev = cfg.evaluation
    _say(f"0/5 relevance scorer on {ev.relevance_scorer_rows} requests")
    examples = task.relevance_examples(ev.relevance_scorer_rows, cfg.data.seed)
    model = resident.fresh_adapter(*RELEVANCE_LORA, 0.0, cfg.sft.seed)
    stats = train_relevance(
        model,
        resident.tokenizer,
        examples,
        RelevanceArgs(learning_rate=ev.relevance_scorer_lr, seed=cfg.sft.seed),
    )
    save_adapter(model, out, cfg.model.name, {"kind": "relevance-scorer", "task": cfg.task})
    return {"status": "completed", **stats}


# --------------------------------------------------------------------------- 1. SFT


def train_sft(
    resident: ResidentModel,
    data: AlignData,
    cfg: AlignConfig,
    run: RunDir,
    done: dict[str, Any] | None,
    resume: bool,
) -> dict[str, Any]:
    """LoRA SFT on the task's conversations; leaves the trained adapter active and in sft_adapter/."""
    out = run.path / "sft_adapter"
    if done and done.get("status") == "completed" and (out / "adapter_config.json").exists():
        resident.load_adapter(out, trainable=True)
        return done
    _say("1/5 SFT")
    lora, tok = cfg.lora, resident.tokenizer
    model = resident.fresh_adapter(lora.r, lora.alpha, lora.dropout, cfg.sft.seed, lora.target_modules)
    rows = [tokenize_conversation(tok, c, cfg.data.max_length) for c in data.training.sft_train]
    val = [tokenize_conversation(tok, c, cfg.data.max_length) for c in data.training.sft_val]
    hp = SFTArgs.from_settings(cfg.sft, max_length=cfg.data.max_length)
    result = sft_train(
        model,
        tok,
        rows,
        val or None,
        run.path / "checkpoints" / "sft",
        hp,
        metrics_path=run.path / "metrics_sft.jsonl",
        resume=resume,
        eval_before=bool(val),
    )
    if result.status == "completed":
        save_adapter(model, out, cfg.model.name, _adapter_meta(cfg, "sft"))
    return {
        "status": result.status,
        "error": result.error,
        "conversations": len(rows),
        "train_tokens": sum(len(r["input_ids"]) for r in rows),
        "steps": result.steps,
        "eval_loss_before": result.eval_loss_before,
        "eval_loss": result.eval_loss,
        "runtime_s": round(result.runtime_s, 1),
    }


def _adapter_meta(cfg: AlignConfig, kind: str) -> dict[str, Any]:
    """What `posttrain eval` and `chat --tools` need to prompt the adapter the way it was trained."""
    return {
        "kind": f"align-{kind}",
        "task": cfg.task,
        "compact_prompt": cfg.data.compact_prompt,
        "tool_format": cfg.data.tool_format,
    }


# --------------------------------------------------------------------------- 2. trajectories


def collect_trajectories(
    resident: ResidentModel,
    data: AlignData,
    cfg: AlignConfig,
    run: RunDir,
    store: Store,
    run_id: int,
    executor: Executor,
) -> list[dict[str, Any]]:
    """k trajectories per held-in prompt from the SFT model, each with its reward; written to
    trajectories/agent_traces.json and, one row each, to the store.

    Locally all prompts are one shard on the resident SFT model. On Ray each shard of
    `prompts_per_task` prompts is a task that loads sft_adapter/ in its worker and samples with
    seed `rollouts.seed + shard index`, so greedy trajectories equal the local ones and sampled
    ones are reproducible for a given shard size.
    """
    path = run.path / "trajectories" / "agent_traces.json"
    if path.exists():
        return json.loads(path.read_text())
    _say(f"2/5 trajectories: {len(data.rollout_prompts)} prompts x {cfg.rollouts.k}")
    r, prompts = cfg.rollouts, data.rollout_prompts
    job = RolloutJob(
        cfg.task, r.k, r.temperature, r.top_p, r.max_steps, r.max_new_tokens, r.batch_size, r.force_answer
    )
    if executor.kind == "local":
        with merged(resident.model) as model:
            fn = functools.partial(rollout_shard, model, resident.tokenizer, job)
            traces = run_rollouts(executor, fn, [RolloutShard(prompts, r.seed)])
    else:
        m, n = cfg.model, r.prompts_per_task
        source = PolicySource(
            m.name,
            m.device,
            m.dtype,
            m.attn_implementation,
            str((run.path / "sft_adapter").resolve()),
            m.use_kernels,
        )
        shards = [RolloutShard(prompts[i : i + n], r.seed + i // n) for i in range(0, len(prompts), n)]
        traces = run_rollouts(executor, functools.partial(rollout_shard_in_worker, source, job), shards)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(traces, indent=2, default=str))
    for t in traces:
        outcome = {k: t[k] for k in ("policy", "status", "correct", "final_answer")}
        store.add_trajectory(run_id, cfg.task, t["prompt_id"], t["steps"], t["reward"]["total"], outcome)
    return traces


# --------------------------------------------------------------------------- 3. preference pairs


def build_preference_pairs(
    data: AlignData, traces: list[dict], cfg: AlignConfig, run: RunDir
) -> list[dict[str, Any]]:
    """Synthetic + on-policy pairs, written to trajectories/preference_pairs.json."""
    path = run.path / "trajectories" / "preference_pairs.json"
    if path.exists():
        return json.loads(path.read_text())
    pairs = data.training.synthetic_pairs + on_policy_pairs(traces, cfg.pairs.min_margin, cfg.pairs.on_policy)
    if not pairs:
        raise PosttrainError(
            "no preference pairs: the SFT trajectories never differ by pairs.min_margin and "
            "pairs.synthetic is 0; raise pairs.synthetic or rollouts.k, or lower pairs.min_margin"
        )
    path.write_text(json.dumps(pairs, indent=2))
    return pairs


def _pair_stats(pairs: list[dict]) -> dict[str, Any]:
    on_policy = [p for p in pairs if p["source"] == "on_policy"]
    return {
        "synthetic": len(pairs) - len(on_policy),
        "on_policy": len(on_policy),
        "on_policy_mean_margin": round(sum(p["margin"] for p in on_policy) / len(on_policy), 4)
        if on_policy
        else None,
    }


# --------------------------------------------------------------------------- 4. DPO


def train_dpo(
    resident: ResidentModel,
    pairs: list[dict],
    cfg: AlignConfig,
    run: RunDir,
    done: dict[str, Any] | None,
    resume: bool,
) -> dict[str, Any]:
    """DPO from the SFT adapter (also the reference); the result goes to adapter/."""
    out = run.path / "adapter"
    if done and done.get("status") == "completed" and (out / "adapter_config.json").exists():
        return done
    _say(f"4/5 DPO on {len(pairs)} pairs")
    model = resident.load_adapter(run.path / "sft_adapter", trainable=True)
    rows = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
    random.Random(cfg.dpo.train.seed).shuffle(rows)
    d = cfg.dpo
    hp = DPOArgs.from_settings(d.train, max_length=cfg.data.max_length, beta=d.beta, loss_type=d.loss_type)
    result = dpo_train(
        model,
        resident.tokenizer,
        rows,
        None,
        run.path / "checkpoints" / "dpo",
        hp,
        metrics_path=run.path / "metrics_dpo.jsonl",
        resume=resume,
    )
    if result.status == "completed":
        save_adapter(model, out, cfg.model.name, _adapter_meta(cfg, "dpo") | {"from": "sft_adapter"})
    log = result.extra.get("log", [])
    acc = [r["rewards/accuracies"] for r in log if "rewards/accuracies" in r]
    return {
        "status": result.status,
        "error": result.error,
        "pairs": len(rows),
        "steps": result.steps,
        "first_loss": result.losses[0][1] if result.losses else None,
        "last_loss": result.losses[-1][1] if result.losses else None,
        "last_reward_accuracy": acc[-1] if acc else None,
        "runtime_s": round(result.runtime_s, 1),
    }


# --------------------------------------------------------------------------- summary


def _summary(
    cfg: AlignConfig,
    task: AlignTask,
    device: str,
    stages: dict[str, Any],
    results: dict[str, Any],
    runtime: float,
) -> dict[str, Any]:
    splits = results["splits"]
    summary: dict[str, Any] = {
        "task": cfg.task,
        "model": cfg.model.name,
        "device": device,
        "runtime_s": round(runtime, 1),
        **({"relevance_scorer": stages["relevance"]} if "relevance" in stages else {}),
        "sft": stages["sft"],
        "trajectories": stages["trajectories"],
        "pairs": stages["pairs"],
        "dpo": stages["dpo"],
        "gate": stages.get("gate", {"applied": False}),
        "eval": splits,
        "references": results["references"],
    }
    # Headline numbers `posttrain runs list` shows: the final model's held-out accuracy and the reward.
    final = next((m for m in reversed(MODELS) if m in cfg.evaluation.models), None)
    split, metric = task.headline
    if final is not None and split in splits:
        summary["accuracy"] = splits[split][final][metric]["value"]
    summary["reward"] = stages["trajectories"]["mean_reward"]["value"]
    summary["eval_table"] = eval_tables(results, task.split_titles)
    return summary


# --------------------------------------------------------------------------- run bookkeeping


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save_stages(run: RunDir, stages: dict[str, Any]) -> None:
    run.write_json("stages.json", stages)


def _diverged(run: Run, cfg: AlignConfig, stages: dict[str, Any], stage: str) -> dict[str, Any]:
    """The stage's error in summary.json and the store; the directory stays `.partial`."""
    error = stages[stage].get("error") or f"{stage} diverged"
    return run.finish({"task": cfg.task, "stage": stage}, status="diverged", error=error)


_T0 = time.perf_counter()


def _say(message: str) -> None:
    """Stage banners on stderr: a CPU run takes minutes per stage, and silence looks like a hang."""
    print(f"[align {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)
