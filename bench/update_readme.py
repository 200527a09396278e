"""Fill README's generated sections: the config reference (from the pydantic models) and the
results tables (from bench/results/*.json). Run after changing a config or rerunning a bench:

    python bench/update_readme.py

tests/test_readme.py fails when README and these sources disagree, so the README stays true.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from posttrain.config import AlignConfig, DPOConfig, SEALConfig, SFTConfig, TuneConfig, config_reference
from posttrain.tasks.tool_use import TOOL_USE_METRICS, USER_EVAL_METRICS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIGS = {
    "SFTConfig": SFTConfig,
    "DPOConfig": DPOConfig,
    "TuneConfig": TuneConfig,
    "SEALConfig": SEALConfig,
    "AlignConfig": AlignConfig,
}


def _sft_throughput(r: dict) -> str:
    return (
        "**SFT throughput** (`python bench/sft_throughput.py`): posttrain SFT against a plain TRL "
        f"SFTTrainer script, same model ({r['model']}), data, LoRA r=16 and batch size, one process, "
        f"on {r['device']}"
        + (
            f"; {len(r['rounds'])} interleaved rounds (ours, TRL, ours, TRL, ...), medians, per-round "
            f"ratios {', '.join(str(x['ratio']) for x in r['rounds'])}.\n\n"
            if r.get("rounds")
            else ".\n\n"
        )
        + "| ours tokens/s | TRL tokens/s | ratio vs TRL | fp32 matmul ceiling GFLOP/s | utilisation |\n"
        "|---|---|---|---|---|\n"
        f"| {r['ours_tokens_per_s']} | {r['trl_tokens_per_s']} | {r['ratio_vs_trl']} | "
        f"{r['matmul_gflops']} | {r['utilisation']} |\n\n"
        "utilisation = 4 × all parameters × ours tokens/s ÷ the highest of the matmul readings "
        f"taken during the run ({', '.join(str(x) for x in r['matmul_gflops_readings'])} GFLOP/s)."
        + (
            " The readings differ by more than 30%: the machine was shared during the run, so rerun "
            "the command on an idle machine for clean figures.\n"
            if max(r["matmul_gflops_readings"]) > 1.3 * min(r["matmul_gflops_readings"])
            else "\n"
        )
    )


def _gpu_throughput(r: dict) -> str:
    rows = "".join(
        f"| {e['device']} | {e['model']} ({e['params_total'] / 1e6:.0f}M) | {e['settings']} | "
        f"{e['sft']['tokens_per_s']} | {e['sft']['mfu']} | {e['dpo']['tokens_per_s']} | {e['dpo']['mfu']} | "
        f"{e['peak_tflops']} ({e['peak_source']}) | `{e['command']}` |\n"
        for e in r.values()
    )
    return (
        "**Training throughput and MFU by hardware** (`python bench/gpu_throughput.py`): LoRA r=16 "
        "SFT and DPO through posttrain's trainers; MFU = (4 SFT, 6 DPO) × non-embedding parameters × "
        "tokens/s ÷ peak. Each row names the hardware it was measured on; a CPU row is the script's "
        "tiny-size check, not a GPU figure.\n\n"
        "| device | model | settings | SFT tokens/s | SFT MFU | DPO tokens/s | DPO MFU "
        "| peak TFLOP/s | command |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + rows
    )


def _seal_conditions(r: dict) -> str:
    conditions = (
        "base",
        "passage_only",
        "base_self_edits",
        "seal_self_edits",
        "cpt_passage_only",
        "cpt_base_self_edits",
        "cpt_seal_self_edits",
    )
    rows = "".join(
        f"| {c} | {r[c]['f1']:.3f} | {r[c]['em']:.3f} | [{r[c]['ci'][0]:.3f}, {r[c]['ci'][1]:.3f}] |\n"
        for c in conditions
        if c in r
    )
    return (
        f"**SEAL knowledge incorporation** (`{r.get('command', 'python bench/seal_knowledge.py')}`): "
        f"{r['model']}, "
        f"{r['n_passages']} held-out passages, {r['n_questions']} questions asked without the passage.\n\n"
        "| condition | F1 | EM | 95% CI (F1) |\n|---|---|---|---|\n"
        + rows
        + (
            "\nThe paper's ordering (SEAL self-edits > base self-edits > passage only > base) "
            + ("holds" if r.get("paper_ordering_holds") else "does not hold")
            + f" in this run ({r['setup']['rounds']} ReST-EM rounds, {r['setup']['train_passages']} "
            f"training passages, {r['setup']['inner_epochs']:g} inner epochs on {r['model']}"
            + (
                "): every condition stays near zero, so at this budget the inner update does not make "
                "the model recall the passages and the comparison says nothing either way.\n"
                if max(r[c]["f1"] for c in conditions if c in r) < 0.05
                else ").\n"
            )
        )
    )


def _seal_knowledge(r: dict) -> str:
    return _seal_conditions(r) + _seal_implant(r.get("implant_variants", []))


def _seal_implant(variants: list[dict]) -> str:
    """What the passage-only inner update implants, per training-text variant (bench/seal_implant.py)."""
    if not variants:
        return ""
    rows = "".join(
        f"| {v['variant']} | {v['epochs']:g} | {v['f1']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] | "
        f"{v['em']:.3f} | {v['n_questions']} | `{v['command']}` |\n"
        for v in variants
    )
    return (
        "\nInner update alone, passage only, by training text (fictional passages, questions asked "
        "without the passage; `qa_oracle` trains on the evaluation questions themselves, an upper bound "
        "for the LoRA update, never a condition):\n\n"
        "| training text | inner epochs | F1 (95% CI) | EM | questions | command |\n"
        "|---|---|---|---|---|---|\n" + rows
    )


def _seal_inner(r: dict) -> str:
    return (
        f"**SEAL inner loop** (`python bench/seal_inner.py`): one self-edit (adapt + eval), {r['model']}, "
        f"{r['steps_per_edit']} steps at batch 1, {r['device']}; ours = resident base + in-place LoRA "
        "reset + lean loop, official = a new get_peft_model and a new HF Trainer per edit.\n\n"
        "| ours s/edit | official s/edit | speedup |\n|---|---|---|\n"
        f"| {r['ours_s']} | {r['naive_s']} | {r.get('speedup_vs_official', r.get('speedup'))} |\n"
        + _seal_batched(r.get("batched"))
        + _seal_workers(r.get("workers"))
        + _seal_batched_variants(r.get("batched_variants"))
    )


def _seal_workers(w: dict | None) -> str:
    """The same E-step through the pipeline's scorer, spread over Ray workers of one thread each."""
    if not w:
        return ""
    names = (
        ("local_one_at_a_time", "one at a time in one process (`executor: local`, `inner.batch_updates: 1`)"),
        ("ray_one_at_a_time", f"{w['workers']} Ray workers, one self-edit a task (`executor: ray`)"),
        (
            "ray_together",
            f"{w['workers']} Ray workers, {w['updates_per_task_together']} updates trained together a task "
            f"(`executor: ray`, `inner.batch_updates: {w['updates_per_task_together']}`)",
        ),
    )
    rows = "".join(
        f"| {label} | {w[name]['median_s']} ({w[name]['min_s']}–{w[name]['max_s']}) | "
        f"{w['evals_per_min'][name]} | {w['speedup_vs_local_one_at_a_time'][name]} |\n"
        for name, label in names
    )
    same = all(w["f1"][name] == w["f1"]["local_one_at_a_time"] for name, _ in names)
    speed = w["speedup_vs_local_one_at_a_time"]
    return (
        f"\nThe same {w['k']} self-edits through the SEAL pipeline's own scorer (`inner_scorer`), "
        f"spread over processes: Ray gives each task one CPU, so each of the {w['workers']} workers "
        "trains on one thread where one process trains on both; "
        f"`python bench/seal_inner.py --parts workers --workers {w['workers']}`, {w['rounds']} interleaved "
        "rounds after a warm-up of each (the workers load the model then), median (min–max) seconds "
        f"for all {w['k']}; the F1s are {'the same' if same else 'NOT the same'} on every side.\n\n"
        "| how | s | evals/min | speedup |\n|---|---|---|---|\n"
        + rows
        + f"\nOf the {speed['ray_together']}x, {speed['ray_one_at_a_time']}x is the processes alone (one "
        "update's forward is too narrow for a second thread to pay, so one thread each uses the cores "
        f"better) and {speed['ray_together'] / speed['ray_one_at_a_time']:.2f}x is training "
        f"{w['updates_per_task_together']} updates together inside each.\n"
    )


