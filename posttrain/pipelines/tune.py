"""`posttrain tune`: seed 000's agentic episode loop on a resident base model.

Each episode: 1 judge → 2 reward-penalty → 3 SEAL summary → 4 tuner (or random / TPE /
hybrid) → 5 merge hparams (tuner, override, defaults, clamp) → 6 TRAIN → 7 SEAL expert →
8 SEAL stage → 9 QA (optional) → 10 episode summary. Every episode is one row in the store,
written when the episode is done, so a killed run resumes at the next episode.

TRAIN may train several proposals (`agents.proposals_per_episode`): with `executor: ray`
each is a Ray task that loads the base in its worker; locally they take turns on the resident
base. The best becomes the episode's result and all of them go into its `decisions`.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.agents.backends import AgentLog, make_backend
from posttrain.agents.history import EpisodeSummary
from posttrain.agents.rationale import explain_episode
from posttrain.agents.roles import merge_hparams
from posttrain.agents.team import AgentTeam
from posttrain.agents.tuners import make_proposer
from posttrain.config import TuneConfig
from posttrain.executors import Executor, worker_cached
from posttrain.inference import generate_batch
from posttrain.models import ResidentModel, device_settings
from posttrain.pipelines._run import Run, open_run, resumed
from posttrain.report.tune import write_tune_report
from posttrain.rundir import write_adapter_meta
from posttrain.store import Store
from posttrain.tasks.instructions import load_sft_dataset, sample_path
from posttrain.train.trials import load_adapter_weights, make_train_and_eval

console = Console()


def run_tune(cfg: TuneConfig, resume: bool = False) -> dict[str, Any]:
    """Run up to `max_episodes` episodes; returns the summary (best loss, adapter, table)."""
    cfg = resumed(cfg, resume)
    d = cfg.data
    train_rows, val_rows = load_sft_dataset(d.path or str(sample_path("alpaca")), **d.split_args())
    with open_run("tune", cfg, resume, executor=cfg.executor.model_dump()) as run:
        store, run_id, resident = run.store, run.run_id, run.resident
        log = AgentLog(run.path / "agents.jsonl", store, run_id)
        team = _agent_team(cfg, log)
        a = cfg.agents
        proposer = make_proposer(
            a.tuner,
            cfg.search_space,
            a.seed,
            a.tpe_startup_trials,
            override_share=a.override_share,
            centaur_base=a.centaur_base,
            storage=store.connect_url if store is not None else None,
            study_name=study_name(run.name),
        )
        job = TrialJob(
            model=cfg.model.name,
            device=cfg.model.device,
            dtype=cfg.model.dtype,
            attn_implementation=cfg.model.attn_implementation,
            train_rows=train_rows,
            val_rows=val_rows,
            out_root=str((run.path / "trials").resolve()),
            max_length=cfg.trial.max_length,
            max_steps=cfg.trial.max_steps,
            seed=cfg.agents.seed,
            use_kernels=cfg.model.use_kernels,
        )
        train_and_eval = job.train_and_eval(resident, run.path / "trials", reload_base=cfg.trial.reload_base)
        train_many = functools.partial(train_proposals, run.executor, train_and_eval, job)
        history, metrics = replay_history(store, run_id, proposer)
        if resume:  # the episode a killed attempt began starts over: its messages must not count twice
            log.forget_from(len(history))
        stop: dict[str, Any] | None = None
        for episode in range(len(history), cfg.agents.max_episodes):
            row = run_episode(
                episode,
                history,
                metrics,
                cfg,
                team,
                proposer,
                train_and_eval,
                resident,
                train_rows,
                val_rows,
                train_many,
            )
            if row["kind"] == "stop":
                stop = {"before_episode": episode, **row["decisions"]["judge"]}
                break
            store.add_episode(run_id, episode, row["kind"], row["hparams"], row["metrics"], row["decisions"])
            history.append(_summary(episode, row["hparams"], row["metrics"], row["decisions"]))
            metrics[episode] = row["metrics"]
            _print_episode(episode, row)
        return _finish(run, cfg, history, metrics, stop)


@dataclass(frozen=True)
class TrialJob:
    """What a worker needs to run a trial the way `make_train_and_eval` does in the driver."""

    model: str
    device: str
    dtype: str
    attn_implementation: str
    train_rows: list[dict]
    val_rows: list[dict]
    out_root: str  # absolute: workers do not share the driver's working directory
    max_length: int
    max_steps: int
    seed: int
    use_kernels: bool = False

    def train_and_eval(self, resident: ResidentModel, out_root: Path, reload_base: bool = False) -> Any:
        """The trial function on `resident`, the same in the driver and in a Ray worker."""
        return make_train_and_eval(
            resident,
            self.train_rows,
            self.val_rows,
            out_root,
            max_length=self.max_length,
            max_steps=self.max_steps,
            seed=self.seed,
            keep_adapters=True,
            reload_base=reload_base,
        )


def train_in_worker(job: TrialJob, hparams: dict[str, Any]) -> dict[str, Any]:
    """One trial in a Ray worker: the base is loaded on the worker's first task and reused by its
    next ones, so the trial equals the resident-base trial of the local executor."""
    place = (job.device, job.dtype, job.attn_implementation, job.use_kernels)
    resident = worker_cached(
        repr((job.model, *place)), lambda: ResidentModel(job.model, device_settings(*place))
    )
    return job.train_and_eval(resident, Path(job.out_root))(hparams)


def train_proposals(
    executor: Executor, train_and_eval: Any, job: TrialJob, episode: int, proposals: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Train an episode's proposals, one executor task each; metrics come back in slot order.

    The local executor runs `train_and_eval` on the resident base; Ray runs `train_in_worker`.
    One proposal keeps the trial id of a one-proposal run (`train_ep_<episode>`).
    """
    if len(proposals) == 1:
        ids = [f"train_ep_{episode}"]
    else:
        ids = [f"train_ep_{episode}_p{slot}" for slot in range(len(proposals))]
    fn = train_and_eval if executor.kind == "local" else functools.partial(train_in_worker, job)
    keys = [f"episode{episode}/proposal{slot}" for slot in range(len(proposals))]
    items = [{**hp, "trial_id": trial} for hp, trial in zip(proposals, ids, strict=True)]
    return executor.map(fn, items, stage="tune.train", keys=keys)


