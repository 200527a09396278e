"""Free vs grammar-constrained (vs relevance-gated) decoding of tool turns, same adapters and requests.

Constrained decoding (`posttrain eval --constrained`, `toolcall.tool_turn_grammar`) keeps a turn
to `Thought:` + a call of an offered tool with schema-valid arguments, or a final answer; whether to
call stays the model's. This bench scores the adapters of one `bench/align_quality.py` tool_use run
both ways on the requests its headline used (`evaluation.items` of the held-out families from
`evaluation.seed`), so the difference is the decoding alone. The decision to build constrained
decoding was made on the validation families (`--split validation`, a different seed); the
held-out families are scored once with it, never tuned on. `gated` adds the relevance gate
(`toolcall.relevance`, its threshold calibrated for each model on the validation families).

    python bench/tool_decoding.py --run RUN_DIR                      # base, sft: free and constrained
    python bench/tool_decoding.py --run RUN_DIR --split validation --seed 2000 --items 120
    python bench/tool_decoding.py --run RUN_DIR --split seen --models sft   # training families, new requests

Writes "decoding" in bench/results/align_quality.json: per split, per model, per decoding, the
user-eval figures with n and CI, plus seconds and threads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "align_quality.json"
# --split: (the key it is recorded under, the pool split its requests come from)
SPLITS = {
    "heldout": ("unseen_families", "heldout"),
    "validation": ("validation_families", "validation"),
    "seen": ("seen_families", "train"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="an align tool_use run directory")
    p.add_argument("--split", choices=tuple(SPLITS), default="heldout")
    p.add_argument("--items", type=int, default=None, help="default: the run's evaluation.items")
    p.add_argument("--seed", type=int, default=None, help="default: the run's evaluation.seed")
    p.add_argument("--models", default="base,sft", help="base, sft (sft_adapter) and/or dpo (adapter)")
    p.add_argument(
        "--decodings",
        default="free,constrained",
        help="free, constrained and/or gated (constrained + the relevance gate, calibrated per model)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()

    import yaml

    from posttrain.inference import generator
    from posttrain.models import load_for_inference
    from posttrain.tasks.tool_use.pool_align import calibrated_gate, evaluate_pool
    from posttrain.tasks.tool_use.pool_rows import pool_rows

    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load((a.run / "config.yaml").read_text())
    items = a.items or cfg["evaluation"]["items"]
    seed = a.seed if a.seed is not None else cfg["evaluation"]["seed"]
    key, pool_split = SPLITS[a.split]
    rows = pool_rows(items, seed, pool_split)
    adapters = {"base": None, "sft": a.run / "sft_adapter", "dpo": a.run / "adapter"}
    out: dict[str, Any] = {}
    for name in a.models.split(","):
        llm, tok = load_for_inference(cfg["model"]["name"], adapters[name])
        generate = generator(llm, tok, cfg["evaluation"]["max_new_tokens"], cfg["evaluation"]["batch_size"])
        for decoding in a.decodings.split(","):
            start = time.perf_counter()
            gate, calibration = calibrated_gate(generate.channel) if decoding == "gated" else (None, None)
            figs, _ = evaluate_pool(generate, rows, None, decoding != "free", gate)
            out.setdefault(name, {})[decoding] = {k: f.as_dict() for k, f in figs.items()}
            out[name][decoding]["seconds"] = round(time.perf_counter() - start)
            if calibration is not None:
                out[name][decoding]["relevance_calibration"] = calibration
            print(name, decoding, {k: str(f) for k, f in figs.items()}, flush=True)
    entry = {
        "run": str(a.run),
        "split": key,
        "items": items,
        "seed": seed,
        "torch_threads": a.threads,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": (
            f"python bench/tool_decoding.py --run {a.run} --split {a.split} --items {items} --seed {seed}"
            f" --models {a.models} --decodings {a.decodings}"
        ),
        "models": out,
    }
    data = json.loads(a.out.read_text()) if a.out.exists() else {}
    data.setdefault("decoding", {})[key] = entry
    a.out.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