def _seal_batched(b: dict | None) -> str:
    """The E-step's question: self-edit evaluations per minute, K updates trained together or not."""
    if not b:
        return ""
    one, together = b["one_at_a_time"], b["together"]
    text = (
        f"\nSelf-edit evaluations per minute, {b['k']} self-edits (one per passage) scored one at a time "
        f"(`inner.batch_updates: 1`) against their {b['k']} LoRA updates trained together in one batched "
        f"pass (`inner.batch_updates: {b['k']}`, a step's rows packed into one sequence), then each "
        f"evaluated; {b['rounds']} interleaved rounds, median (min–max) seconds for all K; losses agree to "
        f"{b['max_loss_diff']:.1e}.\n\n"
        "| one at a time s | together s | evals/min one at a time | evals/min together | speedup | "
        "training-only speedup |\n|---|---|---|---|---|---|\n"
        f"| {one['median_s']} ({one['min_s']}–{one['max_s']}) | {together['median_s']} "
        f"({together['min_s']}–{together['max_s']}) | {b['evals_per_min_one_at_a_time']} | "
        f"{b['evals_per_min_together']} | {b['speedup']} | {b['train_speedup']} |\n"
    )
    limit = b.get("limit")
    if limit and b["speedup"] < 2:
        text += (
            "\nWhat limits it on this CPU: a step is mostly matmuls, and a plain fp32 GEMM of the model's "
            f"MLP shape runs at {limit['gemm_gflops_one_at_a_time']} GFLOPS at one update's width "
            f"({limit['tokens_per_forward_one_at_a_time']} tokens a forward) and "
            f"{limit['gemm_gflops_together']} at the batched pass's "
            f"({limit['tokens_per_forward_together']}): {limit['gemm_ceiling_speedup']}x is all that "
            "batching can buy those matmuls, and each update's optimizer step, gradient clipping and "
            "one-at-a-time evaluation do not shrink at all. On a GPU one short sequence leaves most of "
            "the device idle, which is where K updates in one pass pay most.\n"
        )
    return text


