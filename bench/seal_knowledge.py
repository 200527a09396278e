"""SEAL knowledge incorporation on held-out passages: base, passage only, base vs SEAL self-edits.

Runs `posttrain seal` (preset knowledge_incorporation_squad) scaled to a laptop CPU, then
copies its held-out results table. Every condition answers the passages' questions WITHOUT
the passage; F1/EM are SQuAD-normalised, the CI is a 95% bootstrap over questions:

- base: the model as is;
- passage_only: after a LoRA update on the passage alone;
- base_self_edits: after an update on the passage plus the base model's self-edit;
- seal_self_edits: the same with the generator after ReST-EM;
- cpt_*: the continued-pretraining variant, all held-out passages' rows in one update.

Data: offline fictional passages about invented entities (the base cannot know them). The
paper's setup scaled down for a laptop CPU with smollm2-135m: 4 training and 15 held-out
passages (>= 50 questions), 1 ReST-EM round of 3 self-edits per passage, 1 inner run each
(paper: 5 self-edits x 3 runs), self-edits of at most 128 tokens; the paper's inner update:
10 epochs, LoRA r=32, alpha=64, lr 1e-3, batch 1. At 3 inner epochs (the first release's
budget) no condition implanted anything (F1 0.00-0.01); bench/seal_implant.py isolates the
update and found the passage alone recalled at 10 epochs (F1 0.04, CI above 0) and one fact per
sequence more so. Inner steps dominate the budget (0.6-1.1 s each on one core,
bench/seal_inner.py); `--no-cpt` skips the three pooled continued-pretraining updates, the
largest of them.

    python bench/seal_knowledge.py                # smollm2-135m, writes bench/results/seal_knowledge.json
    python bench/seal_knowledge.py --model tiny-random --train-passages 3 --eval-passages 2 \\
        --rounds 1 --samples 2 --epochs 1 --out /tmp/x.json                   # smoke run
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

RESULTS = Path(__file__).parent / "results" / "seal_knowledge.json"
CONDITIONS = ("base", "passage_only", "base_self_edits", "seal_self_edits")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--train-passages", type=int, default=4)
    p.add_argument("--eval-passages", type=int, default=15)
    p.add_argument("--rounds", type=int, default=1, help="ReST-EM outer iterations.")
    p.add_argument("--samples", type=int, default=3, help="Self-edits per passage per round.")
    p.add_argument("--runs", type=int, default=1, help="Inner runs per self-edit.")
    p.add_argument(
        "--epochs", type=float, default=10.0, help="Inner epochs (paper: 10; 3 implanted nothing)."
    )
    p.add_argument("--self-edit-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the box has 2 shared cores).")
    p.add_argument(
        "--no-cpt", action="store_true", help="Skip the cpt_* rows (three pooled updates, ~40%% of the time)."
    )
    p.add_argument("--run-dir", type=Path, default=None, help="Keep the run here (default: a temp dir).")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def overrides(args: argparse.Namespace, root: Path) -> list[str]:
    return [
        f"model.name={args.model}",
        f"seed={args.seed}",
        f"max_outer_iterations={args.rounds}",
        f"samples_per_iteration={args.samples}",
        f"data_config.max_samples={args.train_passages + args.eval_passages}",
        f"data_config.n_eval={args.eval_passages}",
        f"inner.epochs={args.epochs}",
        f"inner.runs={args.runs}",
        f"generation.max_new_tokens={args.self_edit_tokens}",
        "restem.contexts_per_iteration=null",
        f"evaluation.continued_pretraining={'false' if args.no_cpt else 'true'}",
        f"run.output_root={root}",
        "run.name=seal_knowledge",
    ]


def _science_args(argv: list[str]) -> list[str]:
    """The arguments that change the result: where files go (--out, --run-dir) does not."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--out", "--run-dir"):
            skip = True
        elif not a.startswith(("--out=", "--run-dir=")):
            out.append(a)
    return out


def main(args: argparse.Namespace) -> dict:
    from posttrain.config import SEALConfig, load_config
    from posttrain.pipelines.seal import run_seal

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.run_dir or Path(tmp)
        cfg = load_config(SEALConfig, preset="knowledge_incorporation_squad", overrides=overrides(args, root))
        start = time.perf_counter()
        summary = run_seal(cfg)
        runtime = time.perf_counter() - start
        run = Path(summary["run_dir"])
        results = json.loads((run / "results.json").read_text())
        iterations = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    out: dict = {
        name: {k: results[name][k] for k in ("f1", "em", "ci")}
        for name in results["order"]
        if name in results
    }
    f1 = [out[c]["f1"] for c in CONDITIONS]
    out.update(
        {
            "n_passages": results["n_passages"],
            "n_questions": results["n_questions"],
            "paper_ordering_holds": all(a < b for a, b in zip(f1, f1[1:], strict=False)),
            "model": args.model,
            "device": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
            "runtime_s": round(runtime, 1),
            "command": "python bench/seal_knowledge.py " + shlex.join(_science_args(sys.argv[1:])),
            "setup": {
                "train_passages": args.train_passages,
                "eval_passages": args.eval_passages,
                "rounds": args.rounds,
                "self_edits_per_passage": args.samples,
                "inner_runs": args.runs,
                "inner_epochs": args.epochs,
                "continued_pretraining": not args.no_cpt,
                "self_edit_tokens": args.self_edit_tokens,
                "seed": args.seed,
                "lora": "r=32 alpha=64 lr=1e-3 batch=1",
            },
            "training": [
                {
                    k: row.get(k)
                    for k in ("iteration", "reward_mean", "success_rate", "improvement_mean", "n_kept")
                }
                for row in iterations
            ],
            "examples": results.get("examples", {}),
        }
    )
    # Records of other runs (implant_variants, bench/seal_implant.py) are kept beside the new table.
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    out |= {k: v for k, v in earlier.items() if k == "implant_variants"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "examples"}, indent=2))
    return out


if __name__ == "__main__":
    main(make_parser().parse_args())