def run_episode(
    episode: int,
    history: list[EpisodeSummary],
    past: dict[int, dict[str, Any]],
    cfg: TuneConfig,
    team: AgentTeam,
    proposer: Any,
    train_and_eval: Any,
    resident: ResidentModel,
    train_rows: list[dict],
    val_rows: list[dict],
    train_many: Any,
) -> dict[str, Any]:
    """One episode of seed 000's loop; `{"kind": "stop", "decisions": {"judge": ...}}` when the judge
    stops the run (nothing trained). `past` maps finished
    episodes to their metrics (where their adapters are). `train_many(episode, proposals)`
    trains the episode's proposals and returns their metrics (`train_proposals`)."""
    decisions: dict[str, Any] = {}
    # 1. judge
    if history:
        judge = team.judge(history, episode)
        decisions["judge"] = judge.model_dump(by_alias=True)
        if not judge.continue_:
            console.print(f"[bold]judge stops before episode {episode}:[/] {judge.reason}")
            return {"kind": "stop", "decisions": decisions}
    feedback = decisions.get("judge", {}).get("feedback", "")
    # 2. reward-penalty, 3. SEAL summary
    reward = team.reward_penalty(history, episode)
    decisions["reward_penalty"] = reward.model_dump(mode="json")
    seal_summary = team.seal_summary(history)
    # 4. tuner, 5. merge: tuner, then override, then defaults, then clamp
    agent_hparams = None
    if cfg.agents.tuner in ("agents", "hybrid", "centaur"):
        if cfg.agents.tuner == "centaur":  # the agents see the sampler's state before they propose
            feedback = f"{feedback} Sampler state: {proposer.state_text()}.".strip()
        tuner = team.tuner(history, episode, feedback, reward, seal_summary)
        decisions["tuner"] = {"say": tuner.say, "hparams": tuner.hparams}
        # The reward-penalty override steps from the previous episode's hparams; under centaur those
        # are mostly the sampler's draw, so an override there is the tuner's incumbent-centred proposal.
        override = None if cfg.agents.tuner == "centaur" else reward.override
        agent_hparams = merge_hparams(tuner.hparams, override, cfg.search_space)
    k = cfg.agents.proposals_per_episode
    proposals = [proposer.propose(episode, agent_hparams, slot) for slot in range(k)]
    sources = [proposer.source(episode, slot) for slot in range(k)]
    decisions["proposed_by"] = _proposed_by(cfg.agents.tuner, sources[0])
    decisions["proposal_source"] = sources if k > 1 else sources[0]
    # 6. TRAIN
    trained = train_many(episode, proposals)
    for slot, (hp, result) in enumerate(zip(proposals, trained, strict=True)):
        proposer.observe(episode, hp, _finite(result["eval_loss"]), slot)
    best = _best_slot(trained)
    hparams, train = proposals[best], trained[best]
    if k > 1:
        decisions["proposals"] = [
            {"slot": slot, "hparams": hp, **{key: m.get(key) for key in ("eval_loss", "status", "train_s")}}
            for slot, (hp, m) in enumerate(zip(proposals, trained, strict=True))
        ]
        decisions["best_proposal"] = best
    decisions["rationale"] = explain_episode(decisions, hparams, history[-1].hparams if history else None)
    metrics: dict[str, Any] = {
        "eval_loss": train["eval_loss"],
        "perplexity": train["perplexity"],
        "status": train["status"],
        "train_s": train["train_s"],
        "fit_s": train["fit_s"],
        "adapter_dir": train.get("adapter_dir"),
    }
    row = {"kind": "train", "hparams": hparams, "metrics": metrics, "decisions": decisions}
    # 7. SEAL expert, 8. SEAL stage on the best TRAIN so far
    if cfg.seal.mode != "none":
        trained = [*history, _summary(episode, hparams, metrics, decisions)]
        expert = team.seal_expert(trained, episode, feedback, reward, team.seal_summary(trained))
        decisions["seal_expert"] = expert.model_dump()
        base = _best_train(trained)
        if base is not None:
            adapter = {**past, episode: metrics}[base.episode].get("adapter_dir")
            metrics.update(
                seal_stage(cfg, base, adapter, expert.seal_epochs, train_and_eval, resident, train_rows)
            )
            row["kind"] = "train+seal"
    # 9. QA on this episode's best model
    if cfg.agents.qa:
        metrics["qa_score"] = qa_stage(
            team, resident, val_rows, cfg.agents.qa_items, episode, _best_adapter(row)
        )
    return row