def _seal_batched_variants(v: dict | None) -> str:
    """Every way of batching the updates that was measured, with its figure."""
    if not v:
        return ""
    rows = "".join(
        f"| {x['name']} | {x['k']} | {x['threads']} | {x['rounds']} | {x['one_at_a_time_s']} | "
        f"{x['together_s']} | {x['speedup']} | {x['max_loss_diff']:.1e} | {x['what']} |\n"
        for x in v["variants"]
    )
    return (
        f"\n{v['what']}\n\n"
        "| variant | K | threads | rounds | one at a time s | together s | speedup | loss diff | what |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + rows
    )


def _trial_overhead(r: dict) -> str:
    return (
        f"**Trial overhead** (`python bench/trial_overhead.py`): a 4-episode tune loop on {r['model']}, "
        "base held resident vs reloaded for every trial (seed 000's way). The two loops run one after the "
        "other, so their wall times carry whatever else the machine ran meanwhile; the overhead fraction "
        "(time outside optimisation and evaluation) is measured within each loop.\n\n"
        "| resident s | reload s | speedup | overhead fraction, resident | overhead fraction, reload |\n"
        "|---|---|---|---|---|\n"
        f"| {r['resident_s']} | {r['reload_s']} | {r['speedup']} | {r['overhead_fraction']} "
        f"| {r['reload_overhead_fraction']} |\n"
    )


def _tune_compare(r: dict) -> str:
    """`bench/tune_compare.py`: every tuner against the tabular benchmark of real trainings."""
    m, n_keys = r["meta"], [k for k in r if re.fullmatch(r"N\d+", k)]
    arms = list(r[n_keys[-1]])

    def cell(x: dict) -> str:
        return f"{x['mean']:.4f} [{x['ci'][0]:.4f}, {x['ci'][1]:.4f}]"

    head = "| tuner | " + " | ".join(f"regret {k} (95% CI)" for k in n_keys)
    head += f" | best val loss {n_keys[-1]} | test loss of winner {n_keys[-1]} |\n"
    rows = "".join(
        f"| {a} | "
        + " | ".join(cell(r[k][a]["regret"]) for k in n_keys)
        + f" | {r[n_keys[-1]][a]['best_val']['mean']:.4f} | {r[n_keys[-1]][a]['winner_test']['mean']:.4f} |\n"
        for a in arms
    )
    diffs = []
    for k, d in r.get("differences", {}).items():
        for key, x in d.items():
            if key.startswith("minus_"):
                diffs.append(f"{k} {d['best_agent_based']} − {key[6:]}: {cell(x)}")
    best, check = m["table_best"], m["table_lr_check"]
    lr_ok = "yes" if check["lr_optimum_inside"] and check["too_high_lr_loses"] else "no"
    skipped = "".join(f" Not run: {a} ({why})." for a, why in m.get("skipped", {}).items())
    verdict = " ".join(v["text"] + "." for k, v in r["verdict"].items() if k in n_keys)
    return (
        f"**Tuner comparison** (`{m['command']}`): every tuner runs the `posttrain tune` episode loop "
        f"against the tabular benchmark `bench/results/{m['table']}` (real {m['table_model']} LoRA trainings "
        "over an lr × lora_r × batch_size grid, written by `OMP_NUM_THREADS=1 python bench/tune_table.py`), "
        f"{m['seeds']} seeds, up to {m['budget']} trainings, agents on the {m['agents_backend']} backend; "
        "every arm trains the defaults first. Regret = best validation loss found − the table's best "
        f"({best['val_loss']:.4f} at {best['key']}); the learning-rate optimum lies inside the range and "
        f"too-high rates lose: {lr_ok}.\n\n"
        + head
        + "|---" * (len(n_keys) + 3)
        + "|\n"
        + rows
        + f"\n{verdict} Default tuner (winner at N{r['verdict']['default_budget']}, the default "
        f"budget): {r['verdict']['default_tuner']}; winner at N8 + N16: {r['verdict']['winner_n8_n16']}."
        f"{skipped}\n"
        + ("\nDifferences of mean regret (95% CI): " + "; ".join(diffs) + ".\n" if diffs else "")
    )


