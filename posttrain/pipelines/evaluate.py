"""`posttrain eval`: held-out metrics of one model (a base, or a base plus an adapter) on an align task.

The same runners as `posttrain align`'s last stage (`tasks.align`), on data drawn from
`seed` (1000 by default, the seed `align` holds out too), so numbers are comparable with an align
run's table. Every figure comes with n and a bootstrap 95% CI; tool_use reports the
in-distribution split and the held-out-tools split separately.

With `data` (tool_use only), the model instead answers a user's own rows, each with its tools and
BFCL-shaped gold (`tasks.tool_use.user_eval`): one greedy turn per row, scored by AST accuracy and
its companion figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from posttrain.errors import PosttrainError
from posttrain.inference import RELEVANCE_ADAPTER, generator
from posttrain.models import DEFAULT_MODEL, load_for_inference
from posttrain.report import eval_tables
from posttrain.rundir import adapter_meta, adapter_tool_format, gate_scorer_adapter
from posttrain.tasks import meetings as mt
from posttrain.tasks.align import align_task
from posttrain.tasks.metrics import Figure, flat
from posttrain.tasks.tool_use.chat_format import chat_tool_format
from posttrain.tasks.tool_use.pool_align import gate_from, reranked_by, scoring_channel
from posttrain.tasks.tool_use.user_eval import (
    gated_tools,
    read_eval_items,
    turn_grammars,
    user_eval_conversations,
    user_eval_figures,
)
from posttrain.toolcall.relevance import GateScorer
from posttrain.toolcall.rerank import check_rerank_scorer

SPLITS = {
    "tool_use": ("unseen_families", "seen_families", "indist", "heldout"),
    "meetings": ("heldout",),
}
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
    data: Path | None = None,
    tools: Path | None = None,
    constrained: bool = False,
    relevance_gate: float | Literal["auto"] | None = None,
    rerank_arguments: bool = False,
    relevance_gate_scorer: GateScorer = "model",
    relevance_gate_keep: float = 0.9,
    relevance_adapter: Path | None = None,
    rerank_scorer: GateScorer = "model",
    rerank_policy_weight: float = 0.0,
) -> dict[str, Any]:
    """Figures per split in the bench format (`{metric, metric_ci, metric_n, ..., n}`) plus a
    markdown `table`; with `output`, also writes them and every per-example record as JSON.

    `n` is held-out episodes per split (tool_use; every turn of each is scored) or scenarios
    (meetings). The prompt variant (compact or full system prompt) defaults to the one the adapter
    was trained with (its posttrain.json), else compact. The meetings majority baseline is the
    majority class of `MAJORITY_SAMPLE` training-distribution scenarios drawn with `data_seed`.

    With `data`, `run_eval_data` runs instead (`tools`: a file of specs for rows without their own).
    `constrained` decodes each function-pool or `data` turn inside its tools' grammar (a Thought,
    then a schema-valid call of an offered tool or a final answer; the ReAct episodes stay free);
    `relevance_gate` narrows each such grammar to the tool the request is about, or to a final
    answer under that threshold (`toolcall.relevance`); "auto" calibrates it on posttrain's
    validation tool families (`calibrated_gate`, keeping `relevance_gate_keep` of their calls),
    never on the data scored; `relevance_gate_scorer` "base" scores with the adapter off,
    "trained" with an align run's trained scorer (`relevance_adapter`, by default the
    relevance_adapter/ beside `adapter`), calibrated on the training families held back from it
    and the validation families.
    `rerank_arguments` re-reads each such call's arguments (`toolcall.rerank`) through
    `rerank_scorer`'s channel: the model's own, the base's, or the trained gate scorer's; with
    `rerank_policy_weight` > 0, the model's own likelihood of the arguments at that weight too.
    """
    if relevance_gate is not None and not constrained:
        raise PosttrainError("--relevance-gate acts through the grammar: add --constrained")
    if task not in SPLITS:
        raise PosttrainError(f"--task must be one of {', '.join(SPLITS)}, got '{task}'")
    if data is not None:
        if task != "tool_use":
            raise PosttrainError(f"--data is for --task tool_use, got '{task}'")
        return run_eval_data(
            data,
            tools,
            model,
            adapter,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            output=output,
            constrained=constrained,
            relevance_gate=relevance_gate,
            rerank_arguments=rerank_arguments,
            relevance_gate_scorer=relevance_gate_scorer,
            relevance_gate_keep=relevance_gate_keep,
            relevance_adapter=relevance_adapter,
            rerank_scorer=rerank_scorer,
            rerank_policy_weight=rerank_policy_weight,
        )
    if tools is not None:
        raise PosttrainError("--tools needs --data (the built-in splits bring their own tools)")
    if split != "all" and split not in SPLITS[task]:
        raise PosttrainError(
            f"--split for {task} must be all or one of {', '.join(SPLITS[task])}, got '{split}'"
        )
    if n < 1:
        raise PosttrainError(f"--n must be at least 1, got {n}")
    beside = _scorer_beside(relevance_gate_scorer, adapter, relevance_adapter, relevance_gate)
    meta = adapter_meta(adapter)
    spec = model or meta.get("base_model") or DEFAULT_MODEL
    compact = compact_prompt if compact_prompt is not None else bool(meta.get("compact_prompt", True))

    if task == "tool_use":
        align = align_task(
            task,
            adapter_tool_format(adapter),
            spec,
            constrained=constrained,
            relevance_gate=relevance_gate,
            rerank=rerank_arguments,
            gate_scorer=relevance_gate_scorer,
            gate_keep=relevance_gate_keep,
            rerank_scorer=rerank_scorer,
            rerank_policy=rerank_policy_weight,
        )
    else:
        align = align_task(
            task, constrained=constrained, relevance_gate=relevance_gate, rerank=rerank_arguments
        )
    data = align.eval_sets(seed, n, compact)
    if split != "all":
        data = {split: data[split]}
    keep_base = _reads_base(relevance_gate_scorer, rerank_arguments, rerank_scorer)
    llm, tok = load_for_inference(spec, adapter, keep_base=keep_base, beside=beside)
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
        "decoding": _decoding(
            constrained,
            relevance_gate,
            rerank_arguments,
            relevance_gate_scorer,
            rerank_scorer,
            rerank_policy_weight,
        ),
        "splits": {s: flat(figs, n=len(data[s])) for s, figs in figures.items()},
        "references": flat(refs),
        "table": eval_tables(results, align.split_titles),
    }
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**out, "records": records}, indent=2, default=str))
    return out


def run_eval_data(
    data: Path,
    tools: Path | None,
    model: str | None,
    adapter: Path | None,
    *,
    max_new_tokens: int = 96,
    batch_size: int = 16,
    output: Path | None = None,
    constrained: bool = False,
    relevance_gate: float | Literal["auto"] | None = None,
    rerank_arguments: bool = False,
    relevance_gate_scorer: GateScorer = "model",
    relevance_gate_keep: float = 0.9,
    relevance_adapter: Path | None = None,
    rerank_scorer: GateScorer = "model",
    rerank_policy_weight: float = 0.0,
) -> dict[str, Any]:
    """One greedy turn per row of a user's tool-use file, scored: AST accuracy (the headline) and its
    companions, each with n and CI (`{metric, metric_ci, metric_n, ..., n}`) plus a markdown `table`;
    with `output`, also writes them and every row's record as JSON. `constrained` decodes each
    turn inside its row's tool grammar (`turn_grammars`), narrowed by `relevance_gate` as in `run_eval`;
    `rerank_arguments` as there.

    Every row is checked before the model loads, so a bad row costs nothing and writes nothing.
    """
    shared = None
    if tools is not None:
        from posttrain.toolcall import load_tools

        shared = load_tools(tools)
    items = read_eval_items(data, shared)
    as_chat = adapter_tool_format(adapter) == "chat_template"
    if relevance_gate is not None and not constrained:
        raise PosttrainError("--relevance-gate acts through the grammar: add --constrained")
    if rerank_arguments and as_chat:
        raise PosttrainError(
            "--rerank-arguments reads Thought→Action turns; this adapter writes its chat template's"
        )
    check_rerank_scorer(rerank_arguments, rerank_scorer, relevance_gate_scorer, relevance_gate)
    if rerank_policy_weight and not rerank_arguments:
        raise PosttrainError("--rerank-policy-weight weighs the argument rerank: add --rerank-arguments")
    grammars = turn_grammars(items, as_chat) if constrained else None  # a refusal costs no model load
    beside = _scorer_beside(relevance_gate_scorer, adapter, relevance_adapter, relevance_gate)
    meta = adapter_meta(adapter)
    spec = model or meta.get("base_model") or DEFAULT_MODEL
    keep_base = _reads_base(relevance_gate_scorer, rerank_arguments, rerank_scorer)
    llm, tok = load_for_inference(spec, adapter, keep_base=keep_base, beside=beside)
    fmt = chat_tool_format(tok, spec) if as_chat else None
    generate = generator(llm, tok, max_new_tokens, batch_size)
    scores, calibration = None, None
    if relevance_gate is not None:
        channel = scoring_channel(generate, relevance_gate_scorer)
        gate, calibration = gate_from(relevance_gate, channel, relevance_gate_scorer, relevance_gate_keep)
        offered, scores = gated_tools(items, channel, gate)
        grammars = turn_grammars(items, as_chat, offered)
    replies = generate(user_eval_conversations(items, fmt), grammars)
    notes = None
    if rerank_arguments:
        replies, notes = reranked_by(generate, replies, items, rerank_scorer, rerank_policy_weight)
    figures, records = user_eval_figures(replies, items, fmt, scores, notes)
    name = "adapter" if adapter else "base"
    results = {"splits": {"data": {name: {k: f.as_dict() for k, f in figures.items()}}}}
    out: dict[str, Any] = {
        "task": "tool_use",
        "model": spec,
        "adapter": str(adapter) if adapter else None,
        "data": str(data),
        "tools": str(tools) if tools else None,
        "decoding": _decoding(
            constrained,
            relevance_gate,
            rerank_arguments,
            relevance_gate_scorer,
            rerank_scorer,
            rerank_policy_weight,
        ),
        "relevance_calibration": calibration,
        "figures": flat(figures, n=len(items)),
        "table": eval_tables(results, {"data": f"{data} (AST accuracy is the headline)"}),
    }
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**out, "records": records}, indent=2, default=str))
    return out


def _reads_base(gate_scorer: str, rerank_arguments: bool, rerank_scorer: str) -> bool:
    """Whether the base model's channel is read (a base-scored gate, or a rerank that runs with
    the base scorer): only then does the model stay unmerged, which slows its generation."""
    return gate_scorer == "base" or (rerank_arguments and rerank_scorer == "base")


def _scorer_beside(
    scorer: str, adapter: Path | None, given: Path | None, gate: object
) -> dict[str, Path] | None:
    """The trained relevance scorer to load beside the model, by its adapter name, if any."""
    found = gate_scorer_adapter(scorer, adapter, given, gate)
    return {RELEVANCE_ADAPTER: found} if found is not None else None


def _decoding(
    constrained: bool,
    relevance_gate: float | str | None,
    rerank: bool = False,
    scorer: str = "model",
    rerank_scorer: str = "model",
    policy: float = 0.0,
) -> str:
    if relevance_gate is not None:
        mode = f"constrained, relevance gate {relevance_gate}" + (
            f" ({scorer}-scored)" if scorer != "model" else ""
        )
    else:
        mode = "constrained" if constrained else "free"
    if not rerank:
        return mode
    mode += ", arguments reranked" + (f" ({rerank_scorer}-scored)" if rerank_scorer != "model" else "")
    return mode + (f" + policy likelihood x{policy}" if policy else "")
