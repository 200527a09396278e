"""SEAL inner loop: one self-edit evaluation (adapt + eval), ours against the official way, one process.

The work is identical on both sides: the same passage and self-edit (each line a training
sequence, plus the passage), the same LoRA (r=32, alpha=64 on all linear layers), lr 1e-3,
`--epochs` epochs at batch 1, unpacked, the same seed; then the passage's questions are
asked without it (greedy, batched) and graded by F1. The training losses agree step for
step (`max_loss_diff` in the output), so only the machinery differs:

- ours: one resident base with one LoRA adapter, reset in place before every self-edit
  (`ResidentModel.reset_adapter`) and trained by the lean loop (posttrain.train.lean);
- naive (SEAL's official code): a new `get_peft_model` wrap and a new HF/TRL SFTTrainer for
  every self-edit, the adapter unloaded afterwards.

Each side first runs one untimed self-edit (warm-up), then `--edits` timed ones; the times
are means per self-edit, ours including the one-time adapter creation.

    python bench/seal_inner.py                    # smollm2-135m, writes bench/results/seal_inner.json
    python bench/seal_inner.py --model tiny-random --edits 1 --epochs 1 --out /tmp/x.json   # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "seal_inner.json"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--edits", type=int, default=3, help="Timed self-edits per side.")
    p.add_argument("--epochs", type=float, default=10.0, help="Inner epochs (paper: 10).")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the box has 2 shared cores).")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def _work(tokenizer):
    """The passage, its self-edit's training rows, and the hyperparameters both sides use."""
    from posttrain.tasks import knowledge

    passage = knowledge.generate_fictional_passages(1, seed=0)[0]
    # A fixed self-edit: the passage's sentences restated one per line (what a generator writes).
    lines = [f"It is a fact that {s.strip()}" for s in passage.context.split(". ") if s.strip()]
    rows = knowledge.sequences_to_rows(knowledge.self_edit_to_sequences(passage, "\n".join(lines)))
    return passage, rows


def _hp(epochs: float, seed: int):
    from posttrain.train.args import SFTArgs

    return SFTArgs(
        learning_rate=1e-3,
        batch_size=1,
        epochs=epochs,
        warmup_ratio=0.0,
        scheduler="linear",
        packing=False,
        seed=seed,
        max_length=256,
        logging_steps=1,
        report_to="none",
    )


def _evaluate(model, tokenizer, passage) -> float:
    from posttrain.inference import generate_batch
    from posttrain.tasks import knowledge

    def predict(prompts):
        return generate_batch(model, tokenizer, prompts, max_new_tokens=24, batch_size=len(prompts))

    return knowledge.evaluate(predict, [passage])["f1"]


def run_ours(resident, passage, rows, args) -> tuple[dict, object]:
    """Returns the timings and the plain base (the adapter unloaded) for the naive side."""
    from posttrain.train.restem import InnerLoop

    t0 = time.perf_counter()
    inner = InnerLoop(resident, r=32, alpha=64, dropout=0.0, hp=_hp(args.epochs, 0), adapter_seed=0)
    setup_s = time.perf_counter() - t0
    inner.adapt(rows, seed=0)  # warm-up, untimed
    _evaluate(inner.model, resident.tokenizer, passage)
    f1s, losses, train_s = [], [], 0.0
    start = time.perf_counter()
    for i in range(1, args.edits + 1):
        t0 = time.perf_counter()
        result = inner.adapt(rows, seed=i)  # resets the adapter in place, then trains
        train_s += time.perf_counter() - t0
        f1s.append(_evaluate(inner.model, resident.tokenizer, passage))
        losses.append([loss for _, loss in result.losses])
    total = time.perf_counter() - start + setup_s
    inner.reset()
    timings = {"per_edit_s": total / args.edits, "train_s": train_s / args.edits, "f1": f1s, "losses": losses}
    return timings, inner.model.unload()


def run_naive(base, tokenizer, passage, rows, args) -> dict:
    from peft import get_peft_model

    from posttrain.models import lora_config
    from posttrain.train.sft import sft_train

    f1s, losses, train_s, setup_s = [], [], 0.0, 0.0
    start = None
    for i in range(args.edits + 1):
        if i == 1:
            start = time.perf_counter()
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same initial A as ours
            model = get_peft_model(base, lora_config(32, 64, 0.0))
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = sft_train(
                model,
                tokenizer,
                rows,
                None,
                Path(tmp),
                _hp(args.epochs, i),
                checkpoints=False,
                eval_before=False,
            )
        t2 = time.perf_counter()
        f1s.append(_evaluate(model, tokenizer, passage))
        base = model.unload()
        if i > 0:
            setup_s += t1 - t0
            train_s += t2 - t1
            losses.append([loss for _, loss in result.losses])
    total = time.perf_counter() - start
    return {
        "per_edit_s": total / args.edits,
        "train_s": train_s / args.edits,
        "wrap_s": setup_s / args.edits,
        "f1": f1s[1:],
        "losses": losses,
    }


def main(args: argparse.Namespace) -> dict:
    from posttrain.models import ResidentModel, device_settings

    torch.set_num_threads(args.threads)
    resident = ResidentModel(args.model, device_settings())
    passage, rows = _work(resident.tokenizer)
    ours, base = run_ours(resident, passage, rows, args)
    naive = run_naive(base, resident.tokenizer, passage, rows, args)
    diff = max(
        (
            abs(a - b)
            for la, lb in zip(ours["losses"], naive["losses"], strict=True)
            for a, b in zip(la, lb, strict=True)
        ),
        default=0.0,
    )
    out = {
        "model": args.model,
        "device": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
        "edits": args.edits,
        "epochs": args.epochs,
        "rows_per_edit": len(rows),
        "steps_per_edit": len(ours["losses"][0]) if ours["losses"] else 0,
        "ours_s": round(ours["per_edit_s"], 3),
        "naive_s": round(naive["per_edit_s"], 3),
        "speedup": round(naive["per_edit_s"] / ours["per_edit_s"], 2),
        "ours_train_s": round(ours["train_s"], 3),
        "naive_train_s": round(naive["train_s"], 3),
        "naive_wrap_s": round(naive["wrap_s"], 3),
        "max_loss_diff": diff,
        "ours_f1": ours["f1"],
        "naive_f1": naive["f1"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(make_parser().parse_args())