def _tune_confirm(r: dict) -> str:
    """`bench/tune_compare.py --real`: the tabular run's conclusion checked on real trainings."""
    n_keys = [k for k in r if re.fullmatch(r"N\d+", k)]
    arms = list(r["test"])
    head = (
        "| tuner | "
        + " | ".join(f"best val loss {k} (95% CI)" for k in n_keys)
        + " | test loss of winner (95% CI) |\n"
    )

    def cell(x: dict) -> str:
        return f"{x['mean']:.4f} [{x['ci'][0]:.4f}, {x['ci'][1]:.4f}]"

    rows = "".join(
        f"| {t} | " + " | ".join(cell(r[k][t]) for k in n_keys) + f" | {cell(r['test'][t])} |\n" for t in arms
    )
    m = r["meta"]
    goal = m["best_agent_based_at_or_below_tpe"]
    verdict = "; ".join(
        f"at {k} the best agent-based arm is {'at or below' if ok else 'above'} TPE" for k, ok in goal.items()
    )
    last = n_keys[-1]
    ours = min((t for t in arms if t != "tpe"), key=lambda t: r[last][t]["mean"])
    (lo, hi), (tlo, thi) = r[last][ours]["ci"], r[last]["tpe"]["ci"]
    separation = f"At {last} the 95% CIs of {ours} and TPE " + (
        "overlap, so real training at this many seeds does not tell them apart"
        if lo <= thi and tlo <= hi
        else "do not overlap"
    )
    test_best = min(arms, key=lambda t: r["test"][t]["mean"])
    return (
        f"**Tuner comparison on real training** (`{m['command']}`): {m['model']}, {m['seeds']} seeds, "
        f"{m['budget']} real trainings per tuner and seed of {m['steps_per_training']} optimizer steps each "
        f"(the table's budget), agents on the {m['agents_backend']} backend. Every tuner selects on the "
        f"same {m['val_rows']} validation rows; each winner is scored once on {m['test_rows']} test rows "
        "that no tuner saw.\n\n"
        + head
        + "|---" * (len(n_keys) + 2)
        + "|\n"
        + rows
        + f"\n{verdict[0].upper() + verdict[1:]}. {separation}. Lowest mean test loss of the winners: "
        f"{test_best}.\n" + _tune_winners(r.get("winners"))
    )


def _tune_winners(winners: dict | None) -> str:
    if not winners:
        return ""
    cells = []
    for t, ws in winners.items():
        lrs = sorted(w["lr"] for w in ws)
        found = sum(w["found_at"] for w in ws) / len(ws)
        cells.append(f"{t} median lr {lrs[len(lrs) // 2]:.2g}, found at training {found:.1f} on average")
    return "Winning configurations: " + "; ".join(cells) + ".\n"


def _rlhf_quality(r: dict) -> str:
    lo, hi = r["reward_gain_ci"]
    return (
        f"**RLHF** (`python bench/rlhf_quality.py`): {r.get('model', 'smollm2-135m')}, external reward-model "
        "score of SFT vs RL completions on held-out prompts.\n\n"
        "| SFT reward | RL reward | gain (95% CI) | KL target | mean KL after warm-up | KL within ±50% |\n"
        "|---|---|---|---|---|---|\n"
        f"| {r['sft_reward_mean']:.4f} | {r['rl_reward_mean']:.4f} "
        f"| {r['reward_gain']:.4f} [{lo:.4f}, {hi:.4f}] "
        f"| {r['kl_target']} | {r['kl_mean_after_warmup']:.2g} | {r['kl_within_band']} |\n\n"
        f"{r['rl_steps']} GRPO steps after {r['sft_steps']} SFT steps; the reward model ranks "
        f"{r['rm_heldout_accuracy']:.0%} of held-out answer pairs correctly. "
        + (
            "The gain's CI is above zero."
            if lo > 0
            else "The gain's CI includes zero: no significant improvement at this budget."
        )
        + (
            ""
            if r["kl_within_band"]
            else f" The dynamic KL controller did not hold the target (β ended at {r['beta_final']:.3g})."
        )
        + f" Command as run: `{r.get('command', 'python bench/rlhf_quality.py')}`."
        + (f" {r['note']}" if r.get("note") else "")
        + "\n"
        + _rlhf_variants(r.get("variants") or [])
    )


