"""Align quality: `posttrain align` on both tasks, base vs SFT vs DPO on held-out data.

Runs the real pipeline (`run_align`) once per task with the task's preset plus a budget, then
gathers the held-out tables into the issue's schema:

    {"tool_use": {"heldout_families": {"base": {...}, "sft": {...}, "dpo": {...}},  # never trained on
                  "seen_families": {...}},                                         # new requests
     "react": {"indist": {...}, "unseen_tools": {...}},   # ReAct episodes on the executable tools
     "meetings": {"sft_accuracy", "trajectory_accuracy", "dpo_accuracy",
                  "majority_baseline", "oracle_accuracy", "n", ...}}

A "tool_use" `{...}` holds ast_accuracy (the headline), function_name_accuracy,
hallucinated_function_rate, must_call_rate, irrelevance_accuracy, format_validity and
thought_prefix_rate over function-pool requests; a "react" one holds full_compliance,
json_validity, thought_prefix_rate, hallucinated_tool_rate, irrelevance_accuracy,
tool_choice_accuracy, argument_accuracy and task_accuracy over first turns of whole episodes.
n counts scored rows; every figure has `<name>_ci` (bootstrap 95%) and `<name>_n`. In
"meetings", `sft_accuracy` is the SFT predictor reading the scenario text,
`trajectory_accuracy` the SFT agent's phase-2 trajectories (greedy and sampled), `dpo_accuracy`
the DPO agent with tools; the other model/mode pairs are there too (`sft_agent_accuracy`,
`dpo_direct_accuracy`, `base_*`).
Held-out data always comes from `evaluation.seed` (1000), which training never uses; nothing is
tuned on it.

    python bench/align_quality.py                               # smollm2-135m, budget small (CPU)
    python bench/align_quality.py --budget full                 # the presets as they are
    python bench/align_quality.py --model tiny-random --budget smoke --out /tmp/aq.json   # seconds

Budget small took 140 minutes of stages for tool_use on a slow day of a 2-core CPU with
smollm2-135m (its evaluation more than doubled with the policy's likelihood in the rerank), and 37
for meetings (the last runs, bench/results/align_quality.json; see BUDGETS). A run killed part
way goes on with `--resume RUN --tasks TASK`: every stage it finished is kept.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "align_quality.json"
TASKS = ("tool_use", "meetings")

# `--set` overrides on top of posttrain/presets/align_<task>.yaml. "full" is the presets alone.
BUDGETS: dict[str, dict[str, list[str]]] = {
    "full": {"tool_use": [], "meetings": []},
    "small": {
        "tool_use": [
            "rollouts.prompts=16",
            "rollouts.k=3",
            "pairs.synthetic=96",
            "pairs.on_policy=24",
            "dpo.train.max_steps=30",
            "evaluation.episodes=6",
            # only SFT's seen-family figures are a target (in-distribution AST): base and DPO are
            # scored on the held-out families and the ReAct splits, ~400 s each saved
            "evaluation.model_splits={base: [unseen_families, indist, heldout], "
            "dpo: [unseen_families, indist, heldout]}",
        ],
        "meetings": [
            "data.train_rows=240",
            "data.agent_demos=96",
            "pairs.synthetic=24",
            "pairs.on_policy=8",
            "dpo.train.max_steps=12",
            "evaluation.scenarios=64",
        ],
    },
    # A pipeline check on tiny-random: every stage runs, the numbers mean nothing.
    "smoke": {task: [] for task in TASKS},
}
SMOKE_PRESET = "align_test"


def run_task(
    task: str, model: str, budget: str, output_root: Path, extra: list[str], resume: str | None = None
) -> dict[str, Any]:
    """One `run_align` for `task`; returns its summary. `resume` names a killed run under
    `output_root` to go on with (its saved config.yaml wins, as with `posttrain align --resume`)."""
    from posttrain.config import AlignConfig, load_config
    from posttrain.pipelines.align import run_align

    preset = SMOKE_PRESET if budget == "smoke" else f"align_{task}"
    name = resume or f"bench-{task}-{budget}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = load_config(
        AlignConfig,
        preset=preset,
        overrides=BUDGETS[budget][task] + extra,
        extra={
            "task": task,
            "model": {"name": model},
            "run": {"name": name, "output_root": str(output_root)},
        },
    )
    summary = run_align(cfg, resume=resume is not None)
    if summary["status"] != "completed":
        raise SystemExit(f"{task}: align {summary['status']}: {summary.get('error')}")
    return summary


def _flat(figs: dict[str, dict[str, Any]], n: int) -> dict[str, Any]:
    """{metric: value, metric_ci, metric_n, ..., n} from the run's figure dicts."""
    out: dict[str, Any] = {}
    for name, fig in figs.items():
        out[name] = None if fig["value"] is None else round(fig["value"], 4)
        out[f"{name}_ci"] = fig["ci"]
        out[f"{name}_n"] = fig["n"]
    out["n"] = n
    return out


