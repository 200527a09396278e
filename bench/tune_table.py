"""A tabular tuning benchmark: train a grid of real LoRA configurations once, store the losses.

    OMP_NUM_THREADS=1 python bench/tune_table.py     # smollm2-135m -> bench/results/tune_table.json
    python bench/tune_table.py --model tiny-random --lrs 1e-4,1e-2 --ranks 8 --batches 2 --steps 2 \\
        --out /tmp/table.json                        # smoke run

Every configuration trains from the same fresh-adapter seed for the same number of optimizer
steps on the same training rows, is scored on the tuners' validation rows and once more on a
held-out test split (the splits of `bench/tune_compare.py`). `bench/tune_compare.py --table`
then replays every tuner against this table for many seeds at the cost of a lookup.

The budget is chosen so that the learning-rate optimum lies inside the range: the JSON's
`checks.lr_optimum_inside` says whether, for every (rank, batch), some lr below the highest
beats the highest (too-high rates lose) and some lr above the lowest beats the lowest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "tune_table.json"
FIXED = {"epochs": 1, "warmup_ratio": 0.0, "lora_dropout": 0.0}


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def config_key(hp: dict) -> str:
    """The table's key of a configuration: `lr=…,lora_r=…,batch_size=…` (lr at 3 significant digits)."""
    return f"lr={hp['lr']:.3g},lora_r={int(hp['lora_r'])},batch_size={int(hp['batch_size'])}"


def lr_checks(rows: list[dict], lrs: list[float]) -> dict:
    """Per (rank, batch): the best lr, and whether it is strictly inside the grid's lr range."""
    per: dict[str, dict] = {}
    for r, b in sorted({(row["lora_r"], row["batch_size"]) for row in rows}):
        line = sorted(
            (row["lr"], row["val_loss"]) for row in rows if (row["lora_r"], row["batch_size"]) == (r, b)
        )
        best_lr = min(line, key=lambda t: t[1])[0]
        per[f"lora_r={r},batch_size={b}"] = {
            "best_lr": best_lr,
            "inside": min(lrs) < best_lr < max(lrs),
            "highest_lr_loses_by": round(line[-1][1] - min(v for _, v in line), 5),
        }
    return {
        "lr_optimum_inside": all(v["inside"] for v in per.values()),
        "too_high_lr_loses": all(v["highest_lr_loses_by"] > 0 for v in per.values()),
        "per_rank_batch": per,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--lrs", type=floats, default=floats("1e-5,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2"))
    parser.add_argument("--ranks", type=ints, default=ints("4,16"))
    parser.add_argument("--batches", type=ints, default=ints("2,4"))
    parser.add_argument(
        "--alpha",
        type=int,
        default=32,
        help="fixed lora_alpha: the LoRA scale alpha/r then couples rank and lr",
    )
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per training")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-val", type=int, default=24, help="validation rows the tuners select on")
    parser.add_argument("--max-test", type=int, default=24, help="held-out rows the winners are scored on")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch
    from tune_compare import splits  # bench/ is on sys.path when this file runs as a script

    from posttrain.models import ResidentModel, device_settings
    from posttrain.train.sft import evaluate_loss
    from posttrain.train.trials import make_train_and_eval

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    train, val, test = splits()
    val, test = val[: args.max_val], test[: args.max_test]
    resident = ResidentModel(args.model, device_settings("cpu", "float32", "sdpa", False))
    grid = list(itertools.product(args.lrs, args.ranks, args.batches))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        out_root = Path(tmp)
        train_and_eval = make_train_and_eval(
            resident,
            train,
            val,
            out_root,
            max_length=args.max_length,
            max_steps=args.steps,
            seed=0,
        )
        for i, (lr, r, b) in enumerate(grid):
            hp = {"lr": lr, "lora_r": r, "lora_alpha": args.alpha, "batch_size": b, **FIXED}
            start = time.perf_counter()
            m = train_and_eval({**hp, "trial_id": f"t{i}"})
            # resident.model still holds the adapter this trial trained: score it on the test rows.
            test_loss = evaluate_loss(
                resident.model, resident.tokenizer, test, out_root / "eval", max_length=args.max_length
            )
            row = {
                **hp,
                "val_loss": round(float(m["eval_loss"]), 5),
                "test_loss": round(float(test_loss), 5),
                "status": m["status"],
                "train_s": m["train_s"],
                "seconds": round(time.perf_counter() - start, 2),
            }
            rows.append(row)
            losses = f"val {row['val_loss']:.4f} test {row['test_loss']:.4f}"
            print(f"[{i + 1}/{len(grid)}] {config_key(hp)} {losses} ({row['seconds']:.1f}s)", flush=True)
            table_json(rows, args, (len(train), len(val), len(test)), torch.get_num_threads())
    result = table_json(rows, args, (len(train), len(val), len(test)), torch.get_num_threads())
    print(json.dumps({k: result[k] for k in ("best", "checks")}, indent=2))


def table_json(rows: list[dict], args: argparse.Namespace, sizes: tuple[int, int, int], threads: int) -> dict:
    """The table so far, written to `args.out` (after every row, so a killed run keeps its rows)."""
    best = min(rows, key=lambda row: row["val_loss"])
    result = {
        "space": {"lr": sorted(args.lrs), "lora_r": sorted(args.ranks), "batch_size": sorted(args.batches)},
        "fixed": {**FIXED, "lora_alpha": args.alpha},
        "table": {config_key(row): row for row in rows},
        "best": {"key": config_key(best), "val_loss": best["val_loss"], "test_loss": best["test_loss"]},
        "checks": lr_checks(rows, args.lrs),
        "meta": {
            "model": args.model,
            "steps_per_training": args.steps,
            "max_length": args.max_length,
            "train_rows": sizes[0],
            "val_rows": sizes[1],
            "test_rows": sizes[2],
            "configs": len(rows),
            "threads": threads,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "timing_note": (
                "trained with one torch thread on a 2-core CPU shared with other jobs: the seconds are "
                "not comparable to a quiet run; the losses are (same seeds, same rows, same steps)"
            ),
            "command": "OMP_NUM_THREADS=1 python bench/tune_table.py",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