def seal_stage(
    cfg: TuneConfig,
    base: EpisodeSummary,
    base_adapter: str | None,
    seal_epochs: int,
    train_and_eval: Any,
    resident: ResidentModel,
    train_rows: list[dict],
) -> dict[str, Any]:
    """Refine the best TRAIN adapter for `seal_epochs` more epochs, on the same data (refine)
    or on rows the model writes itself from training examples (self_edit)."""
    hparams = {**base.hparams, "epochs": seal_epochs, "trial_id": f"seal_from_ep_{base.episode}"}
    rows = None
    info: dict[str, Any] = {
        "seal_mode": cfg.seal.mode,
        "seal_epochs": seal_epochs,
        "seal_base_episode": base.episode,
    }
    if cfg.seal.mode == "self_edit":
        rows = self_edit_rows(
            resident,
            base,
            base_adapter,
            train_rows,
            cfg.seal.examples,
            cfg.seal.max_new_tokens,
            cfg.agents.seed,
        )
        info["self_edit_rows"] = len(rows)
        if not rows:
            return {**info, "seal_eval_loss": None, "seal_delta": None}
    seal = train_and_eval(hparams, train_override=rows, init_adapter=base_adapter)
    info.update(
        seal_eval_loss=seal["eval_loss"],
        seal_perplexity=seal["perplexity"],
        seal_adapter_dir=seal.get("adapter_dir"),
    )
    if base.loss is not None and _finite(seal["eval_loss"]) is not None:
        info["seal_delta"] = seal["eval_loss"] - base.loss
    return info


