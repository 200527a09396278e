"""Tuners compared on the same budget: the agent team (rules backend), random search, Optuna
TPE and the agents+TPE hybrid, each through the real `posttrain tune` pipeline.

    python bench/tune_compare.py     # smollm2-135m, 5 seeds -> bench/results/tune_compare.json
    python bench/tune_compare.py --model tiny-random --seeds 2 --budget 4 --out /tmp/t.json   # smoke run

Each (tuner, seed) runs `--budget` trainings (no SEAL stage, no QA, the judge may not stop
early) with a tiny budget per training. N4 is the best validation loss among the first 4
trainings, N8 among the first 8 (the same runs, so N4 is a prefix of N8). Every tuner trains on
the same train rows and selects on the same validation rows (`data.val_path`, the first
`--max-val` after a seeded shuffle). Every winner at the full budget is then scored once on a
held-out test split that no tuner ever saw. Means come with bootstrap 95% CIs over seeds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "tune_compare.json"
TUNERS = ("agents", "random", "tpe", "hybrid")


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
        f"agents.tuner={tuner}",
        f"agents.seed={seed}",
        f"agents.max_episodes={budget}",
        f"agents.force_min_episodes={budget}",
        "agents.qa=false",
        "seal.mode=none",
        f"trial.max_steps={steps}",
        "trial.max_length=128",
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
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=8, help="trainings per tuner and seed (N)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per training")
    parser.add_argument(
        "--max-val", type=int, default=16, help="cap on the tuners' validation rows (eval cost per trial)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    train, val, test = splits()
    best: dict[str, dict[int, list[float]]] = {t: {} for t in TUNERS}
    test_losses: dict[str, list[float]] = {t: [] for t in TUNERS}
    winners: dict[str, list[dict]] = {t: [] for t in TUNERS}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = (write_jsonl(train, tmp_path / "train.jsonl"), write_jsonl(val, tmp_path / "val.jsonl"))
        for seed in range(args.seeds):
            for tuner in TUNERS:
                res = run_one(
                    args.model, tuner, seed, args.budget, args.steps, data, tmp_path / "runs", args.max_val
                )
                best[tuner][seed] = res["losses"]
                winners[tuner].append(res["winner"])
                loss = test_loss(args.model, res["adapter"], test, tmp_path / "eval")
                test_losses[tuner].append(loss)
                print(f"seed {seed} {tuner}: best val {min(res['losses']):.4f} test {loss:.4f}")
    result: dict = {}
    for n in sorted({4, args.budget}):
        if n <= args.budget:
            result[f"N{n}"] = {t: stats([min(best[t][s][:n]) for s in best[t]]) for t in TUNERS}
    result["test"] = {t: stats(test_losses[t]) for t in TUNERS}
    result["winners"] = winners  # per seed: the training (1-based) that found the best, and its hparams
    goal = {}
    for n_key in [k for k in result if k.startswith("N")]:
        ours = min(result[n_key]["agents"]["mean"], result[n_key]["hybrid"]["mean"])
        goal[n_key] = ours <= result[n_key]["tpe"]["mean"]
    result["meta"] = {
        "model": args.model,
        "seeds": args.seeds,
        "budget": args.budget,
        "steps_per_training": args.steps,
        "max_val_rows": args.max_val,
        "val_rows": min(len(val), args.max_val),
        "test_rows": len(test),
        "agents_backend": "rules",
        "best_of_agents_hybrid_at_or_below_tpe": goal,
        "winner_at": f"N{args.budget}",
        "command": "python bench/tune_compare.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
