"""`posttrain seal`: SEAL self-edits with a ReST-EM outer loop, from config to report.

The run reads top to bottom:
1. build the domain and load its data (before any model loads); split off held-out contexts;
2. claim the run directory and store row; write config.yaml and seeds.json;
3. load the resident base once, with an inner adapter (reset before every self-edit) and a
   generator adapter (what ReST-EM trains);
4. each outer iteration: E-step (sample k self-edits per context from the current
   generator, score each by the reward of its inner update -- one executor task per
   self-edit, so `executor: ray` spreads them over a cluster), keep the rewarded ones,
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
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.config import SEALConfig, dump_config
from posttrain.executors import AttemptLog, Executor, open_executor, worker_cached
from posttrain.models import ResidentModel, device_settings
from posttrain.pipelines.finetune import open_store
from posttrain.report import markdown_table
from posttrain.rundir import RunDir, default_run_name, tracked_run
from posttrain.store import Store
from posttrain.tasks.domains import BaseDomain, Performance, Score, build_domain, split_items
from posttrain.tasks.metrics import bootstrap_ci
from posttrain.train.restem import (
    GeneratorAdapter,
    InnerLoop,
    SelfEditSample,
    derive_seed,
    make_reward_model,
    mean_score,
    restem_rows,
    reward_stats,
    select_kept,
    trend,
)
from posttrain.train.sft import SFTHParams

log = logging.getLogger("posttrain.seal")

PRESET_ALIASES = {"test": "seal_test"}  # `test.yaml` is the SFT smoke preset


def seal_preset(name: str | None) -> str | None:
    """`--preset test` means the SEAL smoke preset `seal_test` here."""
    return PRESET_ALIASES.get(name, name) if name else name


def run_seal(cfg: SEALConfig, domain: BaseDomain | None = None) -> dict[str, Any]:
    """Train a self-edit generator with ReST-EM and evaluate it on held-out contexts.

    `domain` overrides `cfg.domain` with an instance (a custom BaseDomain built in code); it
    keeps its own reward model, so `cfg.reward` is then unused. Returns the run summary (also
    in summary.json).
    """
    start = time.perf_counter()
    domain = domain or build_domain(cfg.domain, cfg.data_config, _reward_model(cfg))
    seeds = _run_seeds(cfg.seed)
    items = domain.load_data(seeds["data"])
    train_items, held_out = split_items(items, domain.n_eval, seeds["split"])
    run = RunDir.start(cfg.run.output_root, cfg.run.name or default_run_name("seal"), resume=False)
    dump_config(cfg, run.path / "config.yaml")
    run.write_json("seeds.json", seeds)
    store = open_store(cfg.run.store, cfg.run.output_root)
    with (
        tracked_run(store, "seal", run, cfg.model_dump(mode="json"), resume=False) as run_id,
        open_executor(
            **cfg.executor.model_dump(), log=AttemptLog.for_store(store.connect_url, run_id)
        ) as executor,
    ):
        settings = device_settings(cfg.device, cfg.dtype)
        resident = ResidentModel(cfg.model_name, settings)
        spec = InnerSpec(
            cfg.model_name,
            cfg.device,
            cfg.dtype,
            cfg.lora_r,
            cfg.lora_alpha,
            cfg.lora_dropout,
            _inner_hparams(cfg),
            seeds["inner_adapter"],
        )
        inner = spec.build(resident)
        score_updates = inner_scorer(executor, domain, inner, spec)
        generator = GeneratorAdapter(
            inner.model,
            resident.tokenizer,
            r=cfg.restem.lora_r,
            alpha=cfg.restem.lora_alpha,
            seed=seeds["generator_adapter"],
        )
        baseline = _Baseline(domain, inner)
        log.info(
            "SEAL %s on %s: %d training / %d held-out contexts, %d iterations",
            domain.name,
            cfg.model_name,
            len(train_items),
            len(held_out),
            cfg.max_outer_iterations,
        )
        history = []
        for iteration in range(cfg.max_outer_iterations):
            t0 = time.perf_counter()
            contexts = _pick_contexts(train_items, cfg.restem.contexts_per_iteration, cfg.seed, iteration)
            samples = e_step(domain, generator, score_updates, baseline, contexts, iteration, cfg)
            kept = select_kept(samples, cfg.restem.keep, cfg.restem.min_gain, cfg.restem.max_per_context)
            mstep = m_step(generator, kept, run.path / "mstep" / f"iteration{iteration}", iteration, cfg)
            row = {"iteration": iteration, "n_contexts": len(contexts), **reward_stats(samples), **mstep}
            row["sample_seed"] = derive_seed(cfg.seed, "sample", iteration)
            row["contexts_seed"] = derive_seed(cfg.seed, "contexts", iteration)
            row["elapsed_s"] = round(time.perf_counter() - t0, 2)
            _record_iteration(store, run_id, run, samples, row, cfg)
            history.append(row)
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
        run.write_json("results.json", results)
        summary = _summary(cfg, domain, settings.describe(), history, results, train_items, held_out)
        summary["runtime_s"] = round(time.perf_counter() - start, 1)
        write_seal_report(run.path, f"posttrain seal: {run.name}", summary, history, results, domain)
        summary = {"run": run.name, "status": "completed", **summary}
        run.write_json("summary.json", summary)
        final = run.finish()
        summary["run_dir"] = str(final)
        store.update_run(run_id, status="completed", metrics=summary, run_dir=str(final))
        return summary


# ---------------------------------------------------------------- setup helpers


def _reward_model(cfg: SEALConfig) -> Any:
    if cfg.reward.kind == "auto":
        return None  # the domain's default
    return make_reward_model(cfg.reward.kind, cfg.reward.margin, cfg.reward.success_at)


def _inner_hparams(cfg: SEALConfig) -> SFTHParams:
    i = cfg.inner
    return SFTHParams(
        learning_rate=cfg.learning_rate,
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
    hp: SFTHParams
    adapter_seed: int

    def build(self, resident: ResidentModel) -> InnerLoop:
        return InnerLoop(
            resident,
            r=self.r,
            alpha=self.alpha,
            dropout=self.dropout,
            hp=self.hp,
            adapter_seed=self.adapter_seed,
        )


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
    inner = worker_cached(
        repr(spec), lambda: spec.build(ResidentModel(spec.model, device_settings(spec.device, spec.dtype)))
    )
    return inner_scores(domain, inner, job)


def inner_scorer(
    executor: Executor, domain: BaseDomain, inner: InnerLoop, spec: InnerSpec
) -> Callable[[list[InnerJob], list[str]], list[list[float]]]:
    """`score(jobs, keys)`: every job's run scores, one executor task per job. Locally the jobs
    share the resident inner loop; on Ray each worker builds its own from `spec`."""
    if executor.kind == "local":
        fn: Callable[[InnerJob], list[float]] = functools.partial(inner_scores, domain, inner)
    else:
        fn = functools.partial(inner_scores_in_worker, spec, domain)

    def score(jobs: list[InnerJob], keys: list[str]) -> list[list[float]]:
        return executor.map(fn, jobs, stage="seal.inner", keys=keys)

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
    hp = SFTHParams(
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
    store: Store, run_id: int, run: RunDir, samples: Sequence[SelfEditSample], row: dict, cfg: SEALConfig
) -> None:
    for s in samples:
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


# ---------------------------------------------------------------- held-out results


def held_out_results(
    domain: BaseDomain,
    generator: GeneratorAdapter,
    inner: InnerLoop,
    contexts: Sequence[Any],
    cfg: SEALConfig,
) -> dict[str, Any]:
    """The results table on held-out contexts: condition -> headline metrics with a 95% CI.

    Rows: the model without update (`domain.baseline_name`), the domain's reference rows,
    the base generator's self-edits, the SEAL-trained generator's, and with a pooled domain
    `cpt_*` rows (every context's rows in one update). Base and SEAL self-edits are sampled
    with the same seeds and applied with the same inner seeds, so the comparison is paired.
    """
    if not contexts:
        return {}
    ev, g = cfg.evaluation, cfg.generation
    prompts = [domain.create_self_edit_prompt(c) for c in contexts]
    sample_seed = derive_seed(cfg.seed, "heldout", "sample")
    edits: dict[str, list[list[str]]] = {}
    for label, use_base in (("base_self_edits", True), ("seal_self_edits", False)):
        edits[label], _ = generator.generate(
            prompts,
            k=ev.samples,
            temperature=g.temperature,
            top_p=g.top_p,
            max_new_tokens=g.max_new_tokens,
            batch_size=g.batch_size,
            seed=sample_seed,
            use_base=use_base,
        )
    scores: dict[str, list[Score]] = {domain.baseline_name: []}
    pooled_rows: dict[str, list[dict]] = {}
    for i, context in enumerate(contexts):
        cid = domain.context_id(context)
        inner.reset()
        scores[domain.baseline_name].append(domain.evaluate(inner.model, inner.tokenizer, context))
        if ev.reference_rows:
            for name, updates in domain.reference_updates(context).items():
                seed = derive_seed(cfg.seed, "heldout", cid, name)
                best = max(
                    (_adapted_score(domain, inner, context, u.rows, u.overrides, seed) for u in updates),
                    key=lambda s: s.value,
                )
                scores.setdefault(name, []).append(best)
                pooled_rows.setdefault(name, []).extend(updates[0].rows)
        for label in ("base_self_edits", "seal_self_edits"):
            per_sample = []
            for j, text in enumerate(edits[label][i]):
                update = domain.self_edit_update(context, text)
                seed = derive_seed(cfg.seed, "heldout", cid, j)
                if update is None:  # an unusable self-edit changes nothing
                    inner.reset()
                    per_sample.append(domain.evaluate(inner.model, inner.tokenizer, context))
                    continue
                per_sample.append(_adapted_score(domain, inner, context, update.rows, update.overrides, seed))
                if j == 0:
                    pooled_rows.setdefault(label, []).extend(update.rows)
            scores.setdefault(label, []).append(_mean_scores(per_sample))
        log.info("held-out %d/%d done (%s)", i + 1, len(contexts), cid)
    if domain.pooled_update and ev.continued_pretraining:
        for label, rows in pooled_rows.items():
            inner.adapt(rows, derive_seed(cfg.seed, "heldout", "pooled", label))
            scores[f"cpt_{label}"] = [domain.evaluate(inner.model, inner.tokenizer, c) for c in contexts]
    inner.reset()
    return _table(domain, scores, edits)


def _adapted_score(
    domain: BaseDomain, inner: InnerLoop, context: Any, rows: list[dict], overrides: dict, seed: int
) -> Score:
    result = inner.adapt(rows, seed, **overrides)
    if result.status != "completed":
        inner.reset()  # a diverged update is no update
    return domain.evaluate(inner.model, inner.tokenizer, context)


def _mean_scores(scores: Sequence[Score]) -> Score:
    if len(scores) == 1:
        return scores[0]
    items = {
        k: [statistics.fmean(v) for v in zip(*(s.items[k] for s in scores), strict=True)]
        for k in scores[0].items
    }
    return Score(statistics.fmean(s.value for s in scores), items)


def _table(domain: BaseDomain, scores: dict[str, list[Score]], edits: dict[str, list[list[str]]]) -> dict:
    upper = [name for name in scores if name in domain.upper_bounds]
    order = [name for name in scores if name not in upper and not name.startswith("cpt_")]
    order += [name for name in scores if name.startswith("cpt_")] + upper
    headline = domain.metrics[0]
    results: dict[str, Any] = {}
    for name in order:
        values = {m: [v for s in scores[name] for v in s.items.get(m, [])] for m in domain.metrics}
        row: dict[str, Any] = {m: statistics.fmean(v) if v else 0.0 for m, v in values.items()}
        row["ci"] = list(bootstrap_ci(values[headline])) if values[headline] else [0.0, 0.0]
        if name in upper:
            row["upper_bound"] = True
        results[name] = row
    first = scores[domain.baseline_name]
    results[domain.count_names[0]] = len(first)
    results[domain.count_names[1]] = sum(len(s.items.get(headline, [])) for s in first)
    results["order"] = order
    results["examples"] = {label: [e[0] for e in texts[:3]] for label, texts in edits.items()}
    return results


# ---------------------------------------------------------------- summary and report


def _summary(
    cfg: SEALConfig,
    domain: BaseDomain,
    device: str,
    history: list[dict],
    results: dict,
    train_items: Sequence[Any],
    held_out: Sequence[Any],
) -> dict[str, Any]:
    rewards = [row["reward_mean"] for row in history]
    out: dict[str, Any] = {
        "model": cfg.model_name,
        "device": device,
        "domain": domain.name,
        "seed": cfg.seed,
        "iterations": len(history),
        "train_contexts": len(train_items),
        "heldout_contexts": len(held_out),
        "self_edits": sum(row["n_samples"] for row in history),
        "kept": sum(row["n_kept"] for row in history),
        "reward_mean_first": rewards[0] if rewards else None,
        "reward_mean_last": rewards[-1] if rewards else None,
        "reward_trend_per_iteration": trend(rewards),
        "success_rate_last": history[-1]["success_rate"] if history else None,
    }
    headline = domain.metrics[0]
    for name in results.get("order", []):
        out[f"{name}_{headline}"] = results[name][headline]
    return out


def write_seal_report(
    run_dir: Path,
    title: str,
    summary: dict[str, Any],
    history: Sequence[dict],
    results: dict[str, Any],
    domain: BaseDomain,
) -> Path:
    """report.md with the summary, per-iteration metrics, reward distribution and results table."""
    parts = [f"# {title}\n", "## Summary\n", markdown_table(["key", "value"], list(summary.items()))]
    if history:
        columns = [
            "iteration",
            "n_samples",
            "n_valid",
            "reward_mean",
            "reward_std",
            "success_rate",
            "score_before_mean",
            "score_after_mean",
            "improvement_mean",
            "n_kept",
            "m_step",
            "mstep_loss_last",
            "elapsed_s",
        ]
        parts += [
            "## Outer iterations\n",
            markdown_table(columns, [[r.get(c) for c in columns] for r in history]),
        ]
        slope = trend([r["reward_mean"] for r in history])
        success = trend([r["success_rate"] for r in history])
        parts.append(f"Trend per iteration: reward mean {_fmt(slope)}, success rate {_fmt(success)}.\n")
        parts += [
            "## Reward distribution\n",
            markdown_table(
                ["iteration", "rewards (value: count)"], [[r["iteration"], r["reward_hist"]] for r in history]
            ),
        ]
    if results.get("order"):
        parts += ["## Held-out results\n", results_markdown(results, domain.metrics)]
    plots = _plot_iterations(history, run_dir / "plots") if history else []
    if plots:
        parts.append("## Plots\n")
        parts += [f"![{p.stem}](plots/{p.name})\n" for p in plots]
    path = run_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def results_markdown(results: dict[str, Any], metrics: Sequence[str]) -> str:
    """The held-out table as markdown: one row per condition, metrics, 95% CI of the first metric."""
    rows = []
    for name in results["order"]:
        row = results[name]
        label = f"{name} (upper bound: searched on the test answer)" if row.get("upper_bound") else name
        lo, hi = row["ci"]
        rows.append([label, *(round(row[m], 4) for m in metrics), f"[{lo:.3f}, {hi:.3f}]"])
    return markdown_table(["condition", *metrics, f"95% CI ({metrics[0]})"], rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _plot_iterations(history: Sequence[dict], out: Path) -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    its = [r["iteration"] for r in history]
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    means = [r["reward_mean"] for r in history]
    stds = [r["reward_std"] for r in history]
    ax.errorbar(its, means, yerr=stds, marker="o", capsize=3, label="reward mean ± std")
    ax.plot(its, [r["success_rate"] for r in history], marker="s", label="success rate")
    ax.set_xlabel("outer iteration")
    ax.set_title("SEAL reward per iteration")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    trend_path = out / "reward_trend.png"
    fig.savefig(trend_path)

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    before = [r["score_before_mean"] for r in history]
    after = [r["score_after_mean"] if r["score_after_mean"] is not None else math.nan for r in history]
    ax.plot(its, before, marker="o", label="score before update")
    ax.plot(its, after, marker="o", label="score after update (mean over self-edits)")
    ax.set_xlabel("outer iteration")
    ax.set_title("Improvement from self-edits")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    gain_path = out / "before_after.png"
    fig.savefig(gain_path)
    return [trend_path, gain_path]