_SELF_EDIT_PROMPT = (
    "Here is one training example.\n\nInstruction: {instruction}\nResponse: {response}\n\n"
    "Write ONE new example of the same kind, on a different subject, in exactly this form:\n"
    "Instruction: <the new instruction>\nResponse: <its correct response>"
)


def self_edit_rows(
    resident: ResidentModel,
    base: EpisodeSummary,
    base_adapter: str | None,
    train_rows: list[dict],
    n: int,
    max_new_tokens: int,
    seed: int,
) -> list[dict]:
    """SEAL-style synthetic data: the current best model rewrites training examples into new ones."""
    import random

    hp = base.hparams
    model = resident.fresh_adapter(int(hp["lora_r"]), int(hp["lora_alpha"]), float(hp["lora_dropout"]), seed)
    if base_adapter:
        load_adapter_weights(model, base_adapter)
    picks = random.Random(seed + base.episode).sample(train_rows, min(n, len(train_rows)))
    prompts = [
        [
            {
                "role": "user",
                "content": _SELF_EDIT_PROMPT.format(
                    instruction=r["prompt"][-1]["content"], response=r["completion"][-1]["content"]
                ),
            }
        ]
        for r in picks
    ]
    out = generate_batch(model, resident.tokenizer, prompts, max_new_tokens=max_new_tokens, do_sample=False)
    return [row for text in out if (row := parse_self_edit(text)) is not None]


def parse_self_edit(text: str) -> dict | None:
    """`Instruction: ... Response: ...` → an SFT row; None when either part is missing or empty."""
    match = re.search(r"Instruction:\s*(.+?)\s*Response:\s*(.+)", text, re.S)
    if not match or not match.group(1).strip() or not match.group(2).strip():
        return None
    return {
        "prompt": [{"role": "user", "content": match.group(1).strip()}],
        "completion": [{"role": "assistant", "content": match.group(2).strip()}],
    }


def qa_stage(
    team: AgentTeam, resident: ResidentModel, val_rows: list[dict], n: int, episode: int, adapter: str | None
) -> float | None:
    """QA generator writes items from validation rows, the model answers, QA evaluator scores."""
    plain = [
        {"prompt": r["prompt"][-1]["content"], "completion": r["completion"][-1]["content"]} for r in val_rows
    ]
    items = team.qa_generate(plain, n, episode).items
    if not items:
        return None
    model = resident.model
    if adapter:
        load_adapter_weights(model, adapter)
    answers = generate_batch(
        model, resident.tokenizer, [[{"role": "user", "content": i.prompt}] for i in items], max_new_tokens=64
    )
    return team.qa_evaluate(items, answers, episode).mean_score


def replay_history(
    store: Store, run_id: int, proposer: Any
) -> tuple[list[EpisodeSummary], dict[int, dict[str, Any]]]:
    """Finished episodes of a resumed run (summaries and raw metrics), told to the proposer again."""
    history, metrics = [], {}
    for rec in store.list_episodes(run_id):
        proposals = rec.decisions.get("proposals")
        if proposals:  # every proposal of the episode taught the proposer, not only the best
            for p in proposals:
                proposer.observe(rec.index, p["hparams"], _finite(p.get("eval_loss")), p["slot"])
        else:
            proposer.observe(rec.index, rec.hparams, _finite(rec.metrics.get("eval_loss")))
        history.append(_summary(rec.index, rec.hparams, rec.metrics, rec.decisions))
        metrics[rec.index] = rec.metrics
    if history:
        console.print(f"resuming after {len(history)} finished episode(s)")
    return history, metrics


def _summary(episode: int, hparams: dict, metrics: dict, decisions: dict) -> EpisodeSummary:
    return EpisodeSummary.model_validate(
        {"episode": episode, "hparams": hparams, "decisions": decisions, **metrics}
    )


