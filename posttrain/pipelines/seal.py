"""`posttrain seal`: SEAL self-edits with a ReST-EM outer loop, from config to report.

The run reads top to bottom:
1. build the domain and load its data (before any model loads); split off held-out contexts;
2. claim the run directory and store row; write config.yaml and seeds.json;
3. load the resident base once, with an inner adapter (reset before every self-edit) and a
   generator adapter (what ReST-EM trains);
4. each outer iteration: E-step (sample k self-edits per context from the current
   generator, score each by the reward of its inner update -- one executor task per
   self-edit, or per `inner.batch_updates` updates trained together, so `executor: ray`
   spreads them over a cluster), keep the rewarded ones,
   M-step (SFT of the generator on them); every self-edit goes to the store;
5. held-out results table: the model without update, the domain's reference rows, base vs
   SEAL-trained self-edits, and the pooled (continued-pretraining) variant;
6. results.json, report.md, plots, the generator adapter; rename the run directory.

Every random choice derives from `cfg.seed` through `derive_seed` and is written down
(seeds.json, self_edits.jsonl), so a run can be repeated from its own directory.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.config import SEALConfig
from posttrain.executors import Executor, worker_cached
from posttrain.models import DeviceSettings, ResidentModel, device_settings
from posttrain.pipelines._run import open_run, resumed
from posttrain.pipelines.seal_eval import held_out_results
from posttrain.pipelines.seal_resume import recorded_keys, restore_iterations, save_iteration
from posttrain.report.seal import seal_summary, write_seal_report
from posttrain.rundir import RunDir
from posttrain.store import Store
from posttrain.tasks.seal import (
    BaseDomain,
    Performance,
    Score,
    build_domain,
    make_reward_model,
    split_items,
)
from posttrain.train.args import SFTArgs
from posttrain.train.multi_lora import InnerRun, score_together
from posttrain.train.restem import (
    GeneratorAdapter,
    InnerLoop,
    SelfEditSample,
    derive_seed,
    mean_score,
    restem_rows,
    reward_stats,
    select_kept,
)

log = logging.getLogger("posttrain.seal")


def run_seal(cfg: SEALConfig, domain: BaseDomain | None = None, resume: bool = False) -> dict[str, Any]:
    """Train a self-edit generator with ReST-EM and evaluate it on held-out contexts.

    `domain` overrides `cfg.domain` with an instance (a custom BaseDomain built in code); it
    keeps its own reward model, so `cfg.reward` is then unused. `resume` continues the killed
    run `cfg.run.name` after its last completed outer iteration, with that run's config.yaml.
    Returns the run summary (also in summary.json).
    """
    start = time.perf_counter()
    cfg = resumed(cfg, resume)
    domain = domain or build_domain(cfg.domain, cfg.data_config, _reward_model(cfg))
    seeds = _run_seeds(cfg.seed)
    items = domain.load_data(seeds["data"])
    train_items, held_out = split_items(items, domain.n_eval, seeds["split"])
    with open_run("seal", cfg, resume, executor=cfg.executor.model_dump()) as run:
        run.dir.write_json("seeds.json", seeds)
        store, run_id, m = run.store, run.run_id, cfg.model
        lora = cfg.inner.lora
        spec = InnerSpec(
            m.name,
            m.device,
            m.dtype,
            lora.r,
            lora.alpha,
            lora.dropout,
            _inner_hparams(cfg),
            seeds["inner_adapter"],
            tuple(lora.target_modules),
            m.attn_implementation,
            m.use_kernels,
        )
        inner = spec.build(run.resident)
        score_updates = inner_scorer(run.executor, domain, inner, spec, cfg.inner.batch_updates)
        g_lora = cfg.restem.lora
        generator = GeneratorAdapter(
            inner.model,
            run.resident.tokenizer,
            r=g_lora.r,
            alpha=g_lora.alpha,
            seed=seeds["generator_adapter"],
            targets=g_lora.target_modules,
        )
        history = restore_iterations(run.dir, generator) if resume else []
        recorded = recorded_keys(store, run_id) if resume else None
        baseline = _Baseline(domain, inner)
        log.info(
            "SEAL %s on %s: %d training / %d held-out contexts, %d iterations (%d done)",
            domain.name,
            m.name,
            len(train_items),
            len(held_out),
            cfg.max_outer_iterations,
            len(history),
        )
        for iteration in range(len(history), cfg.max_outer_iterations):
            t0 = time.perf_counter()
            contexts = _pick_contexts(train_items, cfg.restem.contexts_per_iteration, cfg.seed, iteration)
            samples = e_step(domain, generator, score_updates, baseline, contexts, iteration, cfg)
            kept = select_kept(samples, cfg.restem.keep, cfg.restem.min_gain, cfg.restem.max_per_context)
            mstep = m_step(generator, kept, run.path / "mstep" / f"iteration{iteration}", iteration, cfg)
            row = {"iteration": iteration, "n_contexts": len(contexts), **reward_stats(samples), **mstep}
            row["sample_seed"] = derive_seed(cfg.seed, "sample", iteration)
            row["contexts_seed"] = derive_seed(cfg.seed, "contexts", iteration)
            row["elapsed_s"] = round(time.perf_counter() - t0, 2)
            _record_iteration(store, run_id, run.dir, samples, row, cfg, recorded)
            history.append(row)
            save_iteration(run.dir, generator, history)
            log.info(
                "iteration %d: reward %.3f ± %.3f, success %.0f%%, kept %d, m-step %s (%.1fs)",
                iteration,
                row["reward_mean"],
                row["reward_std"],
                100 * row["success_rate"],
                row["n_kept"],
                row["m_step"],
                row["elapsed_s"],
            )
        shutil.rmtree(run.path / "mstep", ignore_errors=True)  # HF output dirs; nothing is saved there
        results = held_out_results(domain, generator, inner, held_out, cfg) if cfg.evaluation.enabled else {}
        if generator.trained_rounds:
            generator.save(run.path / "generator_adapter")
        run.dir.write_json("results.json", results)
        summary = seal_summary(cfg, domain, run.settings.describe(), history, results, train_items, held_out)
        summary["runtime_s"] = round(time.perf_counter() - start, 1)
        title = f"posttrain seal: {run.name}"
        return run.finish(
            summary, report=lambda path, s: write_seal_report(path, title, s, history, results, domain)
        )


# ---------------------------------------------------------------- setup helpers


def _reward_model(cfg: SEALConfig) -> Any:
    if cfg.reward.kind == "auto":
        return None  # the domain's default
    return make_reward_model(cfg.reward.kind, cfg.reward.margin, cfg.reward.success_at)


def _inner_hparams(cfg: SEALConfig) -> SFTArgs:
    i = cfg.inner
    return SFTArgs(
        learning_rate=i.learning_rate,
        batch_size=i.batch_size,
        epochs=i.epochs,
        warmup_ratio=i.warmup_ratio,
        scheduler=i.scheduler,
        max_grad_norm=i.max_grad_norm,
        weight_decay=i.weight_decay,
        max_length=i.max_length,
        packing=False,
        seed=cfg.seed,
    )


def _run_seeds(master: int) -> dict[str, Any]:
    return {
        "master": master,
        "derivation": "derive_seed(master, *parts): blake2b(repr((master, *parts))) mod 2**31-1",
        "data": derive_seed(master, "data"),
        "split": derive_seed(master, "split"),
        "inner_adapter": derive_seed(master, "inner_adapter"),
        "generator_adapter": derive_seed(master, "generator_adapter"),
    }


def _pick_contexts(items: Sequence[Any], n: int | None, seed: int, iteration: int) -> list[Any]:
    if n is None or n >= len(items):
        return list(items)
    chosen = sorted(random.Random(derive_seed(seed, "contexts", iteration)).sample(range(len(items)), n))
    return [items[i] for i in chosen]


@dataclass(frozen=True)
class InnerSpec:
    """The inner loop's model and update settings: enough for a worker to build the same one."""

    model: str
    device: str
    dtype: str
    r: int
    alpha: int
    dropout: float
    hp: SFTArgs
    adapter_seed: int
    targets: tuple[str, ...] | None = None
    attn: str = "auto"
    use_kernels: bool = False

    def build(self, resident: ResidentModel) -> InnerLoop:
        return InnerLoop(
            resident,
            r=self.r,
            alpha=self.alpha,
            dropout=self.dropout,
            hp=self.hp,
            adapter_seed=self.adapter_seed,
            targets=list(self.targets) if self.targets else None,
        )

    def settings(self) -> DeviceSettings:
        return device_settings(self.device, self.dtype, self.attn, self.use_kernels)