def _ci(ci: list[float]) -> str:
    return f"{ci[0]:.4f}, {ci[1]:.4f}"


def _rlhf_variants(variants: list[dict]) -> str:
    if not variants:
        return ""
    rows = [
        f"| {v['variant']} | {v['reward_gain']:.4f} [{_ci(v['reward_gain_ci'])}] "
        f"| {v['kl_target']} | {v['kl_mean_after_warmup']:.3g} | {v['kl_within_band']} "
        f"| {v['beta_final']:.3g} | {v.get('note', '')} |"
        for v in variants
    ]
    return (
        "\nVariants that led to the preset (each row's command is in the JSON):\n\n"
        "| variant | gain (95% CI) | KL target | mean KL | in band | final β | what changed |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def _ci_cell(block: dict, key: str) -> str:
    value, ci = block.get(key), block.get(f"{key}_ci")
    if value is None:
        return "-"
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f}"


REACT_KEYS = (*TOOL_USE_METRICS, "task_accuracy")  # the ReAct tables' columns, in order
POOL_KEYS = USER_EVAL_METRICS  # the tool-family tables' columns: AST accuracy first
MEETINGS_KEYS = (
    "sft_accuracy",
    "trajectory_accuracy",
    "dpo_accuracy",
    "majority_baseline",
    "oracle_accuracy",
    "dpo_agent_parse_rate",
    "dpo_agent_brier",
    "majority_baseline_brier",
)


def _task_meta(r: dict) -> dict[str, dict]:
    """Each task's run record: the latest run's meta, or the one it kept for a task it did not run."""
    m = r["meta"]
    found = {t: m for t in m.get("runtime_s", {})}
    for task, earlier in m.get("earlier_runs", {}).items():
        found.setdefault(task, earlier)
    return found


def _align_quality(r: dict) -> str:
    runs = "; ".join(
        f"{task}: `{m['command']}` ({m['model']}, budget {m['budget']}, {m['date']}, "
        f"{m['runtime_s'][task] / 60:.0f} min on {m['torch_threads']} torch threads"
        f"{', the part after --resume' if m.get('resumed') else ''})"
        for task, m in sorted(_task_meta(r).items(), reverse=True)
    )
    out = (
        f"**Align quality** ({runs}): held-out data (evaluation seed 1000, never trained or tuned on); "
        "mean [bootstrap 95% CI], n = scored turns (tool_use) or scenarios (meetings).\n\n"
    )
    tables = [
        ("tool_use", "heldout_families", "tool_use, tool families never trained on (headline)", POOL_KEYS),
        ("tool_use", "seen_families", "tool_use, training families, new requests", POOL_KEYS),
        ("react", "indist", "ReAct episodes of the five executable tools, in distribution", REACT_KEYS),
        ("react", "unseen_tools", "ReAct episodes with two unseen tools", REACT_KEYS),
    ]
    for group, block, title, keys in tables:
        if block not in r.get(group, {}):
            continue
        if group == "tool_use":
            title += _tool_use_decoding(r, block) + _rerank_caption(r, block)
        scored = [m for m in ("base", "sft", "dpo") if m in r[group][block]]
        if len(scored) < 3:
            title += f"; only {' and '.join(scored)} scored on this split (evaluation.model_splits)"
        out += f"{title}:\n\n| model | n | " + " | ".join(keys) + " |\n"
        out += "|---" * (len(keys) + 2) + "|\n"
        for model in scored:
            b = r[group][block][model]
            out += f"| {model} | {b['n']} | " + " | ".join(_ci_cell(b, k) for k in keys) + " |\n"
        out += "\n"
    if "meetings" in r:
        b = r["meetings"]
        out += f"meetings, held-out scenarios (n={b['n']}):\n\n| " + " | ".join(MEETINGS_KEYS) + " |\n"
        out += (
            "|---" * len(MEETINGS_KEYS) + "|\n| " + " | ".join(_ci_cell(b, k) for k in MEETINGS_KEYS) + " |\n"
        )
    return (
        out
        + _align_reading(r)
        + _align_decoding(r)
        + _relevance(r)
        + _align_variants(r)
        + _meetings_variants(r)
    )


