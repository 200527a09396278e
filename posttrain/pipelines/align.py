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

Run directory: config.yaml, sft_adapter/, adapter/ (DPO), metrics_sft.jsonl, metrics_dpo.jsonl,
trajectories/agent_traces.json, trajectories/preference_pairs.json, eval/<model>.json,
eval.json, report.md, plots/*.png, summary.json. With --resume every stage whose output is
already in the partial run directory is skipped; SFT and DPO continue from their newest
complete checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml

from posttrain.agents.toolcall import Generate, run_react
from posttrain.config import AlignConfig, dump_config
from posttrain.errors import ConfigError, PosttrainError
from posttrain.executors import AttemptLog, Executor, open_executor, worker_cached
from posttrain.models import ResidentModel, device_settings
from posttrain.report import markdown_table
from posttrain.rundir import RunDir, default_run_name, open_store, save_adapter, tracked_run
from posttrain.store import Store
from posttrain.tasks import align_metrics as am
from posttrain.tasks import meetings as mt
from posttrain.tasks.tool_use import answer_matches, build_registry, generate_tool_use_data
from posttrain.train.dpo import DPOHParams, dpo_train
from posttrain.train.sft import SFTHParams, sft_train

T = TypeVar("T")
MODELS = ("base", "sft", "dpo")


@dataclass
class AlignData:
    """Everything the run needs that no model produces; built before any model loads."""

    system: str
    sft_train: list[list[dict[str, str]]]
    sft_val: list[list[dict[str, str]]]
    synthetic_pairs: list[dict[str, Any]]
    rollout_prompts: list[dict[str, Any]]  # {"id", "prompt", and "gold_answer" | "scenario"}
    eval_sets: dict[str, Any]
    eval_system: str
    train_outcomes: list[int] = field(default_factory=list)


def run_align(cfg: AlignConfig, resume: bool = False) -> dict[str, Any]:
    """The five stages for `cfg.task`; returns the run summary (also in summary.json)."""
    cfg = _resumed_config(cfg, resume)
    _check_seeds(cfg)
    data = prepare_data(cfg)
    run = RunDir.start(cfg.run.output_root, cfg.run.name or default_run_name(f"align-{cfg.task}"), resume)
    dump_config(cfg, run.path / "config.yaml")
    store = open_store(cfg.run.store, cfg.run.output_root)
    with (
        tracked_run(store, "align", run, cfg.model_dump(mode="json"), resume) as run_id,
        open_executor(
            **cfg.executor.model_dump(), log=AttemptLog.for_store(store.connect_url, run_id)
        ) as executor,
    ):
        start = time.perf_counter()
        settings = device_settings(
            cfg.model.device, cfg.model.dtype, cfg.model.attn_implementation, cfg.model.use_kernels
        )
        resident = ResidentModel(cfg.model.name, settings)
        stages = _load_json(run.path / "stages.json") if resume else {}

        stages["sft"] = train_sft(resident, data, cfg, run, stages.get("sft"), resume)
        _save_stages(run, stages)
        if stages["sft"]["status"] != "completed":
            return _diverged(store, run_id, run, cfg, stages, "sft")

        traces = collect_trajectories(resident, data, cfg, run, store, run_id, executor)
        stages["trajectories"] = _trajectory_stats(traces, cfg.task)
        pairs = build_preference_pairs(data, traces, cfg, run)
        stages["pairs"] = _pair_stats(pairs)
        _save_stages(run, stages)

        stages["dpo"] = train_dpo(resident, pairs, cfg, run, stages.get("dpo"), resume)
        _save_stages(run, stages)
        if stages["dpo"]["status"] != "completed":
            return _diverged(store, run_id, run, cfg, stages, "dpo")

        results = evaluate_models(resident, data, cfg, run)
        summary = _summary(cfg, settings.describe(), stages, results, time.perf_counter() - start)
        write_align_report(run.path, f"posttrain align --task {cfg.task}: {run.name}", summary, results)
        return _finish(store, run_id, run, summary)


# --------------------------------------------------------------------------- data


def _check_seeds(cfg: AlignConfig) -> None:
    """Held-out data comes from its own seed; sharing one with training would test on training data."""
    used = {"data.seed": cfg.data.seed, "rollouts.seed": cfg.rollouts.seed}
    if cfg.task == "meetings":
        used["data.seed + 1 (synthetic pairs)"] = cfg.data.seed + 1
    clash = [k for k, v in used.items() if v == cfg.evaluation.seed]
    if clash:
        raise ConfigError(
            f"evaluation.seed={cfg.evaluation.seed} equals {clash[0]}: the held-out data would repeat "
            "training data; pick another evaluation.seed"
        )
    if cfg.pairs.synthetic == 0 and cfg.pairs.on_policy == 0:
        raise ConfigError("pairs.synthetic and pairs.on_policy are both 0: DPO would have no data")


def prepare_data(cfg: AlignConfig) -> AlignData:
    """Generate the task's SFT conversations, synthetic pairs, held-in prompts and held-out sets."""
    return _tool_use_data(cfg) if cfg.task == "tool_use" else _meetings_data(cfg)


def _tool_use_data(cfg: AlignConfig) -> AlignData:
    compact = cfg.data.compact_prompt
    system = am.tool_use_system_prompt("train", compact)
    rows = am.with_system_prompt(generate_tool_use_data(cfg.data.train_rows, cfg.data.seed, "train"), system)
    by_episode: dict[int, dict] = {}
    for row in rows:  # the last row of an episode holds every earlier turn in its prompt
        by_episode[row["episode"]] = row
    conversations = [r["prompt"] + [_assistant(r["completion"])] for r in by_episode.values()]
    val_n = min(cfg.data.val_rows, len(conversations) // 5)
    synthetic = [
        {
            "source": "synthetic",
            "id": r["id"],
            "defect": r["defect"],
            "prompt": r["prompt"],
            "chosen": [_assistant(r["chosen"])],
            "rejected": [_assistant(r["rejected"])],
        }
        for r in _round_robin([r for r in rows if r["kind"] == "preference"], key="defect")
    ][: cfg.pairs.synthetic]
    held_in = am.tool_use_first_turns("train", cfg.rollouts.seed, cfg.rollouts.prompts, compact)
    prompts = [{"id": r["id"], "prompt": r["prompt"], "gold_answer": r["gold_answer"]} for r in held_in]
    return AlignData(
        system=system,
        sft_train=conversations[: len(conversations) - val_n],
        sft_val=conversations[len(conversations) - val_n :],
        synthetic_pairs=synthetic,
        rollout_prompts=prompts,
        eval_sets=am.eval_data("tool_use", cfg.evaluation.seed, cfg.evaluation.episodes, compact),
        eval_system=system,
    )


def _meetings_data(cfg: AlignConfig) -> AlignData:
    d = cfg.data
    system = am.meetings_system_prompt(d.compact_prompt)
    scenarios = mt.generate_scenarios(d.train_rows + d.agent_demos, d.seed)
    direct, demos = scenarios[: d.train_rows], scenarios[d.train_rows :]
    rng = random.Random(d.seed)
    conversations = [r["prompt"] + r["completion"] for r in mt.sft_rows(direct)]
    conversations += [
        am.meetings_agent_prompt(s, system) + am.trajectory_messages(mt.scripted_trajectory(s, rng, 1.0))
        for s in demos
    ]
    rng.shuffle(conversations)
    val_n = min(d.val_rows, len(conversations) // 5)
    pair_scenarios = mt.generate_scenarios(max(cfg.pairs.synthetic, 1), d.seed + 1)
    scripted = mt.scripted_trajectories(pair_scenarios, per_scenario=4, seed=d.seed)
    by_text = {t.text: t for t in scripted}
    by_id = {s.scenario_id: s for s in pair_scenarios}
    synthetic = [
        {
            "source": "synthetic",
            "id": p["scenario_id"],
            "prompt": am.meetings_agent_prompt(by_id[p["scenario_id"]], system),
            "chosen": am.trajectory_messages(by_text[p["chosen"]]),
            "rejected": am.trajectory_messages(by_text[p["rejected"]]),
            "chosen_reward": p["chosen_reward"],
            "rejected_reward": p["rejected_reward"],
            "margin": p["margin"],
        }
        for p in mt.build_preference_pairs(scripted, pair_scenarios, cfg.pairs.min_margin)
    ][: cfg.pairs.synthetic]
    held_in = mt.generate_scenarios(cfg.rollouts.prompts, cfg.rollouts.seed)
    return AlignData(
        system=system,
        sft_train=conversations[: len(conversations) - val_n],
        sft_val=conversations[len(conversations) - val_n :],
        synthetic_pairs=synthetic,
        rollout_prompts=[
            {"id": s.scenario_id, "prompt": am.meetings_agent_prompt(s, system), "scenario": s}
            for s in held_in
        ],
        eval_sets=am.eval_data("meetings", cfg.evaluation.seed, cfg.evaluation.scenarios, d.compact_prompt),
        eval_system=system,
        train_outcomes=[s.outcome for s in direct] or [s.outcome for s in scenarios],
    )


def _round_robin(rows: list[dict], key: str) -> list[dict]:
    """Rows interleaved across their `key` values (first of each, then second of each, ...), so a
    capped selection covers every defect, rare ones (a tool call where none is needed) included."""
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    out = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out += [g[i] for g in groups.values() if i < len(g)]
    return out


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


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
    rows = [tokenize_conversation(tok, c, cfg.data.max_length) for c in data.sft_train]
    val = [tokenize_conversation(tok, c, cfg.data.max_length) for c in data.sft_val]
    hp = _hparams(SFTHParams, cfg.sft, max_length=cfg.data.max_length)
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
    return {"kind": f"align-{kind}", "task": cfg.task, "compact_prompt": cfg.data.compact_prompt}


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
    job = RolloutJob(cfg.task, r.k, r.temperature, r.top_p, r.max_steps, r.max_new_tokens, r.batch_size)
    if executor.kind == "local":
        with am.merged(resident.model) as model:
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


@dataclass(frozen=True)
class RolloutJob:
    """How every shard rolls out: the task, k trajectories per prompt and the generation budget."""

    task: str
    k: int
    temperature: float
    top_p: float
    max_steps: int
    max_new_tokens: int
    batch_size: int


@dataclass(frozen=True)
class RolloutShard:
    """Held-in prompts rolled out by one task, and the torch seed its sampling starts from."""

    prompts: list[dict[str, Any]]
    seed: int


@dataclass(frozen=True)
class PolicySource:
    """Where a worker loads the policy from: the base spec and placement, and an adapter dir."""

    model: str
    device: str
    dtype: str
    attn_implementation: str
    adapter: str
    use_kernels: bool = False


def rollout_shard(
    model: Any, tokenizer: Any, job: RolloutJob, shard: RolloutShard
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(greedy, sampled) trajectories of a shard: one greedy per prompt, then k - 1 sampled each."""
    torch.manual_seed(shard.seed)
    greedy = am.generator(model, tokenizer, job.max_new_tokens, job.batch_size)
    sampled = am.generator(model, tokenizer, job.max_new_tokens, job.batch_size, (job.temperature, job.top_p))
    rollout = _tool_use_rollouts if job.task == "tool_use" else _meetings_rollouts
    first = rollout(shard.prompts, greedy, job.max_steps, "sft-greedy")
    more: list[dict[str, Any]] = []
    if job.k > 1:
        again = [p for p in shard.prompts for _ in range(job.k - 1)]
        more = rollout(again, sampled, job.max_steps, f"sft-sample(t={job.temperature})")
    return first, more


def rollout_shard_in_worker(
    source: PolicySource, job: RolloutJob, shard: RolloutShard
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`rollout_shard` in a Ray worker, on the policy loaded once per worker from `source`."""

    def load() -> ResidentModel:
        settings = device_settings(
            source.device, source.dtype, source.attn_implementation, source.use_kernels
        )
        resident = ResidentModel(source.model, settings)
        resident.load_adapter(source.adapter, trainable=False)
        return resident

    resident = worker_cached(repr(source), load)
    with am.merged(resident.model) as model:
        return rollout_shard(model, resident.tokenizer, job, shard)


def run_rollouts(
    executor: Executor,
    fn: Callable[[RolloutShard], tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    shards: list[RolloutShard],
) -> list[dict[str, Any]]:
    """Every shard through `fn`, one task each; all greedy trajectories first, then the sampled
    ones, each group in prompt order (the layout of a single-shard run)."""
    parts = executor.map(fn, shards, stage="align.rollouts", keys=[f"shard{i}" for i in range(len(shards))])
    return [t for first, _ in parts for t in first] + [t for _, more in parts for t in more]


def _tool_use_rollouts(
    prompts: list[dict], generate: Generate, max_steps: int, policy: str
) -> list[dict[str, Any]]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="posttrain-rollouts-") as tmp:
        registry = build_registry("train", Path(tmp))
        episodes = run_react([p["prompt"] for p in prompts], registry, generate, max_steps)
    traces = []
    for p, ep in zip(prompts, episodes, strict=True):
        reward = am.tool_use_trajectory_reward(ep, p["gold_answer"])
        traces.append(
            {
                "prompt_id": p["id"],
                "policy": policy,
                "prompt": p["prompt"],
                "messages": ep.messages[len(p["prompt"]) :],
                "steps": am.episode_record(ep),
                "num_tool_calls": len(ep.tool_calls),
                "status": ep.status,
                "final_answer": ep.final_answer,
                "gold_answer": p["gold_answer"],
                "correct": ep.status == "final" and answer_matches(ep.final_answer, p["gold_answer"]),
                "reward": {"total": round(reward, 4)},
            }
        )
    return traces


def _meetings_rollouts(
    prompts: list[dict], generate: Generate, max_steps: int, policy: str
) -> list[dict[str, Any]]:
    scenarios = [p["scenario"] for p in prompts]
    system = prompts[0]["prompt"][0]["content"] if prompts else ""
    trajs, episodes = am.run_meetings_agent(generate, scenarios, system, max_steps, policy)
    traces = []
    for p, s, traj, ep in zip(prompts, scenarios, trajs, episodes, strict=True):
        rec = mt.trace_record(traj, s)
        rec |= {
            "prompt_id": p["id"],
            "prompt": p["prompt"],
            "messages": ep.messages[len(p["prompt"]) :],
            "steps": am.episode_record(ep),
            "status": ep.status,
            "final_answer": traj.final_text,
        }
        traces.append(rec)
    return traces


def _trajectory_stats(traces: list[dict], task: str) -> dict[str, Any]:
    rewards = [t["reward"]["total"] for t in traces]
    greedy = [t for t in traces if t["policy"] == "sft-greedy"]
    calls = [t["num_tool_calls"] for t in traces]
    return {
        "count": len(traces),
        "mean_reward": am.figure(rewards).as_dict(),
        "accuracy": am.figure([t["correct"] for t in traces]).as_dict(),
        "greedy_accuracy": am.figure([t["correct"] for t in greedy]).as_dict(),
        "mean_tool_calls": am.figure(calls).as_dict(),
        "calls_2_to_5": am.figure([2 <= c <= 5 for c in calls]).as_dict() if task == "meetings" else None,
        "final_answers": sum(t["status"] == "final" for t in traces),
    }


# --------------------------------------------------------------------------- 3. preference pairs


def pair_best_worst(
    group: Sequence[tuple[float, T]], min_margin: float, key: Callable[[T], Any] = id
) -> tuple[T, T, float] | None:
    """(best, worst, margin) of one prompt's scored candidates, or None when the rewards differ by
    less than `min_margin` or the two are the same (`key` equal). Ties keep the earlier candidate
    as best and the later one as worst."""
    if len(group) < 2:
        return None
    best = max(group, key=lambda rt: rt[0])
    worst = min(reversed(group), key=lambda rt: rt[0])
    margin = best[0] - worst[0]
    if margin < min_margin or key(best[1]) == key(worst[1]):
        return None
    return best[1], worst[1], margin


def on_policy_pairs(traces: Sequence[dict], min_margin: float, limit: int) -> list[dict[str, Any]]:
    """Best vs worst trajectory of each prompt by reward, largest margins first, at most `limit`."""
    groups: dict[str, list[tuple[float, dict]]] = {}
    for t in traces:
        groups.setdefault(t["prompt_id"], []).append((t["reward"]["total"], t))
    pairs = []
    for prompt_id, group in groups.items():
        found = pair_best_worst(group, min_margin, key=lambda t: json.dumps(t["messages"]))
        if found is None:
            continue
        best, worst, margin = found
        pairs.append(
            {
                "source": "on_policy",
                "id": prompt_id,
                "prompt": best["prompt"],
                "chosen": best["messages"],
                "rejected": worst["messages"],
                "chosen_reward": best["reward"]["total"],
                "rejected_reward": worst["reward"]["total"],
                "margin": round(margin, 4),
            }
        )
    pairs.sort(key=lambda p: -p["margin"])
    return pairs[:limit]


def build_preference_pairs(
    data: AlignData, traces: list[dict], cfg: AlignConfig, run: RunDir
) -> list[dict[str, Any]]:
    """Synthetic + on-policy pairs, written to trajectories/preference_pairs.json."""
    path = run.path / "trajectories" / "preference_pairs.json"
    if path.exists():
        return json.loads(path.read_text())
    pairs = data.synthetic_pairs + on_policy_pairs(traces, cfg.pairs.min_margin, cfg.pairs.on_policy)
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
    hp = _hparams(DPOHParams, d.train, max_length=cfg.data.max_length, beta=d.beta, loss_type=d.loss_type)
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


# --------------------------------------------------------------------------- 5. evaluation


def evaluate_models(
    resident: ResidentModel, data: AlignData, cfg: AlignConfig, run: RunDir
) -> dict[str, Any]:
    """Each of base/SFT/DPO on the held-out sets; eval/<model>.json per model, eval.json for all."""
    ev = cfg.evaluation
    results: dict[str, Any] = {"splits": {}, "references": {}}
    if cfg.task == "meetings":
        refs = am.meetings_references(data.train_outcomes, data.eval_sets["heldout"])
        results["references"] = {k: f.as_dict() for k, f in refs.items()}
    for name in [m for m in MODELS if m in ev.models]:
        path = run.path / "eval" / f"{name}.json"
        if path.exists():
            figs = json.loads(path.read_text())["figures"]
        else:
            _say(f"5/5 evaluating {name}")
            with _model_for(resident, name, run) as model:
                generate = am.generator(model, resident.tokenizer, ev.max_new_tokens, ev.batch_size)
                found, records = am.evaluate_on_task(
                    generate, cfg.task, data.eval_sets, data.eval_system, ev.max_steps
                )
            figs = {split: {k: f.as_dict() for k, f in fs.items()} for split, fs in found.items()}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"figures": figs, "records": records}, indent=2, default=str))
        for split, fs in figs.items():
            results["splits"].setdefault(split, {})[name] = fs
    run.write_json("eval.json", results)
    return results


@contextlib.contextmanager
def _model_for(resident: ResidentModel, name: str, run: RunDir) -> Iterator[Any]:
    """The model under test, ready to generate: base (adapter disabled), SFT or DPO (merged)."""
    if name == "base":
        if resident.model is None:
            yield resident.base
        else:
            with resident.model.disable_adapter():
                yield resident.model
        return
    model = resident.load_adapter(run.path / ("sft_adapter" if name == "sft" else "adapter"), trainable=False)
    with am.merged(model):
        yield model


# --------------------------------------------------------------------------- summary and report


def _summary(
    cfg: AlignConfig, device: str, stages: dict[str, Any], results: dict[str, Any], runtime: float
) -> dict[str, Any]:
    splits = results["splits"]
    summary: dict[str, Any] = {
        "task": cfg.task,
        "model": cfg.model.name,
        "device": device,
        "runtime_s": round(runtime, 1),
        "sft": stages["sft"],
        "trajectories": stages["trajectories"],
        "pairs": stages["pairs"],
        "dpo": stages["dpo"],
        "eval": splits,
        "references": results["references"],
    }
    # Headline numbers `posttrain runs list` shows: the final model's held-out accuracy and the reward.
    final = next((m for m in reversed(MODELS) if m in cfg.evaluation.models), None)
    key = "task_accuracy" if cfg.task == "tool_use" else "agent_accuracy"
    first_split = "indist" if cfg.task == "tool_use" else "heldout"
    if final is not None and first_split in splits:
        summary["accuracy"] = splits[first_split][final][key]["value"]
    summary["reward"] = stages["trajectories"]["mean_reward"]["value"]
    summary["eval_table"] = am.eval_tables(results, cfg.task)
    return summary


def write_align_report(run_dir: Path, title: str, summary: dict[str, Any], results: dict[str, Any]) -> Path:
    """report.md with the base/SFT/DPO tables and plots: SFT and DPO loss, DPO reward margins,
    compliance (tool_use) or accuracy (meetings) bars."""
    plots = run_dir / "plots"
    sft_rows = _read_jsonl(run_dir / "metrics_sft.jsonl")
    dpo_rows = _read_jsonl(run_dir / "metrics_dpo.jsonl")
    made = [
        _plot_lines(plots / "sft_loss.png", {"train loss": _series(sft_rows, "loss")}, "SFT", "loss"),
        _plot_lines(plots / "dpo_loss.png", {"train loss": _series(dpo_rows, "loss")}, "DPO", "loss"),
        _plot_lines(
            plots / "reward_margins.png",
            {
                "margin (chosen - rejected)": _series(dpo_rows, "rewards/margins"),
                "reward accuracy": _series(dpo_rows, "rewards/accuracies"),
            },
            "DPO implicit rewards",
            "value",
        ),
        _plot_bars(plots / "compliance.png", results, summary["task"]),
    ]
    stages = {k: summary[k] for k in ("sft", "trajectories", "pairs", "dpo")}
    head = {k: v for k, v in summary.items() if not isinstance(v, dict | list) and k != "eval_table"}
    parts = [
        f"# {title}\n",
        "Every figure: mean [bootstrap 95% CI] n=examples. Held-out data comes from its own seed.\n",
        "## Base vs SFT vs DPO\n",
        summary["eval_table"],
        "## Run\n",
        markdown_table(["key", "value"], list(head.items())),
        "## Stages\n",
        markdown_table(["stage", "key", "value"], _stage_rows(stages)),
        "## Plots\n",
    ]
    parts += [f"![{p.stem}](plots/{p.name})\n" for p in made if p is not None]
    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _stage_rows(stages: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for stage, numbers in stages.items():
        for key, value in numbers.items():
            is_figure = isinstance(value, dict) and {"value", "n", "ci"} <= set(value)
            rows.append([stage, key, am.format_figure(value) if is_figure else value])
    return rows


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _series(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float) and "step" in r]


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plot_lines(
    path: Path, series: dict[str, list[tuple[float, float]]], title: str, ylabel: str
) -> Path | None:
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for label, points in series.items():
        ax.plot(
            *zip(*points, strict=True), label=label, linewidth=1.2, marker="." if len(points) < 30 else None
        )
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _plot_bars(path: Path, results: dict[str, Any], task: str) -> Path | None:
    """Grouped bars with 95% CI whiskers: compliance figures (tool_use) or accuracies (meetings)."""
    metrics = (
        ["full_compliance", "json_validity", "thought_prefix_rate", "argument_accuracy", "task_accuracy"]
        if task == "tool_use"
        else ["direct_accuracy", "agent_accuracy"]
    )
    splits = results["splits"]
    if not splits:
        return None
    fig = _figure()
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    for ax, (split, by_model) in zip(axes, splits.items(), strict=True):
        width = 0.8 / max(len(by_model), 1)
        for j, (name, figs) in enumerate(by_model.items()):
            vals = [(figs.get(m) or {}).get("value") or 0.0 for m in metrics]
            cis = [(figs.get(m) or {}).get("ci") or [v, v] for m, v in zip(metrics, vals, strict=True)]
            err = [
                [v - c[0] for v, c in zip(vals, cis, strict=True)],
                [c[1] - v for v, c in zip(vals, cis, strict=True)],
            ]
            xs = [i + j * width for i in range(len(metrics))]
            ax.bar(xs, vals, width, yerr=err, capsize=2, label=name)
        for ref, f in results.get("references", {}).items():
            ax.axhline(
                f["value"], linestyle="--", linewidth=1, color="grey" if "majority" in ref else "black"
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))])
        ax.set_xticklabels([m.replace("_", "\n") for m in metrics], fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(split)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- run bookkeeping


def _resumed_config(cfg: AlignConfig, resume: bool) -> AlignConfig:
    """On resume the run's own config.yaml wins, so the continued run is the same run."""
    if not resume:
        return cfg
    if cfg.run.name is None:
        raise PosttrainError("--resume needs the run's name: add --name NAME (see `posttrain runs list`)")
    saved = RunDir(Path(cfg.run.output_root), cfg.run.name).partial / "config.yaml"
    return AlignConfig.model_validate(yaml.safe_load(saved.read_text())) if saved.exists() else cfg


def _hparams(cls: type, train: Any, **extra: Any) -> Any:
    fields = cls.__dataclass_fields__
    return cls(**{k: v for k, v in train.model_dump().items() if k in fields}, **extra)


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save_stages(run: RunDir, stages: dict[str, Any]) -> None:
    run.write_json("stages.json", stages)


def _diverged(
    store: Store, run_id: int, run: RunDir, cfg: AlignConfig, stages: dict[str, Any], stage: str
) -> dict[str, Any]:
    error = stages[stage].get("error") or f"{stage} diverged"
    summary = {"run": run.name, "status": "diverged", "task": cfg.task, "stage": stage, "error": error}
    run.write_json("summary.json", summary)
    store.update_run(run_id, status="diverged", error=error, metrics=summary)
    summary["run_dir"] = str(run.path)  # stays .partial: a diverged run is not a complete one
    return summary


def _finish(store: Store, run_id: int, run: RunDir, summary: dict[str, Any]) -> dict[str, Any]:
    summary = {"run": run.name, "status": "completed", **summary}
    run.write_json("summary.json", summary)
    final = run.finish()
    summary["run_dir"] = str(final)
    store.update_run(run_id, status="completed", metrics=summary, run_dir=str(final))
    return summary


_T0 = time.perf_counter()


def _say(message: str) -> None:
    """Stage banners on stderr: a CPU run takes minutes per stage, and silence looks like a hang."""
    print(f"[align {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)
