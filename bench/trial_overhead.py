"""Trial overhead of `posttrain tune`: the base held resident against reloading it for every
trial (seed 000's way), on the same 4-episode loop in one process run.

    python bench/trial_overhead.py      # smollm2-135m -> bench/results/trial_overhead.json
    python bench/trial_overhead.py --model tiny-random --out /tmp/o.json   # smoke run

Both runs are the real tune pipeline (rules agents, no SEAL stage, no QA), with the same
seed, data and budget, so they train the same hparams. `overhead_fraction` is the share of
the resident run's wall time spent outside the optimisation loop and evaluation (fit_s):
model loading, adapter set-up, trainer construction, tokenisation, agents, store, report.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "trial_overhead.json"


def run(
    model: str, reload_base: bool, root: Path, steps: int, episodes: int = 4, name: str | None = None
) -> tuple[float, float, list[float]]:
    from posttrain.config import TuneConfig, load_config
    from posttrain.pipelines.tune import run_tune
    from posttrain.store import Store

    name = name or ("reload" if reload_base else "resident")
    cfg = load_config(
        TuneConfig,
        overrides=[
            f"model.name={model}",
            f"agents.max_episodes={episodes}",
            f"agents.force_min_episodes={episodes}",
            "seal.mode=none",
            "agents.qa=false",
            f"trial.max_steps={steps}",
            "trial.max_length=256",
            "data.max_train=200",
            "data.max_val=24",
            f"trial.reload_base={reload_base}",
            f"run.name={name}",
            f"run.output_root={root}",
        ],
    )
    start = time.perf_counter()
    run_tune(cfg)
    wall = time.perf_counter() - start
    with Store(f"sqlite:///{root / 'posttrain.db'}") as store:
        episodes = store.list_episodes(store.find_run(name).id)
    fits = [e.metrics["fit_s"] for e in episodes]
    return wall, sum(fits), [e.metrics["eval_loss"] for e in episodes]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per trial")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(
            args.model, False, Path(tmp) / "warm", 1, episodes=1, name="warm-up"
        )  # imports, caches, allocator
        resident_s, resident_fit, resident_losses = run(args.model, False, Path(tmp) / "a", args.steps)
        reload_s, reload_fit, reload_losses = run(args.model, True, Path(tmp) / "b", args.steps)
    result = {
        "model": args.model,
        "episodes": 4,
        "steps_per_trial": args.steps,
        "resident_s": round(resident_s, 2),
        "reload_s": round(reload_s, 2),
        "speedup": round(reload_s / resident_s, 3),
        "overhead_fraction": round(1 - resident_fit / resident_s, 3),
        "reload_overhead_fraction": round(1 - reload_fit / reload_s, 3),
        "same_losses": all(abs(a - b) < 1e-4 for a, b in zip(resident_losses, reload_losses, strict=True)),
        "command": "python bench/trial_overhead.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
