"""Training throughput and MFU of posttrain's LoRA SFT and DPO on the GPU path (and on CPU at a
tiny size, so the script itself is always checked).

    python bench/gpu_throughput.py --size 1b     # on a GPU: random-init Llama-3.2-1B shape, bf16
    python bench/gpu_throughput.py --size 8b     # Llama-3.1-8B shape (needs ~40 GB of GPU memory)
    python bench/gpu_throughput.py --model HUB_ID_OR_DIR   # real weights, where you have them
    python bench/gpu_throughput.py               # no GPU: --size tiny on CPU, fp32

Sizes build a random-initialised Llama of that shape (the tokenizer is SmolLM2's, so the
vocabulary is 49,152 and the parameter count is printed, not assumed): the speed of a training
step does not depend on what the weights say, and no hub access is needed. Both SFT and DPO go
through posttrain's own trainers (`build_sft_trainer`, `dpo_train`) with the device settings
`posttrain doctor` reports (bf16 + flash-attention-2 or SDPA on CUDA; `--kernels` adds hub
kernels through `use_kernels`, `--gradient-checkpointing` trades speed for memory).

Tokens are the trainers' own counts of non-pad tokens (SFT: packed rows; DPO: chosen and
rejected sequences). MFU divides the model FLOPs by the peak: LoRA training does a forward
(2 FLOPs per parameter per token) and a backward through the frozen weights (another 2), and
DPO adds the reference forward with the adapter disabled (2 more), so 4·P (SFT) and 6·P (DPO)
per token, with P the non-embedding parameters (the usual MFU convention; posttrain's SFT loss
runs the LM head only where there are labels, so counting it at every token would flatter us).
The peak is the GPU's dense bf16 figure from PEAK_TFLOPS when the GPU is known,
else a measured GEMM ceiling (always measured on CPU). Results go to
bench/results/gpu_throughput.json keyed by the device, so a CPU run never overwrites a GPU one.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

RESULTS = Path(__file__).parent / "results" / "gpu_throughput.json"

# Llama shapes: hidden, intermediate, layers, attention heads, key/value heads.
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (256, 688, 4, 4, 2),
    "0.5b": (896, 4864, 24, 14, 2),  # Qwen2.5-0.5B's shape
    "1b": (2048, 8192, 16, 32, 8),  # Llama-3.2-1B
    "3b": (3072, 8192, 28, 24, 8),  # Llama-3.2-3B
    "8b": (4096, 14336, 32, 32, 8),  # Llama-3.1-8B
}
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


class TokenClock(TrainerCallback):
    """Wall time and the trainer's cumulative token count at every logged step (logging_steps=1)."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if logs and "num_tokens" in logs and "loss" in logs:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), int(logs["num_tokens"])))

    def rate(self, warmup: int) -> float:
        if len(self.marks) <= warmup:
            raise SystemExit(f"only {len(self.marks)} logged steps; raise --steps above --warmup")
        (t0, n0), (t1, n1) = self.marks[warmup - 1], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


def matmul_tflops(dtype: torch.dtype, device: str, seconds: float = 2.0) -> float:
    """Best square-GEMM rate: the ceiling where no data-sheet peak is known (always on CPU)."""
    best = 0.0
    for n in (1024, 2048, 4096) if device == "cuda" else (512, 1024, 2048):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            torch.mm(a, b)
            reps += 1
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e12)
    return best


def peak(settings: Any) -> tuple[float, str]:
    if settings.device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        for key, tflops in PEAK_TFLOPS.items():
            if key in name:
                return tflops, f"{name} data sheet, dense bf16"
    measured = matmul_tflops(settings.dtype, "cuda" if settings.device.startswith("cuda") else "cpu")
    return measured, f"measured {str(settings.dtype).removeprefix('torch.')} GEMM"