def _tool_use_decoding(r: dict, block: str) -> str:
    """How the function-pool tables were decoded, from what the run recorded."""
    found = r["tool_use"].get("relevance_gate_calibration")
    if not found:
        return ""

    def cell(c: dict) -> str:
        return (
            f"{c['threshold']:.3f} (keeps {c['call_rows_passing']:.0%} of calls, declines "
            f"{c['no_call_rows_declined']:.0%} of no-call requests there)"
        )

    if all(c.get("scorer") == "base" for c in found.values()):  # one calibration serves every model
        shared = cell(next(iter(found.values())))
        return (
            "; decoded constrained with the relevance gate scored by the base model (adapter off) for "
            f"every model, its threshold calibrated on validation families: {shared}"
        )
    if all(c.get("scorer") == "trained" for c in found.values()):
        shared = cell(next(iter(found.values())))
        split = {"heldout_families": "unseen_families"}.get(block, block)
        where = "training families held back from that scorer"
        if next(iter(found.values())).get("families") == "held-back training and validation":
            where += " and the validation families"
        ranking = next(iter(r["tool_use"].get("relevance_gate_ranking", {}).values()), {}).get(split)
        auc = f"; the scores rank these requests with AUC {ranking['auc']:.2f}" if ranking else ""
        return (
            "; decoded constrained with the relevance gate scored by the scorer the run trained first "
            "(relevance_adapter/, loaded beside every model), its threshold calibrated on the "
            f"{where}: {shared}{auc}"
        )
    cells = ", ".join(f"{m} {cell(c)}" for m, c in found.items())
    return (
        "; decoded constrained with the relevance gate, its threshold calibrated per model on "
        f"validation families: {cells}"
    )


def _rerank_caption(r: dict, block: str) -> str:
    """What argument reranking did on this table's rows, AST as generated -> as reranked."""
    split = {"heldout_families": "unseen_families"}.get(block, block)
    found = (r["tool_use"].get("argument_rerank") or {}).get(split)
    if not found:
        return ""
    cells = ", ".join(
        f"{m} {e['ast_accuracy_as_generated']:.2f} -> {e['ast_accuracy_reranked']:.2f} "
        f"({e['replies_changed']} replies changed)"
        for m, e in found.items()
    )
    by = {"base": " by the base model's channel", "trained": " by the trained scorer's channel"}
    scorer = by.get((r["tool_use"].get("argument_rerank") or {}).get("scorer", "model"), "")
    head = f"; then each call's arguments reranked{scorer} (toolcall/rerank.py), AST as generated -> "
    return head + f"reranked: {cells}"


def _relevance(r: dict) -> str:
    """How well each relevance scoring tells call from no-call requests (bench/tool_relevance.py)."""
    out = ""
    for where, e in (r.get("relevance") or {}).items():
        out += (
            f"\ntool relevance scores, {where} ({e['split']}; {e['model']}"
            f"{' + ' + e['adapter'] if e.get('adapter') else ''}: `{e['command']}`, {e['date']}): AUC of the "
            "best offered tool's score between requests some tool fits and those none does, top-1 = the "
            "best-scoring tool is the gold one, then the share of call requests whose best tool passes / "
            "of no-call requests declined at two thresholds:\n\n"
            "| scoring | AUC | top-1 | pass / decline at 0.2 | at 0.3 |\n|---|---|---|---|---|\n"
        )
        for name, f in e["scorings"].items():
            at = {x["threshold"]: x for x in f["sweep"]}
            cells = [
                f"{at[t]['call_rows_passing']:.2f} / {at[t]['no_call_rows_declined']:.2f}" if t in at else "-"
                for t in (0.2, 0.3)
            ]
            out += f"| {name} | {f['auc']:.3f} | {f['top1']:.2f} | {cells[0]} | {cells[1]} |\n"
    return out


def _align_decoding(r: dict) -> str:
    """Free vs grammar-constrained decoding of the same adapters on the same requests
    (bench/tool_decoding.py), a table per split."""
    out = ""
    for split, e in (r.get("decoding") or {}).items():
        out += (
            f"\ntool_use decoding, {split} ({e['items']} requests, seed {e['seed']}; same adapters, same "
            f"requests, free vs constrained: `{e['command']}`, {e['torch_threads']} thread, {e['date']}):\n\n"
            "| model | decoding | " + " | ".join(POOL_KEYS) + " |\n" + "|---" * (len(POOL_KEYS) + 2) + "|\n"
        )
        for model, modes in e["models"].items():
            for decoding, figs in modes.items():
                flat = {k: v.get("value") for k, v in figs.items() if isinstance(v, dict)}
                flat |= {f"{k}_ci": v.get("ci") for k, v in figs.items() if isinstance(v, dict)}
                cells = " | ".join(_ci_cell(flat, k) for k in POOL_KEYS)
                out += f"| {model} | {decoding} | {cells} |\n"
    return out


