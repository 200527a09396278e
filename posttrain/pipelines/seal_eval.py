"""SEAL's held-out results table: the model without update, reference rows, base vs SEAL-trained
self-edits and the pooled (continued-pretraining) variant, each with a bootstrap 95% CI."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from typing import Any

from posttrain.config import SEALConfig
from posttrain.tasks.metrics import bootstrap_ci
from posttrain.tasks.seal import BaseDomain, Score
from posttrain.train.restem import GeneratorAdapter, InnerLoop, derive_seed

log = logging.getLogger("posttrain.seal")


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
