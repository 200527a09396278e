"""Record the tool_use variants tried on the way to the align_quality figures, beside them.

Each variant is a finished `posttrain align --task tool_use` run (an experiment at a smaller
budget, or the bench's own run); this reads its config and eval.json and writes one entry per
run under "variants" in bench/results/align_quality.json: what differed, the unseen-family and
seen-family figures of each model it evaluated, the gate's decision, and its runtime. Field names
say "unseen"/"seen" so nothing here is mistaken for the bench's own table.

    python bench/align_variants.py runs/e1 runs/e2 --note e1="150 pool rows, 1 epoch" ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

RESULTS = Path(__file__).parent / "results" / "align_quality.json"
FIGURES = (
    "ast_accuracy",
    "must_call_rate",
    "irrelevance_accuracy",
    "hallucinated_function_rate",
    "format_validity",
)
SPLITS = {"unseen_families": "unseen", "seen_families": "seen"}


def variant(run: Path, note: str) -> dict[str, Any]:
    """One run's settings and figures (value, n, CI per figure, per model and split)."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    evals = json.loads((run / "eval.json").read_text())["splits"]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    out: dict[str, Any] = {
        "run": run.name,
        "note": note,
        "settings": {
            "pool_rows": cfg["data"].get("pool_rows"),
            "react_train_rows": cfg["data"]["train_rows"],
            "sft": {k: cfg["sft"][k] for k in ("learning_rate", "batch_size", "epochs", "max_steps")},
            "dpo": {"loss_type": cfg["dpo"]["loss_type"], "beta": cfg["dpo"]["beta"], **cfg["dpo"]["train"]},
            "pairs": cfg["pairs"],
            "items": cfg["evaluation"].get("items"),
        },
        "gate": summary.get("gate"),
        "runtime_s": summary.get("runtime_s"),
    }
    for split, short in SPLITS.items():
        for model, figs in evals.get(split, {}).items():
            out[f"{short}_{model}"] = {
                name: {"value": figs[name]["value"], "n": figs[name]["n"], "ci": figs[name]["ci"]}
                for name in FIGURES
                if name in figs
            }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished align run folders")
    p.add_argument("--note", action="append", default=[], help="RUN=what this variant changed")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    notes = dict(n.split("=", 1) for n in args.note)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    known = {v["run"]: i for i, v in enumerate(result.get("variants", []))}
    variants = result.setdefault("variants", [])
    for run in args.runs:
        entry = variant(run, notes.get(run.name, ""))
        if run.name in known:
            variants[known[run.name]] = entry
        else:
            variants.append(entry)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(variants)} variants in {args.out}")


if __name__ == "__main__":
    main()
