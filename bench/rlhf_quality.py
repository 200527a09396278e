"""RLHF quality: does online RL beat its SFT starting point on prompts it never saw?

Runs `posttrain rlhf` (SFT -> reward model -> GRPO with ADLF rewards and dynamic KL) with
the `rlhf` preset and reports, by the EXTERNAL reward model (trained on the training split's
meta_eval_score pairs, normalised to (0, 1)):

- sft_reward_mean / rl_reward_mean: mean score of completions sampled from the SFT model
  (the KL reference) and from the RL policy, `eval_samples` per held-out prompt, same seed;
- reward_gain and reward_gain_ci: mean over held-out prompts of (RL - SFT) and its 95%
  percentile-bootstrap CI over prompts (2000 resamples);
- kl_target, kl_mean_after_warmup (mean per-token KL after `kl_warmup_steps` RL steps),
  kl_within_band (within +-50% of the target).

Held-out prompts come from `split_by_prompt` (every answer to a held-out question stays
out of SFT, reward-model and RL training), so the gain is not memorisation; nothing is
tuned on them. The reward model's own check on a real model is `rm_heldout_accuracy`: the
share of held-out answer pairs (same prompt, scores >= 1 apart) it ranks the right way.

    python bench/rlhf_quality.py                  # smollm2-135m: writes bench/results/rlhf_quality.json
    python bench/rlhf_quality.py --model tiny-random --preset rlhf_test --threads 1 --out /tmp/x.json  # smoke
    python bench/rlhf_quality.py --variant kl01 --set rl.kl_target=0.01   # recorded under "variants"

A run with `--variant NAME` is an experiment: its figures go to the `variants` list of the
results file (replacing an earlier variant of that name) and the headline figures stay as they
are; a plain run replaces the headline and keeps the variants. A variant may reuse a finished
run's SFT adapter and reward model (`--set sft.enabled=false --set sft.adapter=RUN/sft_adapter
--set reward_model.path=RUN/reward_model`), so RL settings compare on the same starting point.

The `rlhf` preset is sized for ~22-25 minutes on the 2-core CPU (per-step times in the
preset's header). On a machine shared with other jobs, `--threads 1` is faster than two
threads fighting over two cores. Bigger budgets: `--set rl.max_steps=60 --set sft.max_steps=8`.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "rlhf_quality.json"
KEYS = (
    "sft_reward_mean",
    "rl_reward_mean",
    "reward_gain",
    "reward_gain_ci",
    "kl_target",
    "kl_mean_after_warmup",
    "kl_within_band",
)
CONTEXT = (
    "eval_prompts",
    "eval_samples",
    "train_prompts",
    "rm_pairs",
    "rm_train_accuracy",
    "rm_heldout_pairs",
    "rm_heldout_accuracy",
    "sft_steps",
    "rm_steps",
    "rl_steps",
    "kl_warmup_steps",
    "beta_final",
    "rl_reward_first_quarter",
    "rl_reward_last_quarter",
    "sft_runtime_s",
    "rm_runtime_s",
    "rl_runtime_s",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="Model spec (default smollm2-135m).")
    parser.add_argument("--preset", default="rlhf", help="posttrain preset (default rlhf).")
    parser.add_argument("--algo", default="grpo", choices=["grpo", "rloo"])
    parser.add_argument("--set", action="append", default=[], help="Extra config override key=value.")
    parser.add_argument("--runs", default=None, help="Keep the run directory here (default: a temp dir).")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default).")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where to write the JSON.")
    parser.add_argument("--variant", default=None, help="Record as this named variant, not the headline.")
    parser.add_argument("--note", default="", help="With --variant: what the variant changes and why.")
    return parser


def main(args: argparse.Namespace) -> dict:
    from posttrain.config import RLHF_ALIASES, RLHFConfig, load_config, rename_overrides
    from posttrain.pipelines.rlhf import run_rlhf

    if args.threads:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="rlhf_quality."))
    flags = {
        "model": {"name": args.model},
        "sft": {"enabled": True},
        "rl": {"enabled": True, "algo": args.algo, "dynamic_kl": True},
        "run": {"output_root": str(runs), "name": f"rlhf_quality-{time.strftime('%Y%m%d-%H%M%S')}"},
    }
    overrides = rename_overrides(args.set, RLHF_ALIASES)
    cfg = load_config(RLHFConfig, preset=args.preset, overrides=overrides, extra=flags)
    start = time.perf_counter()
    summary = run_rlhf(cfg)
    wall = time.perf_counter() - start
    if summary["status"] != "completed":
        raise SystemExit(f"the run ended {summary['status']}: {summary.get('error')}")
    result = {key: summary.get(key) for key in KEYS}
    lo = (result["reward_gain_ci"] or [None])[0]
    result["goals"] = {
        "reward_gain_ci_above_zero": lo is not None and lo > 0,
        "kl_within_band": bool(result["kl_within_band"]),
    }
    result.update({key: summary.get(key) for key in CONTEXT})
    result.update(
        model=args.model,
        algo=args.algo,
        preset=args.preset,
        overrides=args.set,
        device=summary.get("device"),
        torch_threads=torch.get_num_threads(),
        machine=f"{platform.machine()} {platform.processor() or platform.system()}",
        wall_s=round(wall, 1),
        run_dir=summary.get("run_dir"),
        command=" ".join(["python", "bench/rlhf_quality.py", *map(shlex.quote, sys.argv[1:])]),
    )
    record(args.out, result, args.variant, args.note)
    return result


def record(out: Path, result: dict, variant: str | None, note: str = "") -> None:
    """Write `result` as the headline of `out` (keeping its variants) or, named, as one variant."""
    old = json.loads(out.read_text()) if out.exists() else {}
    if variant is None:
        merged = {**result, "variants": old.get("variants", [])}
    else:
        others = [v for v in old.get("variants", []) if v.get("variant") != variant]
        merged = {**old, "variants": [*others, {"variant": variant, "note": note, **result}]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=2) + "\n")


if __name__ == "__main__":
    parsed = make_parser().parse_args()
    out = main(parsed)
    print(json.dumps({k: out[k] for k in (*KEYS, "goals", "wall_s")}, indent=2))
    print(f"command: {out['command']}")
    print(f"wrote {parsed.out}")