def _agent_team(cfg: TuneConfig, log: AgentLog) -> AgentTeam:
    a = cfg.agents
    kwargs: dict[str, Any] = {"log": log}
    if a.backend == "openai":
        kwargs.update(base_url=a.base_url, model=a.agent_model, timeout=a.timeout_s)
    elif a.backend == "local":
        kwargs["model"] = a.agent_model or cfg.model.name
    backend = make_backend(a.backend, **{k: v for k, v in kwargs.items() if v is not None})
    return AgentTeam(
        backend,
        cfg.search_space,
        force_min_episodes=a.force_min_episodes,
        max_episodes=a.max_episodes,
        patience=a.patience,
        qa_weight=a.qa_weight,
        seed=a.seed,
    )


def study_name(run_name: str) -> str:
    """The Optuna study of a tune run in the store: `optuna.load_study(study_name=..., storage=url)`."""
    return f"posttrain-tune/{run_name}"


def _proposed_by(tuner: str, source: dict[str, Any]) -> str:
    # centaur trials are either the sampler's or the agents'; the rationale needs to know which.
    return source["by"] if tuner == "centaur" and source.get("by") != "default" else tuner


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _best_slot(trained: list[dict[str, Any]]) -> int:
    """The proposal with the lowest finite eval loss (the first on ties; slot 0 when none is finite)."""
    scored = [(loss, slot) for slot, m in enumerate(trained) if (loss := _finite(m["eval_loss"])) is not None]
    return min(scored)[1] if scored else 0


def _best_train(history: list[EpisodeSummary]) -> EpisodeSummary | None:
    scored = [h for h in history if h.loss is not None]
    return min(scored, key=lambda h: h.loss) if scored else None


def _best_adapter(row: dict[str, Any]) -> str | None:
    m = row["metrics"]
    seal = _finite(m.get("seal_eval_loss"))
    if seal is not None and m.get("seal_adapter_dir") and seal < (_finite(m.get("eval_loss")) or math.inf):
        return m["seal_adapter_dir"]
    return m.get("adapter_dir")


def _print_episode(episode: int, row: dict[str, Any]) -> None:
    m = row["metrics"]
    seal = ""
    if _finite(m.get("seal_eval_loss")) is not None:
        seal = f" · SEAL({m.get('seal_mode')}) {m['seal_eval_loss']:.4f}"
    qa = f" · QA {m['qa_score']:.2f}" if _finite(m.get("qa_score")) is not None else ""
    console.print(
        f"[bold]episode {episode}[/] TRAIN eval_loss {m['eval_loss']:.4f} (ppl {m['perplexity']:.2f})"
        f"{seal}{qa} · lr={row['hparams']['lr']:.2e} r={row['hparams']['lora_r']}"
    )


def _finish(
    run: Run,
    cfg: TuneConfig,
    history: list[EpisodeSummary],
    metrics: dict[int, dict[str, Any]],
    stop: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keep the adapter with the lowest finite eval loss (TRAIN or SEAL) as the run's adapter."""
    candidates = []
    for episode, m in metrics.items():
        for loss_key, dir_key in (("eval_loss", "adapter_dir"), ("seal_eval_loss", "seal_adapter_dir")):
            loss, where = _finite(m.get(loss_key)), m.get(dir_key)
            if loss is not None and where and Path(where).exists():
                candidates.append((loss, where, episode, loss_key))
    summary: dict[str, Any] = {
        "tuner": cfg.agents.tuner,
        "backend": cfg.agents.backend,
        "episodes": len(history),
    }
    if cfg.agents.tuner not in ("agents", "random"):
        summary["optuna_study"] = study_name(run.name)
    if stop is not None:  # the judge's stop decision, kept with the run (summary.json and the store)
        summary["judge_stop"] = {k: stop.get(k) for k in ("before_episode", "reason", "say")}
    if candidates:
        loss, where, episode, kind = min(candidates)
        shutil.copytree(where, run.path / "adapter", dirs_exist_ok=True)
        write_adapter_meta(
            run.path / "adapter", cfg.model.name, {"kind": "tune", "episode": episode, "stage": kind}
        )
        stage = "seal" if kind.startswith("seal") else "train"
        summary.update(best_eval_loss=loss, best_episode=episode, best_stage=stage)
    shutil.rmtree(run.path / "trials", ignore_errors=True)
    title = f"posttrain tune: {run.name}"
    return run.finish(summary, report=lambda path, s: write_tune_report(path, title, history, s))
