"""Tuners compared on the same budget: the agent team (rules backend), random search, Optuna TPE and
CMA-ES, the agents+TPE hybrid and the Centaur hybrids (a sampler proposes, the agents override 30%).

    python bench/tune_compare.py            # against bench/results/tune_table.json, 40 seeds, N = 4, 8, 16
    python bench/tune_compare.py --real     # each arm through real `posttrain tune` trainings (slow)

Default (tabular): every arm runs the real episode loop of `posttrain tune` with each training
replaced by a lookup in the table of real smollm2-135m trainings that `bench/tune_table.py`
wrote (see `bench/tune_tabular.py`), so many seeds cost seconds. N4/N8/N16 are the best
validation loss among the first 4/8/16 trainings of one 16-training run. Regret is that loss
minus the table's best; the winner's test loss is the held-out loss of the configuration the
arm picked. Means come with bootstrap 95% CIs over seeds; `differences` gives the CI of the
best agent-based arm's mean regret minus each classical arm's. `verdict` says in words who won.

--real: each (tuner, seed) trains `--budget` real configurations (no SEAL stage, no QA, the judge
may not stop early) and every winner is scored once on a held-out test split no tuner saw;
it writes bench/results/tune_confirm.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from tune_tabular import ARMS  # bench/ is on sys.path when this file runs as a script

RESULTS = Path(__file__).parent / "results" / "tune_compare.json"
CONFIRM = Path(__file__).parent / "results" / "tune_confirm.json"
TABLE = Path(__file__).parent / "results" / "tune_table.json"
# --real: the two best arms of the tabular run and TPE (the confirmation), by default.
CONFIRM_ARMS = "centaur_parzen,hybrid,tpe"


def splits(seed: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    """train / validation (for the tuners) / test (only for the winners), from the bundled sample."""
    from posttrain.tasks.instructions import load_sft_dataset, sample_path

    train, held = load_sft_dataset(sample_path("alpaca"), val_fraction=0.2, seed=seed)
    half = len(held) // 2
    return train, held[:half], held[half:]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps({"messages": r["prompt"] + r["completion"]}) + "\n" for r in rows))
    return path


def run_one(
    model: str,
    tuner: str,
    seed: int,
    budget: int,
    steps: int,
    data: tuple[Path, Path],
    root: Path,
    max_val: int,
    max_length: int = 64,
) -> dict:
    from posttrain.config import TuneConfig, load_config
    from posttrain.pipelines.tune import run_tune
    from posttrain.store import Store

    name = f"{tuner}-{seed}"
    overrides = [
        f"model.name={model}",
        f"data.path={data[0]}",
        f"data.val_path={data[1]}",
        "data.seed=0",
        f"data.max_val={max_val}",
        *[f"agents.{k}={v}" for k, v in ARMS[tuner].items()],
        f"agents.seed={seed}",
        f"agents.max_episodes={budget}",
        f"agents.force_min_episodes={budget}",
        "agents.qa=false",
        "seal.mode=none",
        f"trial.max_steps={steps}",
        f"trial.max_length={max_length}",
        f"run.name={name}",
        f"run.output_root={root}",
    ]
    summary = run_tune(load_config(TuneConfig, overrides=overrides))
    with Store(f"sqlite:///{root / 'posttrain.db'}") as store:
        episodes = store.list_episodes(store.find_run(name).id)
    losses = [e.metrics["eval_loss"] for e in episodes]
    at = losses.index(min(losses))
    winner = {"seed": seed, "found_at": at + 1, **episodes[at].hparams}
    return {"losses": losses, "winner": winner, "adapter": str(Path(summary["run_dir"]) / "adapter")}


def test_loss(model: str, adapter: str, rows: list[dict], tmp: Path) -> float:
    from peft import PeftModel

    from posttrain.models import load_model
    from posttrain.train.sft import evaluate_loss

    base, tok = load_model(model)
    return evaluate_loss(PeftModel.from_pretrained(base, adapter), tok, rows, tmp, max_length=128)


def stats(values: list[float]) -> dict:
    from posttrain.tasks.metrics import bootstrap_ci

    lo, hi = bootstrap_ci(values, seed=0)
    return {"mean": round(sum(values) / len(values), 5), "ci": [round(lo, 5), round(hi, 5)], "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", action="store_true", help="train every trial for real instead of the table")
    parser.add_argument("--table", type=Path, default=TABLE, help="the table from bench/tune_table.py")
    parser.add_argument(
        "--arms", default=None, help=f"comma-separated arms (default: all; --real: {CONFIRM_ARMS})"
    )
    parser.add_argument("--backend", default="rules", help="agent backend: rules, or openai (an endpoint)")
    parser.add_argument("--model", default="smollm2-135m", help="--real: the model")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 40, --real 3)")
    parser.add_argument(
        "--budget", type=int, default=None, help="trainings per run, N (default 16, --real 8)"
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="--real: optimizer steps per training (the table's 8)"
    )
    parser.add_argument("--max-length", type=int, default=64, help="--real: tokens per row (the table's 64)")
    parser.add_argument(
        "--max-val",
        type=int,
        default=24,
        help="--real: cap on the tuners' validation rows (eval cost per trial)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.real:
        args.seeds, args.budget, args.out = args.seeds or 3, args.budget or 8, args.out or CONFIRM
        args.arms = args.arms or CONFIRM_ARMS
        real_main(args)
    else:
        args.seeds, args.budget, args.out = args.seeds or 40, args.budget or 16, args.out or RESULTS
        args.arms = args.arms or ",".join(ARMS)  # every arm
        tabular_main(args)


def tabular_main(args: argparse.Namespace) -> None:
    """Every arm x seed against the table; writes per-N rows, differences, verdict and meta."""
    from tune_tabular import AGENT_BASED, CLASSICAL, Table, best_at, run_arm

    table = Table(args.table)
    arms, skipped = [], {}
    for arm in args.arms.split(","):
        if arm in ("cma", "centaur") and importlib.util.find_spec("cmaes") is None:
            skipped[arm] = "the cmaes package is not installed (pip install cmaes), so CMA-ES cannot run"
            continue
        arms.append(arm)
    traces = {
        arm: [run_arm(table, arm, seed, args.budget, args.backend) for seed in range(args.seeds)]
        for arm in arms
    }
    result: dict = {}
    ns = [n for n in (4, 8, 16) if n <= args.budget]
    for n in ns:
        result[f"N{n}"] = {}
        for arm in arms:
            picks = [best_at(t, n) for t in traces[arm]]
            result[f"N{n}"][arm] = {
                "best_val": stats([p["val_loss"] for p in picks]),
                "regret": stats([p["val_loss"] - table.best_val for p in picks]),
                "winner_test": stats([p["test_loss"] for p in picks]),
            }
    result["differences"] = differences(traces, table, ns, AGENT_BASED, CLASSICAL)
    result["verdict"] = verdict(result, ns, AGENT_BASED, CLASSICAL)
    result["sources"] = {
        arm: dict(Counter(r["by"] for t in traces[arm] for r in t))
        for arm in arms
        if arm.startswith("centaur")
    }
    result["meta"] = {
        "mode": "tabular",
        "table": args.table.name,
        "table_best": table.data["best"],
        "table_model": table.data["meta"]["model"],
        "table_lr_check": {k: table.data["checks"][k] for k in ("lr_optimum_inside", "too_high_lr_loses")},
        "seeds": args.seeds,
        "budget": args.budget,
        "agents_backend": args.backend,
        "first_trial": "every arm trains the search space's defaults first",
        "centaur_override_share": 0.3,
        "arms": {
            "centaur": "CMA-ES proposes, the agent team overrides up to 30% of trials",
            "centaur_parzen": "the same hybrid with TPE (tree-structured Parzen estimator) as the sampler",
            "hybrid": "agents and TPE alternate (even episodes: agents)",
        },
        "skipped": skipped,
        "centaur_agents_proposal": (
            "the tuner's proposal without the reward-penalty override (which steps from the last "
            "trial, under centaur mostly the sampler's draw); agents and hybrid merge it as seed 000 does"
        ),
        "note": (
            "the rules backend is deterministic, so the agents arm gives the same run on every seed; "
            "the table's lr grid steps by about x3, the rules tuner's first lr step"
        ),
        "command": "python bench/tune_compare.py",
        "confirmation_on_real_training": (
            "not run yet: `python bench/tune_compare.py --real` (centaur_parzen, hybrid and tpe, 3 seeds, "
            "N = 8, real trainings at the table's budget) writes bench/results/tune_confirm.json"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in (*[f"N{n}" for n in ns], "verdict")}, indent=2))


def differences(traces: dict, table: Any, ns: list[int], agent_based: tuple, classical: tuple) -> dict:
    """Per N: the best agent-based arm (lowest mean regret) minus each classical arm, mean and CI
    (bootstrap over seeds, arms resampled independently: their seeds share nothing)."""
    from tune_tabular import best_at

    out: dict = {}
    for n in ns:
        regrets = {
            arm: [best_at(t, n)["val_loss"] - table.best_val for t in ts] for arm, ts in traces.items()
        }
        ours = [a for a in agent_based if a in regrets]
        if not ours:
            continue
        best = min(ours, key=lambda a: sum(regrets[a]) / len(regrets[a]))
        row: dict = {"best_agent_based": best}
        for other in (*classical, "random"):
            if other in regrets:
                row[f"minus_{other}"] = diff_stats(regrets[best], regrets[other])
        out[f"N{n}"] = row
    return out


def diff_stats(a: list[float], b: list[float], n_boot: int = 2000, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y = np.asarray(a), np.asarray(b)
    boots = [rng.choice(x, x.size).mean() - rng.choice(y, y.size).mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": round(float(x.mean() - y.mean()), 5), "ci": [round(float(lo), 5), round(float(hi), 5)]}


def verdict(result: dict, ns: list[int], agent_based: tuple, classical: tuple) -> dict:
    """Who won at each N (lowest mean regret), and whether an agent-based arm is at or below every
    classical arm that ran, in plain words."""
    out: dict = {}
    for n in ns:
        rows = result[f"N{n}"]
        mean = {arm: rows[arm]["regret"]["mean"] for arm in rows}
        ours = {a: mean[a] for a in agent_based if a in mean}
        theirs = {a: mean[a] for a in classical if a in mean}
        winner = min(mean, key=lambda a: (mean[a], a not in agent_based))
        best_ours = min(ours, key=ours.get) if ours else None
        ok = best_ours is not None and bool(theirs) and ours[best_ours] <= min(theirs.values())
        missing = [a for a in classical if a not in mean]
        text = f"N{n}: lowest mean regret {winner} ({mean[winner]:.4f}); "
        if best_ours is None or not theirs:
            text += "no comparison possible"
        else:
            cmp = "at or below" if ok else "ABOVE"
            text += (
                f"best agent-based arm {best_ours} ({ours[best_ours]:.4f}) is {cmp} the best classical arm"
            )
            text += f" {min(theirs, key=theirs.get)} ({min(theirs.values()):.4f})"
        if missing:
            text += f"; not run: {', '.join(missing)}"
        out[f"N{n}"] = {"winner": winner, "agent_based_at_or_below_classical": ok, "text": text}
    # The default tuner is the winner at the default budget (agents.max_episodes), where a plain
    # `posttrain tune` stops; the longer budgets the target names (8, 16) get their own winner.
    from posttrain.config.tune import AgentSettings

    default_n = AgentSettings().max_episodes
    long = [n for n in ns if n >= 8]
    totals = {arm: sum(result[f"N{n}"][arm]["regret"]["mean"] for n in long) for arm in result[f"N{ns[-1]}"]}
    out["default_budget"] = default_n
    out["default_tuner"] = out[f"N{default_n}"]["winner"] if default_n in ns else None
    out["winner_n8_n16"] = min(totals, key=totals.get) if long else None
    out["rule"] = (
        f"default_tuner: lowest mean regret at N{default_n} (agents.max_episodes' default); winner_n8_n16: "
        "lowest mean regret summed over N8 and N16"
    )
    return out


def real_main(args: argparse.Namespace) -> None:
    tuners = args.arms.split(",")
    train, val, test = splits()
    best: dict[str, dict[int, list[float]]] = {t: {} for t in tuners}
    test_losses: dict[str, list[float]] = {t: [] for t in tuners}
    winners: dict[str, list[dict]] = {t: [] for t in tuners}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = (write_jsonl(train, tmp_path / "train.jsonl"), write_jsonl(val, tmp_path / "val.jsonl"))
        for seed in range(args.seeds):
            for tuner in tuners:
                budget = (args.budget, args.steps)
                where, caps = tmp_path / "runs", (args.max_val, args.max_length)
                res = run_one(args.model, tuner, seed, *budget, data, where, *caps)
                best[tuner][seed] = res["losses"]
                winners[tuner].append(res["winner"])
                loss = test_loss(args.model, res["adapter"], test, tmp_path / "eval")
                test_losses[tuner].append(loss)
                print(f"seed {seed} {tuner}: best val {min(res['losses']):.4f} test {loss:.4f}")
    result: dict = {}
    for n in sorted({4, args.budget}):
        if n <= args.budget:
            result[f"N{n}"] = {t: stats([min(best[t][s][:n]) for s in best[t]]) for t in tuners}
    result["test"] = {t: stats(test_losses[t]) for t in tuners}
    result["winners"] = winners  # per seed: the training (1-based) that found the best, and its hparams
    goal = {}
    ours_arms = [t for t in tuners if t in ("agents", "hybrid", "centaur", "centaur_parzen")]
    for n_key in [k for k in result if k.startswith("N")]:
        if ours_arms and "tpe" in tuners:
            goal[n_key] = min(result[n_key][t]["mean"] for t in ours_arms) <= result[n_key]["tpe"]["mean"]
    result["meta"] = {
        "model": args.model,
        "seeds": args.seeds,
        "budget": args.budget,
        "steps_per_training": args.steps,
        "max_val_rows": args.max_val,
        "val_rows": min(len(val), args.max_val),
        "test_rows": len(test),
        "agents_backend": "rules",
        "best_agent_based_at_or_below_tpe": goal,
        "max_length": args.max_length,
        "winner_at": f"N{args.budget}",
        "command": "python bench/tune_compare.py --real",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