def tool_use_block(summary: dict[str, Any], split: str) -> dict[str, Any]:
    by_model = summary["eval"][split]
    return {m: _flat(figs, max(f["n"] for f in figs.values())) for m, figs in by_model.items()}


def gate_calibrations(run_dir: str | Path) -> dict[str, Any]:
    """Each evaluated model's relevance-gate calibration (`evaluation.relevance_gate: auto`), as its
    eval/<model>.json records it: threshold and the shares it passes and declines there."""
    out = {}
    for path in sorted((Path(run_dir) / "eval").glob("*.json")):
        found = json.loads(path.read_text()).get("records", {}).get("relevance_calibration")
        if found:
            out[path.stem] = found[0]
    return out


def gate_ranking(run_dir: str | Path) -> dict[str, Any]:
    """How well the relevance gate's scores rank, per evaluated model and pool split: the AUC of
    each request's best score, requests some tool fits against those none does (1.0: one
    threshold separates them all; what a threshold can reach is bounded by it), from the scores
    eval/<model>.json records. Empty when the run had no gate."""
    out: dict[str, Any] = {}
    for path in sorted((Path(run_dir) / "eval").glob("*.json")):
        records = json.loads(path.read_text()).get("records", {})
        for split in ("unseen_families", "seen_families"):
            rows = [r for r in records.get(split, []) if r.get("relevance") is not None]
            call = [max(r["relevance"], default=-1e9) for r in rows if r["irrelevance_accuracy"] is None]
            none = [max(r["relevance"], default=-1e9) for r in rows if r["irrelevance_accuracy"] is not None]
            if call and none:
                wins = sum((a > b) + 0.5 * (a == b) for a in call for b in none)
                out.setdefault(path.stem, {})[split] = {
                    "auc": round(wins / (len(call) * len(none)), 4),
                    "call_rows": len(call),
                    "no_call_rows": len(none),
                }
    return out


def rerank_effects(run_dir: str | Path) -> dict[str, Any]:
    """What argument reranking (`evaluation.rerank_arguments`) did, per pool split and evaluated
    model: AST accuracy of the replies as generated and as reranked on the same rows (the
    records keep each changed row's reply before), and how many replies it changed; and whose
    channel reranked (`scorer`). Empty when the run did not rerank."""
    import yaml

    from posttrain.tasks.tool_use.pool_align import pool_eval_sets
    from posttrain.tasks.tool_use.pool_pairs import pool_item
    from posttrain.tasks.tool_use.scoring import NO_CALL
    from posttrain.tasks.tool_use.user_eval import score_reply

    run_dir = Path(run_dir)
    evaluation = yaml.safe_load((run_dir / "config.yaml").read_text())["evaluation"]
    if not evaluation.get("rerank_arguments"):
        return {}
    sets = pool_eval_sets(evaluation["seed"], evaluation["items"])
    out: dict[str, Any] = {"scorer": evaluation.get("rerank_scorer", "model")}
    for path in sorted((run_dir / "eval").glob("*.json")):
        records = json.loads(path.read_text()).get("records", {})
        for split, rows in sets.items():
            if split not in records:
                continue
            got = records[split]
            if [rec["id"] for rec in got] != [r["id"] for r in rows]:
                raise SystemExit(f"{path}: {split} records are not the rows of seed {evaluation['seed']}")
            pairs = [(pool_item(r, i), rec) for i, (r, rec) in enumerate(zip(rows, got, strict=True))]
            calls = [(item, rec) for item, rec in pairs if item.gold != NO_CALL]
            before = sum(
                bool(score_reply(rec.get("reply_before_rerank", rec["reply"]), item)["ast_accuracy"])
                for item, rec in calls
            )
            after = sum(bool(rec["ast_accuracy"]) for _, rec in calls)
            out.setdefault(split, {})[path.stem] = {
                "ast_accuracy_as_generated": round(before / len(calls), 4),
                "ast_accuracy_reranked": round(after / len(calls), 4),
                "call_rows": len(calls),
                "replies_changed": sum("reply_before_rerank" in rec for _, rec in pairs),
            }
    return out


def dpo_gate(summary: dict[str, Any]) -> dict[str, Any]:
    """DPO minus SFT on the unseen families, per figure, and whether DPO is worse than SFT beyond
    SFT's CI anywhere (the issue's bar: no figure worse beyond its CI)."""
    by_model = summary["eval"]["unseen_families"]
    sft, dpo = by_model.get("sft"), by_model.get("dpo")
    if not sft or not dpo:
        return {}
    lower_is_better = {"hallucinated_function_rate"}
    out: dict[str, Any] = {}
    worse = []
    for name, f in sft.items():
        if f["value"] is None or dpo[name]["value"] is None:
            continue
        out[f"{name}_change"] = round(dpo[name]["value"] - f["value"], 4)
        lo, hi = f["ci"]
        if (dpo[name]["value"] > hi) if name in lower_is_better else (dpo[name]["value"] < lo):
            worse.append(name)
    out["worse_beyond_ci"] = worse
    return out