def _checklist_cell(checks: dict[str, float]) -> str:
    """Each checklist line's share right, then how often the side followed the model's own count."""
    terms = ", ".join(f"{k} {v:.2f}" for k, v in checks.items() if k != "side_follows_count")
    return f"({terms}; side follows the count {checks['side_follows_count']:.2f})"


def _meetings_variants(r: dict) -> str:
    """The meetings direct-predictor variants (bench/meetings_direct_variants.py), a line each."""
    lines = []
    for v in r.get("meetings_variants", []):
        st, acc = v["settings"], v["accuracy"]
        ci = f" [{acc['ci'][0]:.2f}, {acc['ci'][1]:.2f}]" if acc.get("ci") else ""
        card, checks = v.get("scorecard_term_accuracy"), v.get("checklist_term_accuracy")
        lines.append(
            f"- `{v['run']}` ({st['fmt']}, {st['rows']} rows, {st['epochs']:g} epochs, {st['steps']} steps"
            + (f", LoRA r{st['lora_r']}" if st.get("lora_r", 16) != 16 else "")
            + (f", lr {st['lr']:g}" if st.get("lr", 1e-3) != 1e-3 else "")
            + "): "
            f"accuracy {acc['value']:.3f}{ci} (n={acc['n']}), Brier {v['brier']['value']:.3f}"
            + (f", scorecard terms right {card:.2f}" if card is not None else "")
            + (f", checklist words right {_checklist_cell(checks)}" if checks else "")
            + f". {v.get('note', '')}".rstrip()
        )
    if not lines:
        return ""
    return (
        "\nmeetings direct-predictor variants, held-out scenarios "
        "(`bench/results/align_quality.json` → meetings_variants):\n\n" + "\n".join(lines) + "\n"
    )


VARIANT_SPLITS = {
    "unseen": "unseen families",
    "validation": "validation families",
    "validation_natural": "validation families (specs as written)",
    "validation_masked": "validation families (masked)",
    "validation_constrained": "validation families, constrained",
    "validation_gated_sft_channel": "validation families, gated by the SFT model's scores at 0.2",
    "validation_gated_base_channel": "validation families, gated by the base model's scores at 0.2",
    "validation_gated": "validation families, constrained and gated",
    "validation_gated_reranked": "validation families, constrained, gated and arguments reranked",
    "validation_base_gate9_reranked": "validation families, base-model gate at 90% of calls, reranked",
    "validation_base_gate95_reranked": "validation families, base-model gate at 95% of calls, reranked",
}


def _align_variants(r: dict) -> str:
    """The tool_use variants tried so far (bench/align_variants.py), a line each, in words."""
    lines = []
    for v in r.get("variants", []):
        figs = []
        for where, label in VARIANT_SPLITS.items():
            for model in ("sft", "dpo"):
                block = v.get(f"{where}_{model}") or {}
                for key, short in (("ast_accuracy", "AST"), ("irrelevance_accuracy", "irrelevance")):
                    fig = block.get(key)
                    value = fig.get("value") if isinstance(fig, dict) else fig
                    if value is not None and (key == "ast_accuracy" or where.startswith("validation_")):
                        figs.append(f"{model} {short} {value:.2f} on {label}")
        gate = v.get("gate") or {}
        if gate.get("applied"):
            figs.append(f"the gate kept {gate['kept']} ({gate['dpo_minus_sft']:+.3f})")
        lines.append(f"- `{v['run']}`: {'; '.join(figs) or 'no figures'}. {v.get('note', '')}")
    if not lines:
        return ""
    return (
        "\ntool_use variants (`bench/results/align_quality.json` → variants):\n\n" + "\n".join(lines) + "\n"
    )


