"""`posttrain eval`: held-out metrics of one model (a base, or a base plus an adapter) on an align task.

The same runners as `posttrain align`'s last stage (`tasks.align`), on data drawn from
`seed` (1000 by default, the seed `align` holds out too), so numbers are comparable with an align
run's table. Every figure comes with n and a bootstrap 95% CI; tool_use reports the
in-distribution split and the held-out-tools split separately.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posttrain.errors import PosttrainError
from posttrain.inference import generator
from posttrain.models import DEFAULT_MODEL, load_for_inference
from posttrain.report import eval_tables
from posttrain.rundir import adapter_meta
from posttrain.tasks import meetings as mt
from posttrain.tasks.align import align_task
from posttrain.tasks.metrics import Figure, flat

SPLITS = {"tool_use": ("indist", "heldout"), "meetings": ("heldout",)}
MAJORITY_SAMPLE = 1000  # training-distribution scenarios whose majority class is the baseline


def run_eval(
    task: str,
    model: str | None,
    adapter: Path | None,
    split: str = "all",
    n: int = 24,
    *,
    max_new_tokens: int = 96,
    max_steps: int = 6,
    batch_size: int = 16,
    seed: int = 1000,
    data_seed: int = 42,
    compact_prompt: bool | None = None,
    output: Path | None = None,
) -> dict[str, Any]:
    """Figures per split in the bench format (`{metric, metric_ci, metric_n, ..., n}`) plus a
    markdown `table`; with `output`, also writes them and every per-example record as JSON.

    `n` is held-out episodes per split (tool_use; every turn of each is scored) or scenarios
    (meetings). The prompt variant (compact or full system prompt) defaults to the one the adapter
    was trained with (its posttrain.json), else compact. The meetings majority baseline is the
    majority class of `MAJORITY_SAMPLE` training-distribution scenarios drawn with `data_seed`.
    """
    if task not in SPLITS:
        raise PosttrainError(f"--task must be one of {', '.join(SPLITS)}, got '{task}'")
    if split != "all" and split not in SPLITS[task]:
        raise PosttrainError(
            f"--split for {task} must be all or one of {', '.join(SPLITS[task])}, got '{split}'"
        )
    if n < 1:
        raise PosttrainError(f"--n must be at least 1, got {n}")
    meta = adapter_meta(adapter)
    spec = model or meta.get("base_model") or DEFAULT_MODEL
    compact = compact_prompt if compact_prompt is not None else bool(meta.get("compact_prompt", True))

    align = align_task(task)
    data = align.eval_sets(seed, n, compact)
    if split != "all":
        data = {split: data[split]}
    llm, tok = load_for_inference(spec, adapter)
    generate = generator(llm, tok, max_new_tokens, batch_size)
    figures, records = align.evaluate(generate, data, max_steps, compact)

    name = "adapter" if adapter else "base"
    results: dict[str, Any] = {
        "splits": {s: {name: {k: f.as_dict() for k, f in figs.items()}} for s, figs in figures.items()},
        "references": {},
    }
    refs: dict[str, Figure] = {}
    if task == "meetings":
        train = [s.outcome for s in mt.generate_scenarios(MAJORITY_SAMPLE, data_seed)]
        refs = align.references(train, data)
        results["references"] = {k: f.as_dict() for k, f in refs.items()}
    out: dict[str, Any] = {
        "task": task,
        "model": spec,
        "adapter": str(adapter) if adapter else None,
        "seed": seed,
        "compact_prompt": compact,
        "splits": {s: flat(figs, n=len(data[s])) for s, figs in figures.items()},
        "references": flat(refs),
        "table": eval_tables(results, align.split_titles),
    }
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**out, "records": records}, indent=2, default=str))
    return out