@dataclass(frozen=True)
class InnerJob:
    """One self-edit's inner update: train on `rows` once per seed, evaluate on `context` after each."""

    context: Any
    rows: list[dict]
    overrides: dict[str, Any]
    seeds: list[int]


def inner_scores(domain: BaseDomain, inner: InnerLoop, job: InnerJob) -> list[float]:
    """The adapted score of every inner run (NaN for a diverged one); the adapter ends reset."""

    def evaluate() -> float:
        return domain.evaluate(inner.model, inner.tokenizer, job.context).value

    return inner.score(job.rows, evaluate, job.seeds, **job.overrides)


def inner_scores_in_worker(spec: InnerSpec, domain: BaseDomain, job: InnerJob) -> list[float]:
    """`inner_scores` in a Ray worker, on an inner loop built once per worker from `spec`."""
    inner = worker_cached(repr(spec), lambda: spec.build(ResidentModel(spec.model, spec.settings())))
    return inner_scores(domain, inner, job)


def batched_scores(domain: BaseDomain, inner: InnerLoop, runs: list[tuple[InnerJob, int]]) -> list[float]:
    """The adapted score of every (job, seed) run, their updates trained together in one pass."""

    def evaluate(i: int) -> float:
        return domain.evaluate(inner.model, inner.tokenizer, runs[i][0].context).value

    return score_together(inner, [InnerRun(job.rows, seed, job.overrides) for job, seed in runs], evaluate)


