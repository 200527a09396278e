"""The last two stages of `posttrain align`: the DPO gate and the base/SFT/DPO evaluation.

The gate (issue 13: "training stops on a held-out gate") scores the SFT and the DPO adapter on
the task's validation sets — for tool_use, requests of tool families that neither training nor
the final figures ever see — and keeps DPO only when it scores higher on the task's gate metrics
(AST accuracy plus must-call). Otherwise adapter/ becomes a copy of the SFT adapter and the DPO
weights stay beside it in adapter_dpo_gated_out/, so a DPO that hurts never ships, and gate.json
says by how much it lost.

A tie keeps SFT, as early stopping keeps the earliest best checkpoint (transformers' Trainer moves
its best checkpoint only on a strict improvement): a DPO that changes nothing the gate can see has
shown no gain, and it may still have moved what the gate does not read. In the tool_use bench the
gate tied exactly in three runs in a row (40 requests); the DPO a tie shipped lost three held-out
calls to runaway argument values that SFT closed (format validity 0.995 -> 0.98).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posttrain.config import AlignConfig
from posttrain.inference import RELEVANCE_ADAPTER, generator, merged
from posttrain.models import ResidentModel
from posttrain.rundir import RELEVANCE_DIR, RunDir
from posttrain.tasks.base import AlignTask

MODELS = ("base", "sft", "dpo")
GATED_OUT = "adapter_dpo_gated_out"


def gate_dpo(resident: ResidentModel, task: AlignTask, cfg: AlignConfig, run: RunDir) -> dict[str, Any]:
    """SFT or DPO as the final adapter, by the sum of `task.gate_metrics` on `task.gate_sets`
    (evaluation seed + 1, `dpo.gate_items` each); the decision and both scores go to gate.json."""
    path = run.path / "gate.json"
    if path.exists():
        return json.loads(path.read_text())
    sets = task.gate_sets(cfg.evaluation.seed + 1, cfg.dpo.gate_items) if cfg.dpo.gate else {}
    if not sets:
        return {"applied": False}
    ev = cfg.evaluation
    scores: dict[str, dict[str, float]] = {}
    for name in ("sft", "dpo"):
        _say(f"gate: scoring {name} on the validation sets")
        with _model_for(resident, name, run) as model:
            generate = generator(model, resident.tokenizer, ev.max_new_tokens, ev.batch_size)
            found, _ = task.evaluate(generate, sets, ev.max_steps, cfg.data.compact_prompt)
        scores[name] = {
            f"{split}/{metric}": round(figs[metric].value or 0.0, 4)
            for split, figs in found.items()
            for metric in task.gate_metrics
            if metric in figs
        }
    totals = {name: round(sum(values.values()), 4) for name, values in scores.items()}
    kept = "dpo" if totals["dpo"] > totals["sft"] else "sft"
    if kept == "sft":
        _swap_in_sft(run)
    result = {
        "applied": True,
        "kept": kept,
        "dpo_minus_sft": round(totals["dpo"] - totals["sft"], 4),
        "totals": totals,
        "scores": scores,
        "items_per_set": cfg.dpo.gate_items,
    }
    run.write_json("gate.json", result)
    return result


def _swap_in_sft(run: RunDir) -> None:
    """adapter/ -> adapter_dpo_gated_out/, then a copy of sft_adapter/ -> adapter/; each step a
    rename, so a kill leaves either the old layout or the new one (rerunning finishes it)."""
    adapter, gated = run.path / "adapter", run.path / GATED_OUT
    staged = run.path / ".adapter.sft-copy"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(run.path / "sft_adapter", staged)
    if adapter.exists() and not gated.exists():
        adapter.rename(gated)
    shutil.rmtree(adapter, ignore_errors=True)
    staged.rename(adapter)


def evaluate_models(
    resident: ResidentModel,
    task: AlignTask,
    eval_sets: dict[str, Any],
    train_outcomes: list[int],
    cfg: AlignConfig,
    run: RunDir,
) -> dict[str, Any]:
    """Each of base/SFT/DPO on the held-out sets (on those `evaluation.model_splits` names, where it
    names the model); eval/<model>.json per model, eval.json for all.

    When the DPO gate kept SFT, adapter/ is a byte copy of sft_adapter/, and evaluating it again
    would repeat SFT's figures exactly at the cost of a whole evaluation (783 s of the 4180 s
    tool_use bench run on 2 CPU cores): DPO's eval file is SFT's, marked `same_as: sft`.
    """
    ev = cfg.evaluation
    refs = task.references(train_outcomes, eval_sets)
    results: dict[str, Any] = {"splits": {}, "references": {k: f.as_dict() for k, f in refs.items()}}
    for name in [m for m in MODELS if m in ev.models]:
        path = run.path / "eval" / f"{name}.json"
        sft_path = run.path / "eval" / "sft.json"
        if path.exists():
            figs = json.loads(path.read_text())["figures"]
        elif name == "dpo" and _gate_kept_sft(run) and sft_path.exists():
            _say("5/5 dpo: the DPO gate kept the SFT adapter, so its figures are SFT's")
            same = json.loads(sft_path.read_text())
            run.write_json("eval/dpo.json", {**same, "same_as": "sft"})
            figs = same["figures"]
        else:
            _say(f"5/5 evaluating {name}")
            chosen = ev.model_splits.get(name, list(eval_sets))
            sets = {split: rows for split, rows in eval_sets.items() if split in chosen}
            with _model_for(resident, name, run) as model:
                generate = generator(model, resident.tokenizer, ev.max_new_tokens, ev.batch_size)
                found, records = task.evaluate(generate, sets, ev.max_steps, cfg.data.compact_prompt)
            figs = {split: {k: f.as_dict() for k, f in fs.items()} for split, fs in found.items()}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"figures": figs, "records": records}, indent=2, default=str))
        for split, fs in figs.items():
            results["splits"].setdefault(split, {})[name] = fs
    run.write_json("eval.json", results)
    return results


def _gate_kept_sft(run: RunDir) -> bool:
    path = run.path / "gate.json"
    return path.exists() and json.loads(path.read_text()).get("kept") == "sft"


@contextlib.contextmanager
def _model_for(resident: ResidentModel, name: str, run: RunDir) -> Iterator[Any]:
    """The model under test, ready to generate: base (adapter disabled), SFT or DPO (merged); with
    the run's trained gate scorer loaded beside it (`inference.RELEVANCE_ADAPTER`) when it has one."""
    scorer = run.path / RELEVANCE_DIR
    if name == "base":
        if resident.model is None:
            yield resident.base
        else:
            with _beside(resident.model, scorer), resident.model.disable_adapter():
                yield resident.model
        return
    model = resident.load_adapter(run.path / ("sft_adapter" if name == "sft" else "adapter"), trainable=False)
    with _beside(model, scorer), merged(model):
        yield model


@contextlib.contextmanager
def _beside(model: Any, scorer: Path) -> Iterator[None]:
    """`scorer` (an adapter directory) loaded as a second adapter of `model` for the duration, when
    it exists; the active adapter stays the policy's."""
    if not (scorer / "adapter_config.json").exists():
        yield
        return
    model.load_adapter(str(scorer), adapter_name=RELEVANCE_ADAPTER, is_trainable=False)
    try:
        yield
    finally:
        model.delete_adapter(RELEVANCE_ADAPTER)


_T0 = time.perf_counter()


def _say(message: str) -> None:
    print(f"[align {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)
