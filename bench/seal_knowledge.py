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
paper's setup scaled down to fit ~25 minutes of this 2-core CPU with smollm2-135m: 6 training
and 6 held-out passages, 2 ReST-EM rounds of 3 self-edits per passage, 1 inner run each
(paper: 5 self-edits x 3 runs), 3 inner epochs (paper: 10), self-edits of at most 128 tokens;
LoRA r=32, alpha=64, lr 1e-3, batch 1 as in the paper. Inner steps dominate the budget
(0.6-1.1 s each for smollm2-135m on one loaded core, bench/seal_inner.py): about 1,500 of
them, 36 self-edits x ~24 steps in training and the rest in the held-out table (~300 in the
three pooled continued-pretraining updates). `--train-passages 12 --eval-passages 12`
narrows the CIs at about twice the time.

    python bench/seal_knowledge.py                # smollm2-135m, writes bench/results/seal_knowledge.json
    python bench/seal_knowledge.py --model tiny-random --train-passages 3 --eval-passages 2 \\
        --rounds 1 --samples 2 --epochs 1 --out /tmp/x.json                   # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "seal_knowledge.json"
CONDITIONS = ("base", "passage_only", "base_self_edits", "seal_self_edits")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--train-passages", type=int, default=6)
    p.add_argument("--eval-passages", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2, help="ReST-EM outer iterations.")
    p.add_argument("--samples", type=int, default=3, help="Self-edits per passage per round.")
    p.add_argument("--runs", type=int, default=1, help="Inner runs per self-edit.")
    p.add_argument("--epochs", type=float, default=3.0, help="Inner epochs.")
    p.add_argument("--self-edit-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the box has 2 shared cores).")
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
        f"run.output_root={root}",
        "run.name=seal_knowledge",
    ]


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
            "setup": {
                "train_passages": args.train_passages,
                "eval_passages": args.eval_passages,
                "rounds": args.rounds,
                "self_edits_per_passage": args.samples,
                "inner_runs": args.runs,
                "inner_epochs": args.epochs,
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "examples"}, indent=2))
    return out


if __name__ == "__main__":
    main(make_parser().parse_args())