def batched_scores_in_worker(
    spec: InnerSpec, domain: BaseDomain, runs: list[tuple[InnerJob, int]]
) -> list[float]:
    """`batched_scores` in a Ray worker, on an inner loop built once per worker from `spec`."""
    inner = worker_cached(repr(spec), lambda: spec.build(ResidentModel(spec.model, spec.settings())))
    return batched_scores(domain, inner, runs)


def inner_scorer(
    executor: Executor, domain: BaseDomain, inner: InnerLoop, spec: InnerSpec, batch_updates: int = 1
) -> Callable[[list[InnerJob], list[str]], list[list[float]]]:
    """`score(jobs, keys)`: every job's run scores, one executor task per job. Locally the jobs
    share the resident inner loop; on Ray each worker builds its own from `spec`. With
    `batch_updates` > 1 all jobs' runs are pooled and trained that many at a time, one task each."""
    if batch_updates > 1:
        return _batched_scorer(executor, domain, inner, spec, batch_updates)
    if executor.kind == "local":
        fn: Callable[[InnerJob], list[float]] = functools.partial(inner_scores, domain, inner)
    else:
        fn = functools.partial(inner_scores_in_worker, spec, domain)

    def score(jobs: list[InnerJob], keys: list[str]) -> list[list[float]]:
        return executor.map(fn, jobs, stage="seal.inner", keys=keys)

    return score


def _batched_scorer(
    executor: Executor, domain: BaseDomain, inner: InnerLoop, spec: InnerSpec, k: int
) -> Callable[[list[InnerJob], list[str]], list[list[float]]]:
    if executor.kind == "local":
        fn: Callable[[list[tuple[InnerJob, int]]], list[float]] = functools.partial(
            batched_scores, domain, inner
        )
    else:
        fn = functools.partial(batched_scores_in_worker, spec, domain)

    def score(jobs: list[InnerJob], keys: list[str]) -> list[list[float]]:
        runs = [(job, seed) for job in jobs for seed in job.seeds]
        run_keys = [
            f"{key}/run{r}" for job, key in zip(jobs, keys, strict=True) for r in range(len(job.seeds))
        ]
        starts = range(0, len(runs), k)
        chunk_keys = [f"{run_keys[i]}+{len(runs[i : i + k]) - 1}" for i in starts]
        parts = executor.map(fn, [runs[i : i + k] for i in starts], stage="seal.inner", keys=chunk_keys)
        flat = iter([s for part in parts for s in part])
        return [[next(flat) for _ in job.seeds] for job in jobs]

    return score


class _Baseline:
    """Score of the plain base on each context, computed once (the base never changes)."""

    def __init__(self, domain: BaseDomain, inner: InnerLoop) -> None:
        self.domain, self.inner = domain, inner
        self.cache: dict[str, Score] = {}

    def __call__(self, context: Any) -> Score:
        key = self.domain.context_id(context)
        if key not in self.cache:
            self.inner.reset()
            self.cache[key] = self.domain.evaluate(self.inner.model, self.inner.tokenizer, context)
        return self.cache[key]


# ---------------------------------------------------------------- E-step and M-step