def _align_reading(r: dict) -> str:
    """What the align tables say, in words computed from them (so they cannot drift apart)."""
    notes = []
    if "heldout_families" in r.get("tool_use", {}):
        h, ast = r["tool_use"]["heldout_families"], "ast_accuracy"
        verdict = "improves on" if h["dpo"][ast] > h["sft"][ast] else "does not improve on"
        text = (
            f"On tool families never trained on, SFT takes AST accuracy from {h['base'][ast]:.2f} to "
            f"{h['sft'][ast]:.2f}; DPO {verdict} SFT ({h['dpo'][ast]:.2f})"
        )
        worse = r.get("dpo_vs_sft", {}).get("worse_beyond_ci")
        if worse:
            text += f", and is worse than SFT beyond its CI on {', '.join(worse)}"
        if h["dpo"] == h["sft"]:
            text += (
                " — the dpo row equals SFT's because the DPO gate (validation families) kept the SFT "
                "adapter: DPO did not score above it there (a tie keeps SFT)"
            )
        notes.append(text + ".")
    if "meetings" in r:
        b = r["meetings"]
        side = "above" if b["sft_accuracy"] > b["majority_baseline"] else "not above"
        calls = [b.get(f"{m}_agent_mean_tool_calls", 0.0) for m in ("sft", "dpo")]
        parsed = [b.get(f"{m}_agent_parse_rate", 0.0) for m in ("sft", "dpo")]
        (lo, _), (_, maj_hi) = b["sft_accuracy_ci"], b["majority_baseline_ci"]
        briers = [b.get(f"{m}_agent_brier") for m in ("sft", "dpo")]
        dpo_lo = b["dpo_accuracy_ci"][0]
        # Runs from before the majority baseline's Brier was recorded compare with a constant 0.5's.
        base_brier = b.get("majority_baseline_brier", 0.25)
        base_name = "the training success rate's" if "majority_baseline_brier" in b else "a constant 0.5's"
        notes.append(
            f"Meetings: the SFT predictor ({b['sft_accuracy']:.2f}) is {side} the majority baseline "
            f"({b['majority_baseline']:.2f})"
            + (", but their CIs overlap" if lo <= maj_hi else "")
            + f"; the DPO agent scores {b['dpo_accuracy']:.2f}, its CI's lower bound ({dpo_lo:.2f}) "
            + ("above" if dpo_lo > b["majority_baseline"] else "not above")
            + f" the majority baseline; the tool-using agents make {calls[0]:.1f} (SFT) and "
            f"{calls[1]:.1f} (DPO) tool calls on average and end with a parsable probability in "
            f"{parsed[0]:.0%} and {parsed[1]:.0%} of scenarios"
            + (
                f"; their Brier scores ({briers[0]:.2f}, {briers[1]:.2f}) are "
                + ("below" if max(briers) < base_brier else "not below")
                + f" {base_name} ({base_brier:.2f})."
                if None not in briers
                else "."
            )
        )
    return ("\n" + " ".join(notes) + "\n") if notes else ""


def _rollout_throughput(r: dict) -> str:
    head = (
        f"**Rollout throughput** (`{r['command']}`): ReAct trajectories per minute on {r['model']}, "
        f"{r['prompts']} tool_use prompts, batched (batch {r['batch_size']}) vs one at a time, same run"
    )
    if "batched_plain_per_min" not in r:
        return (
            f"{head}.\n\n| batched / min | sequential / min | speedup |\n|---|---|---|\n"
            f"| {r['batched_per_min']} | {r['sequential_per_min']} | {r['speedup']} |\n"
        )
    lo_hi = {k: f"{v[0]}–{v[1]}" for k, v in r["per_min_range"].items()}
    return (
        f"{head}, {r['rounds']} interleaved rounds each: median (min–max). Without the shared-prefix "
        "KV cache, batched generation recomputes the system prompt for every row.\n\n"
        "| batched / min | batched, no prefix cache / min | sequential / min | speedup | "
        "speedup without prefix cache |\n|---|---|---|---|---|\n"
        f"| {r['batched_per_min']} ({lo_hi['batched']}) | {r['batched_plain_per_min']} "
        f"({lo_hi['batched_plain']}) | {r['sequential_per_min']} ({lo_hi['sequential']}) | "
        f"{r['speedup']} | {r['speedup_without_prefix_cache']} |\n"
    )


FORMATTERS = {
    "align_quality": _align_quality,
    "rollout_throughput": _rollout_throughput,
    "rlhf_quality": _rlhf_quality,
    "sft_throughput": _sft_throughput,
    "gpu_throughput": _gpu_throughput,
    "trial_overhead": _trial_overhead,
    "tune_compare": _tune_compare,
    "tune_confirm": _tune_confirm,
    "seal_inner": _seal_inner,
    "seal_knowledge": _seal_knowledge,
}


def results_section() -> str:
    parts = []
    for name, fmt in FORMATTERS.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            parts.append(fmt(json.loads(path.read_text())))
    return "\n".join(parts) or "No benchmark has been run yet.\n"


def render(readme: str) -> str:
    for name, cls in CONFIGS.items():
        readme = _replace(readme, f"config:{name}", config_reference(cls))
    return _replace(readme, "results", results_section(), closing="/results")


def _replace(text: str, tag: str, body: str, closing: str | None = None) -> str:
    start, end = f"<!-- {tag} -->", f"<!-- {closing or '/' + tag} -->"
    if end not in text:
        text = text.replace(start, f"{start}\n{end}")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _: f"{start}\n{body}{end}", text)


if __name__ == "__main__":
    path = ROOT / "README.md"
    path.write_text(render(path.read_text()))
    print(f"updated {path}")