def meetings_block(summary: dict[str, Any]) -> dict[str, Any]:
    by_model = summary["eval"]["heldout"]
    refs = summary["references"]
    traj = summary["trajectories"]["accuracy"]

    def fig(name: str, f: dict[str, Any] | None) -> dict[str, Any]:
        if f is None:
            return {}
        return {
            name: None if f["value"] is None else round(f["value"], 4),
            f"{name}_ci": f["ci"],
            f"{name}_n": f["n"],
        }

    out: dict[str, Any] = {}
    out |= fig("sft_accuracy", by_model.get("sft", {}).get("direct_accuracy"))
    out |= fig("trajectory_accuracy", traj)
    out |= fig("dpo_accuracy", by_model.get("dpo", {}).get("agent_accuracy"))
    out |= fig("majority_baseline", refs["majority_baseline"])
    out |= fig("majority_baseline_brier", refs["majority_baseline_brier"])
    out |= fig("oracle_accuracy", refs["oracle_accuracy"])
    out["n"] = refs["oracle_accuracy"]["n"]
    for model, figs in by_model.items():
        for metric, f in figs.items():
            key = f"{model}_{metric}"
            if key not in ("sft_direct_accuracy", "dpo_agent_accuracy"):
                out |= fig(key, f)
    out |= fig("trajectory_greedy_accuracy", summary["trajectories"]["greedy_accuracy"])
    return out


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="smollm2-135m", help="smollm2-135m (default), tiny-random, hub id or dir"
    )
    p.add_argument("--budget", choices=list(BUDGETS), default="small")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="default: both")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value for both")
    p.add_argument("--output-dir", type=Path, default=Path("runs") / "bench", help="parent of the runs")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="go on with the killed run RUN under --output-dir (one task); runtime_s then counts "
        "this part only, the run's stages.json has each stage's",
    )
    return p


TASK_BLOCKS = {"tool_use": ("tool_use", "react", "dpo_vs_sft"), "meetings": ("meetings",)}


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the tasks asked for; the blocks of a task not run this time, and those other benches
    write here (bench/align_variants.py, tool_sft_variants.py, meetings_direct_variants.py,
    tool_decoding.py, tool_relevance.py), stay as the file had them, each task with its own meta entry."""
    command = "python bench/align_quality.py " + shlex.join(sys.argv[1:])
    if args.resume and len(args.tasks) != 1:
        raise SystemExit("--resume goes on with one run: name its task with --tasks")
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    # Only the blocks of the tasks run now are replaced: other tasks' blocks and the records of
    # other benches (variants, decoding, relevance, ...) stay as the file had them.
    replaced = {k for t in args.tasks for k in TASK_BLOCKS[t]} | {"meta"}
    result: dict[str, Any] = {k: v for k, v in old.items() if k not in replaced}
    meta: dict[str, Any] = {
        "model": args.model,
        "budget": args.budget,
        "overrides": {t: BUDGETS[args.budget][t] + args.overrides for t in args.tasks},
        "command": command.strip(),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "runtime_s": {},
        "runs": {},
    }
    for task in args.tasks:
        start = time.perf_counter()
        summary = run_task(task, args.model, args.budget, args.output_dir, args.overrides, args.resume)
        meta["runtime_s"][task] = round(time.perf_counter() - start, 1)
        meta["runs"][task] = summary["run_dir"]
        meta["device"] = summary["device"]
        if task == "tool_use":
            result["tool_use"] = {
                "heldout_families": tool_use_block(summary, "unseen_families"),
                "seen_families": tool_use_block(summary, "seen_families"),
            }
            if calibrations := gate_calibrations(summary["run_dir"]):
                result["tool_use"]["relevance_gate_calibration"] = calibrations
            if ranking := gate_ranking(summary["run_dir"]):
                result["tool_use"]["relevance_gate_ranking"] = ranking
            if effects := rerank_effects(summary["run_dir"]):
                result["tool_use"]["argument_rerank"] = effects
            result["react"] = {
                "indist": tool_use_block(summary, "indist"),
                "unseen_tools": tool_use_block(summary, "heldout"),
            }
            result["dpo_vs_sft"] = dpo_gate(summary)
        else:
            result["meetings"] = meetings_block(summary)
    if args.resume:
        meta["resumed"] = args.resume
    kept = {t: old["meta"] for t in TASK_BLOCKS if t not in args.tasks and t in old and "meta" in old}
    result["meta"] = {**meta, "earlier_runs": kept} if kept else meta
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "meta"}, indent=1)[:4000])
    print(f"\ncommand: {meta['command']}\nruntime: {meta['runtime_s']}\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
