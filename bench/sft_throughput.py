"""SFT throughput: posttrain's SFT against a plain TRL SFTTrainer script, in one process.

Both train the same LoRA (r=16 on all linear layers) on the same model and the same rows of
the bundled Alpaca sample, with the same batch size, for the same number of optimizer steps.
Throughput counts real (non-pad) tokens per second of training time after the first
`--warmup` steps. The plain script is what a user would write from TRL's docs: SFTTrainer
with its defaults plus the LoRA config. The contenders alternate (ours, TRL, ours, TRL, ...)
for `--rounds` rounds and the figures are medians, with the per-round ratios beside them: one
pass of each swings 1.0x-1.7x on a 2-core host.

    python bench/sft_throughput.py                 # smollm2-135m, writes bench/results/sft_throughput.json
    python bench/sft_throughput.py --model tiny-random --steps 6 --out /tmp/x.json   # smoke run

utilisation = 4 x (trainable + frozen params) x ours_tokens_per_s / matmul_gflops: forward is
2 FLOPs per parameter per token and backward through frozen weights another 2, so this is the
share of the machine's measured fp32 matmul ceiling that the training loop turns into work.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from gpu_throughput import matmul_tflops  # bench/ is on sys.path when a bench script runs
from transformers import TrainerCallback

RESULTS = Path(__file__).parent / "results" / "sft_throughput.json"


def matmul_gflops(seconds: float = 3.0) -> float:
    """Best fp32 GEMM rate on the CPU: the ceiling the model's matmuls can reach."""
    return 1000 * matmul_tflops(torch.float32, "cpu", seconds)


class StepClock(TrainerCallback):
    """Tokens and wall time at every optimizer step, read from the trainer's own token count."""

    def __init__(self) -> None:
        self.trainer = None
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kw) -> None:
        self.marks.append((time.perf_counter(), int(self.trainer._total_train_tokens)))

    def rate(self, warmup: int) -> float:
        (t0, n0), (t1, n1) = self.marks[warmup - 1], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


def run_ours(spec: str, rows: list[dict], steps: int, batch: int, out: Path) -> tuple[StepClock, int, int]:
    from posttrain.models import ResidentModel, parameter_count
    from posttrain.train.args import SFTArgs
    from posttrain.train.sft import build_sft_trainer

    resident = ResidentModel(spec)
    model = resident.fresh_adapter(16, 32, 0.0, seed=0)
    hp = SFTArgs(max_steps=steps, batch_size=batch, save_steps=10_000, max_length=256, warmup_ratio=0.0)
    trainer, _ = build_sft_trainer(model, resident.tokenizer, rows, None, out, hp, checkpoints=False)
    clock = StepClock()
    clock.trainer = trainer
    trainer.add_callback(clock)
    trainer.train()
    return (clock, *parameter_count(model))


def run_plain_trl(spec: str, rows: list[dict], steps: int, batch: int, out: Path) -> StepClock:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from posttrain.models import resolve

    path = resolve(spec)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    peft = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        max_steps=steps,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=0,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=peft
    )
    clock = StepClock()
    clock.trainer = trainer
    trainer.add_callback(clock)
    trainer.train()
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per contender")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the rate")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ours, TRL) per contender")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from posttrain.tasks.instructions import load_sft_dataset, sample_path

    rows, _ = load_sft_dataset(sample_path("alpaca"), val_fraction=0.05, seed=0)
    # The ceiling is measured before, between and after the contenders and the highest reading
    # is used: on a shared machine a single reading can land in a slow moment and flatter us.
    ceilings = [matmul_gflops()]
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            ours, trainable, total = run_ours(
                args.model, rows, args.steps, args.batch_size, Path(tmp) / f"ours{i}"
            )
            plain = run_plain_trl(args.model, rows, args.steps, args.batch_size, Path(tmp) / f"trl{i}")
            o, t = ours.rate(args.warmup), plain.rate(args.warmup)
            rounds.append(
                {"ours_tokens_per_s": round(o, 1), "trl_tokens_per_s": round(t, 1), "ratio": round(o / t, 3)}
            )
            ceilings.append(matmul_gflops())
    ceiling = max(ceilings)
    ours_tps = statistics.median(r["ours_tokens_per_s"] for r in rounds)
    trl_tps = statistics.median(r["trl_tokens_per_s"] for r in rounds)
    ratios = [r["ratio"] for r in rounds]
    result = {
        "model": args.model,
        "device": "cuda"
        if torch.cuda.is_available()
        else f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "ours_tokens_per_s": round(ours_tps, 1),
        "trl_tokens_per_s": round(trl_tps, 1),
        "ratio_vs_trl": round(statistics.median(ratios), 3),
        "ratio_spread": [min(ratios), max(ratios)],
        "rounds": rounds,
        "matmul_gflops": round(ceiling, 1),
        "matmul_gflops_readings": [round(c, 1) for c in ceilings],
        "params_trainable": trainable,
        "params_total": total,
        "utilisation": round(4 * total * ours_tps / (ceiling * 1e9), 3),
        "command": "python bench/sft_throughput.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