def e_step(
    domain: BaseDomain,
    generator: GeneratorAdapter,
    score_updates: Callable[[list[InnerJob], list[str]], list[list[float]]],
    baseline: _Baseline,
    contexts: Sequence[Any],
    iteration: int,
    cfg: SEALConfig,
) -> list[SelfEditSample]:
    """Sample `samples_per_iteration` self-edits per context and score each by its inner update
    (`score_updates`, from `inner_scorer`: all of an iteration's updates in one map)."""
    prompts = [domain.create_self_edit_prompt(c) for c in contexts]
    g = cfg.generation
    texts, gen_seeds = generator.generate(
        prompts,
        k=cfg.samples_per_iteration,
        temperature=g.temperature,
        top_p=g.top_p,
        max_new_tokens=g.max_new_tokens,
        batch_size=g.batch_size,
        seed=derive_seed(cfg.seed, "sample", iteration),
    )
    samples: list[SelfEditSample] = []
    scored: list[tuple[SelfEditSample, InnerJob]] = []
    for context, prompt, edits, gen_seed in zip(contexts, prompts, texts, gen_seeds, strict=True):
        cid = domain.context_id(context)
        before = baseline(context).value
        for j, text in enumerate(edits):
            sample = SelfEditSample(iteration, cid, j, prompt, text, gen_seed, score_before=before)
            sample.completion = domain.canonical_self_edit(text)
            samples.append(sample)
            update = domain.self_edit_update(context, text)
            if update is None:
                sample.valid, sample.reward = False, 0.0
                continue
            sample.inner_seeds = [
                derive_seed(cfg.seed, "inner", iteration, cid, j, r) for r in range(cfg.inner.runs)
            ]
            scored.append((sample, InnerJob(context, update.rows, update.overrides, sample.inner_seeds)))
    keys = [f"iteration{iteration}/{s.context_id}/{s.sample_index}" for s, _ in scored]
    all_scores = score_updates([job for _, job in scored], keys)
    for (sample, job), run_scores in zip(scored, all_scores, strict=True):
        _reward_sample(domain, job.context, sample, run_scores)
    for s in samples:
        log.debug(
            "  %s #%d: before %.3f after %s reward %.3f",
            s.context_id,
            s.sample_index,
            s.score_before,
            s.score_after,
            s.reward,
        )
    return samples


def _reward_sample(domain: BaseDomain, context: Any, sample: SelfEditSample, run_scores: list[float]) -> None:
    sample.run_scores = run_scores
    sample.score_after = mean_score(run_scores)
    if sample.score_after is None:  # every inner run diverged
        sample.valid, sample.reward = False, 0.0
        return
    sample.reward = domain.compute_reward(Performance(sample.score_before, sample.score_after), context)


def m_step(
    generator: GeneratorAdapter,
    kept: Sequence[SelfEditSample],
    out_dir: Path,
    iteration: int,
    cfg: SEALConfig,
) -> dict[str, Any]:
    """SFT of the generator on the kept self-edits; skipped (generator unchanged) when none is kept."""
    if not kept:
        return {"m_step": "skipped", "mstep_rows": 0, "mstep_steps": 0}
    rs = cfg.restem
    seed = derive_seed(cfg.seed, "mstep", iteration)
    hp = SFTArgs(
        learning_rate=rs.learning_rate,
        batch_size=rs.batch_size,
        epochs=rs.epochs,
        warmup_ratio=0.0,
        max_length=rs.max_length,
        seed=seed,
        logging_steps=1,
    )
    result = generator.m_step(restem_rows(kept), out_dir, hp, restart=rs.restart_from_base)
    losses = [loss for _, loss in result.losses]
    return {
        "m_step": "trained" if result.status == "completed" else result.status,
        "mstep_seed": seed,
        "mstep_rows": len(kept),
        "mstep_steps": result.steps,
        "mstep_loss_first": losses[0] if losses else None,
        "mstep_loss_last": losses[-1] if losses else None,
    }


def _record_iteration(
    store: Store,
    run_id: int,
    run: RunDir,
    samples: Sequence[SelfEditSample],
    row: dict,
    cfg: SEALConfig,
    recorded: set[tuple] | None = None,
) -> None:
    """Self-edits and the episode to the store, rows to self_edits.jsonl and metrics.jsonl.

    `recorded` (on resume) holds the store keys a killed attempt already wrote for an iteration
    it did not checkpoint; those rows are not written twice.
    """
    recorded = recorded or set()
    for s in samples:
        if (s.iteration, s.context_id, s.sample_index) in recorded:
            continue
        store.add_self_edit(
            run_id,
            s.iteration,
            s.context_id,
            s.sample_index,
            s.text,
            reward=s.reward,
            score_before=s.score_before,
            score_after=s.score_after,
            kept=s.kept,
        )
    with (run.path / "self_edits.jsonl").open("a") as fh:
        for s in samples:
            fh.write(json.dumps(_finite(s.to_json())) + "\n")
    with run.metrics.open("a") as fh:
        fh.write(json.dumps(_finite(row)) + "\n")
    g = cfg.generation
    if ("episode", row["iteration"]) in recorded:
        return
    store.add_episode(
        run_id,
        row["iteration"],
        "seal",
        hparams={
            "samples_per_iteration": cfg.samples_per_iteration,
            "temperature": g.temperature,
            "top_p": g.top_p,
            "contexts": row["n_contexts"],
        },
        metrics={k: v for k, v in row.items() if k not in ("iteration", "m_step")},
        decisions={
            "kept": row["n_kept"],
            "m_step": row["m_step"],
            "keep": cfg.restem.keep,
            "restart_from_base": cfg.restem.restart_from_base,
        },
    )


def _finite(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