def build_model(size: str | None, spec: str | None, settings: Any) -> tuple[Any, Any, str]:
    """(model, tokenizer, description); random weights of `size`'s shape, or `spec` as given."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from posttrain.models import load_model, load_tokenizer

    if spec:
        model, tok = load_model(spec, settings)
        return model, tok, spec
    tok = load_tokenizer("tiny-random")  # SmolLM2's tokenizer, offline
    hidden, inter, layers, heads, kv = SIZES[size or "tiny"]
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
    )
    config._attn_implementation = settings.attn_implementation
    torch.manual_seed(0)
    with torch.device(settings.device):
        model = LlamaForCausalLM(config).to(settings.dtype)
    if settings.use_kernels:
        model.set_use_kernels(True)
    return model, tok, f"random-init Llama, {size} shape"


def fresh_lora(model: Any, r: int) -> Any:
    from peft import get_peft_model

    from posttrain.models import lora_config

    return get_peft_model(model, lora_config(r, 2 * r, 0.0))


def _timing_hparams(args: argparse.Namespace) -> dict[str, Any]:
    """The settings SFT and DPO share here: the command's size, no warm-up ramp, no checkpoints."""
    return {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "warmup_ratio": 0.0,
        "save_steps": 10_000,
        "gradient_checkpointing": args.gradient_checkpointing,
    }


def run_sft(model: Any, tok: Any, args: argparse.Namespace, out: Path) -> float:
    from posttrain.tasks.instructions import load_sft_dataset, sample_path
    from posttrain.train.args import SFTArgs
    from posttrain.train.sft import build_sft_trainer

    rows, _ = load_sft_dataset(sample_path("alpaca"), val_fraction=0.05, seed=0)
    hp = SFTArgs(**_timing_hparams(args))
    trainer, _ = build_sft_trainer(model, tok, rows, None, out, hp, checkpoints=False)
    clock = TokenClock()
    trainer.add_callback(clock)
    trainer.train()
    return clock.rate(args.warmup)


def run_dpo(model: Any, tok: Any, args: argparse.Namespace, out: Path) -> float:
    from posttrain.tasks.instructions import load_preference_dataset, sample_path
    from posttrain.train.args import DPOArgs
    from posttrain.train.dpo import dpo_train

    rows, _ = load_preference_dataset(sample_path("preference"), val_fraction=0.05, seed=0)
    hp = DPOArgs(**_timing_hparams(args))
    clock = TokenClock()
    result = dpo_train(model, tok, rows, None, out, hp, checkpoints=False, callbacks=[clock])
    if result.status != "completed":
        raise SystemExit(f"DPO did not complete: {result.error}")
    return clock.rate(args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), help="random-init Llama of this shape")
    parser.add_argument("--model", help="a model spec instead of --size (hub id, local dir, smollm2-135m)")
    parser.add_argument("--steps", type=int, default=None, help="steps per job (12 CPU, 30 GPU)")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the rate")
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 on CPU, 8 on GPU")
    parser.add_argument("--max-length", type=int, default=None, help="default 256 on CPU, 1024 on GPU")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--kernels", action="store_true", help="hub fused kernels (use_kernels=True)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from posttrain.models import device_settings, parameter_count

    cuda = torch.cuda.is_available()
    args.size = args.size or (None if args.model else "1b" if cuda else "tiny")
    args.steps = args.steps or (30 if cuda else 12)
    args.batch_size = args.batch_size or (8 if cuda else 4)
    args.max_length = args.max_length or (1024 if cuda else 256)
    settings = device_settings(use_kernels=args.kernels)
    peak_tflops, peak_source = peak(settings)
    jobs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for job, runner, flops_per_param in (("sft", run_sft, 4), ("dpo", run_dpo, 6)):
            base, tok, described = build_model(args.size, args.model, settings)
            model = fresh_lora(base, args.lora_r)
            trainable, total = parameter_count(model)
            dense = total - base.get_input_embeddings().weight.numel()
            tps = runner(model, tok, args, Path(tmp) / job)
            jobs[job] = {
                "tokens_per_s": round(tps, 1),
                "mfu": round(flops_per_param * dense * tps / (peak_tflops * 1e12), 4),
                "flops_per_token": flops_per_param * dense,
            }
            if cuda:
                jobs[job]["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                torch.cuda.reset_peak_memory_stats()
            del model, base
            if cuda:
                torch.cuda.empty_cache()
    device = torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})"
    entry = {
        "device": device,
        "model": described,
        "params_total": total,
        "params_non_embedding": dense,
        "params_trainable": trainable,
        "settings": settings.describe(),
        "kernels": args.kernels,
        "gradient_checkpointing": args.gradient_checkpointing,
        "torch_threads": None if cuda else torch.get_num_threads(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "peak_tflops": round(peak_tflops, 3),
        "peak_source": peak_source,
        **jobs,
        "command": "python bench/gpu_throughput.py"
        + (f" --model {args.model}" if args.model else f" --size {args.size}"),
    }
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["cuda" if cuda else "cpu"] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
