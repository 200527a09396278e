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

Then `batched`: the E-step's real question, self-edit evaluations per minute. `--batch` K
self-edits (one per fictional passage, each with its own seed) are scored one at a time
(`InnerLoop.adapt` + evaluate, as `inner.batch_updates: 1` does) and with their K LoRA updates
trained together in one batched pass (posttrain.train.multi_lora, `inner.batch_updates: K`),
then each evaluated. Same work on both sides: the per-step losses agree (`max_loss_diff`)
and so do the F1s. The two sides alternate A B A B for `--rounds` rounds after an untimed
warm-up of each; the JSON has every round's time, the median and the spread, and the split
into training and evaluation (evaluation stays one self-edit at a time on both sides).

Then, with `--parts workers` (needs Ray): the same K self-edits through the SEAL pipeline's own
scorer (`inner_scorer`), one at a time in this process against `--workers` Ray workers of one
thread each, one self-edit per task or K/workers updates trained together per task; rounds
interleaved after a warm-up of each. A part not run keeps its earlier figures in `--out`.

    python bench/seal_inner.py                    # smollm2-135m, writes bench/results/seal_inner.json
    python bench/seal_inner.py --parts workers --workers 2    # adds the workers part
    python bench/seal_inner.py --model tiny-random --edits 1 --epochs 1 --batch 3 --out /tmp/x.json   # smoke
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

RESULTS = Path(__file__).parent / "results" / "seal_inner.json"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--edits", type=int, default=3, help="Timed self-edits per side.")
    p.add_argument("--epochs", type=float, default=10.0, help="Inner epochs (paper: 10).")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core).")
    p.add_argument("--batch", type=int, default=8, help="Self-edits trained together in the batched mode.")
    p.add_argument("--rounds", type=int, default=3, help="Timed A/B rounds of the batched mode (>= 3).")
    p.add_argument(
        "--parts",
        default="single,batched",
        help="Comma-separated parts to run: single, batched, workers (needs Ray). Parts not run keep "
        "their earlier figures in --out.",
    )
    p.add_argument("--workers", type=int, default=2, help="Ray workers of the workers part.")
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


def _batched_work(k: int) -> list[tuple[object, list[dict]]]:
    """K self-edits, one per passage: its sentences restated one per line, as in `_work`."""
    from posttrain.tasks import knowledge

    work = []
    for passage in knowledge.generate_fictional_passages(k, seed=0):
        lines = [f"It is a fact that {s.strip()}" for s in passage.context.split(". ") if s.strip()]
        work.append(
            (
                passage,
                knowledge.sequences_to_rows(knowledge.self_edit_to_sequences(passage, "\n".join(lines))),
            )
        )
    return work


def _one_at_a_time(inner, work) -> dict:
    t0 = time.perf_counter()
    f1s, losses, eval_s = [], [], 0.0
    for i, (passage, rows) in enumerate(work):
        result = inner.adapt(rows, seed=100 + i)
        t1 = time.perf_counter()
        f1s.append(_evaluate(inner.model, inner.tokenizer, passage))
        eval_s += time.perf_counter() - t1
        losses.append([loss for _, loss in result.losses])
    inner.reset()
    return {"s": time.perf_counter() - t0, "eval_s": eval_s, "f1": f1s, "losses": losses}


def _together(inner, work) -> dict:
    from posttrain.train.multi_lora import InnerRun, score_together

    eval_s = [0.0]

    def evaluate(i: int) -> float:
        t1 = time.perf_counter()
        f1 = _evaluate(inner.model, inner.tokenizer, work[i][0])
        eval_s[0] += time.perf_counter() - t1
        return f1

    t0 = time.perf_counter()
    f1s = score_together(inner, [InnerRun(rows, 100 + i) for i, (_, rows) in enumerate(work)], evaluate)
    return {"s": time.perf_counter() - t0, "eval_s": eval_s[0], "f1": f1s}


def _gemm_gflops(m: int, k: int, n: int, reps: int = 200) -> float:
    """A plain fp32 GEMM's rate at m rows: what one forward's matmuls can reach at that width."""
    x, w = torch.randn(m, k), torch.randn(n, k)
    for _ in range(10):
        torch.nn.functional.linear(x, w)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.nn.functional.linear(x, w)
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def _limit(config, tokens: int, steps_alone: int, steps_together: int) -> dict:
    """What batching can buy here at most: the GEMM rate at the batched pass's width (tokens per
    forward) over the rate at one update's, on the model's MLP shape. Matmuls are most of a
    step; the optimizer and gradient clipping are per update and do not shrink at all."""
    alone, together = round(tokens / steps_alone), round(tokens / steps_together)
    shape = (config.hidden_size, config.intermediate_size)
    rate_alone, rate_together = _gemm_gflops(alone, *shape), _gemm_gflops(together, *shape)
    return {
        "tokens_per_forward_one_at_a_time": alone,
        "tokens_per_forward_together": together,
        "gemm_shape": list(shape),
        "gemm_gflops_one_at_a_time": round(rate_alone, 1),
        "gemm_gflops_together": round(rate_together, 1),
        "gemm_ceiling_speedup": round(rate_together / rate_alone, 2),
    }


def _spread(times: list[float]) -> dict:
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "rounds_s": [round(t, 3) for t in times],
    }


def run_batched(spec: str, args: argparse.Namespace) -> dict:
    """K self-edit evaluations one at a time (A) against their updates trained together (B)."""
    from posttrain.models import ResidentModel, device_settings
    from posttrain.train.multi_lora import multi_lean_train
    from posttrain.train.restem import InnerLoop

    resident = ResidentModel(spec, device_settings())
    inner = InnerLoop(resident, r=32, alpha=64, dropout=0.0, hp=_hp(args.epochs, 0), adapter_seed=0)
    work = _batched_work(args.batch)
    # Untimed warm-up of both sides, which also checks that they do the same optimisation.
    alone = _one_at_a_time(inner, work)
    inner.reset()
    hps = [_hp(args.epochs, 100 + i) for i in range(len(work))]
    trained = multi_lean_train(
        inner.model, inner.tokenizer, [(rows, hp) for (_, rows), hp in zip(work, hps, strict=True)]
    )
    together_losses = [[loss for _, loss in t.result.losses] for t in trained]
    diff = max(
        abs(a - b)
        for la, lb in zip(alone["losses"], together_losses, strict=True)
        for a, b in zip(la, lb, strict=True)
    )
    a_runs, b_runs = [], []
    for _ in range(args.rounds):
        a_runs.append(_one_at_a_time(inner, work))
        b_runs.append(_together(inner, work))
    a_med = statistics.median(r["s"] for r in a_runs)
    b_med = statistics.median(r["s"] for r in b_runs)
    return {
        "k": len(work),
        "rounds": args.rounds,
        "steps_per_edit": [len(x) for x in together_losses],
        "one_at_a_time": {
            **_spread([r["s"] for r in a_runs]),
            "eval_median_s": round(statistics.median(r["eval_s"] for r in a_runs), 3),
        },
        "together": {
            **_spread([r["s"] for r in b_runs]),
            "eval_median_s": round(statistics.median(r["eval_s"] for r in b_runs), 3),
        },
        "evals_per_min_one_at_a_time": round(60 * len(work) / a_med, 2),
        "evals_per_min_together": round(60 * len(work) / b_med, 2),
        "speedup": round(a_med / b_med, 2),
        "train_speedup": round(
            (a_med - statistics.median(r["eval_s"] for r in a_runs))
            / max(b_med - statistics.median(r["eval_s"] for r in b_runs), 1e-9),
            2,
        ),
        "max_loss_diff": diff,
        "limit": _limit(
            inner.model.config,
            sum(t.result.train_tokens for t in trained),
            sum(len(x) for x in together_losses),
            max(len(x) for x in together_losses),
        ),
        "f1_one_at_a_time": a_runs[-1]["f1"],
        "f1_together": b_runs[-1]["f1"],
    }


def run_workers(args: argparse.Namespace) -> dict:
    """More evaluations a minute from more processes: the pipeline's scorer one at a time in this
    process (A, torch's threads) against `--workers` Ray workers of one thread each (Ray gives a
    task one CPU), one self-edit per task (C) and K/workers updates trained together per task (D).
    Rounds go A C D after an untimed warm-up of each (the workers load the model once)."""
    from posttrain.executors import import_ray, make_executor, worker_env
    from posttrain.models import ResidentModel
    from posttrain.pipelines.seal import InnerJob, InnerSpec, inner_scorer
    from posttrain.tasks.seal.domains import KnowledgeDomain

    spec = InnerSpec(args.model, "cpu", "auto", 32, 64, 0.0, _hp(args.epochs, 0), 0)
    inner = spec.build(ResidentModel(spec.model, spec.settings()))
    domain = KnowledgeDomain(answer_tokens=24)
    work = _batched_work(args.batch)
    jobs = [InnerJob(passage, rows, {}, [100 + i]) for i, (passage, rows) in enumerate(work)]
    keys = [f"edit{i}" for i in range(len(jobs))]
    per_task = -(-len(jobs) // args.workers)
    contenders = {
        "local_one_at_a_time": ("local", 1),
        "ray_one_at_a_time": ("ray", 1),
        "ray_together": ("ray", per_task),
    }
    ray = import_ray()  # started here so that it has exactly `--workers` CPUs
    ray.init(
        num_cpus=args.workers,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": worker_env()},
    )
    times: dict[str, list[float]] = {name: [] for name in contenders}
    scores: dict[str, list[float]] = {}
    try:
        scorers = {
            name: inner_scorer(make_executor(kind), domain, inner, spec, k)  # type: ignore[arg-type]
            for name, (kind, k) in contenders.items()
        }
        for name, score in scorers.items():  # warm-up: the workers load the model here
            scores[name] = [s for per_job in score(jobs, keys) for s in per_job]
        for _ in range(args.rounds):
            for name, score in scorers.items():
                t0 = time.perf_counter()
                score(jobs, keys)
                times[name].append(time.perf_counter() - t0)
    finally:
        ray.shutdown()
    base = statistics.median(times["local_one_at_a_time"])
    return {
        "k": len(jobs),
        "workers": args.workers,
        "updates_per_task_together": per_task,
        "rounds": args.rounds,
        **{name: _spread(t) for name, t in times.items()},
        "evals_per_min": {name: round(60 * len(jobs) / statistics.median(t), 2) for name, t in times.items()},
        "speedup_vs_local_one_at_a_time": {
            name: round(base / statistics.median(t), 2) for name, t in times.items()
        },
        "f1": scores,
    }


def run_single(args: argparse.Namespace) -> dict:
    """One self-edit evaluation, ours against the official recipe's way."""
    from posttrain.models import ResidentModel, device_settings

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
    return {
        "edits": args.edits,
        "epochs": args.epochs,
        "rows_per_edit": len(rows),
        "steps_per_edit": len(ours["losses"][0]) if ours["losses"] else 0,
        "ours_s": round(ours["per_edit_s"], 3),
        "naive_s": round(naive["per_edit_s"], 3),
        # One self-edit, ours vs the official recipe's way; issue 14's figure (more self-edit
        # evaluations per minute) is batched.speedup.
        "speedup_vs_official": round(naive["per_edit_s"] / ours["per_edit_s"], 2),
        "ours_train_s": round(ours["train_s"], 3),
        "naive_train_s": round(naive["train_s"], 3),
        "naive_wrap_s": round(naive["wrap_s"], 3),
        "max_loss_diff": diff,
        "ours_f1": ours["f1"],
        "naive_f1": naive["f1"],
    }


def main(args: argparse.Namespace) -> dict:
    parts = set(args.parts.split(","))
    if unknown := parts - {"single", "batched", "workers"}:
        raise SystemExit(f"--parts: unknown part(s) {sorted(unknown)}; choose from single, batched, workers")
    if args.threads:
        torch.set_num_threads(args.threads)
    out: dict = {"model": args.model}
    if "single" in parts:
        cpu = platform.processor() or platform.machine()
        out["device"] = f"{cpu}, torch threads {torch.get_num_threads()}"
        out |= run_single(args)
    if "batched" in parts:
        out["batched"] = run_batched(args.model, args)
    if "workers" in parts:
        out["workers"] = run_workers(args)
    # Parts not run, and records of earlier comparisons (e.g. before_after_one_house), are kept.
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    out |= {k: v for k, v in earlier.items() if k not in out}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(make_parser().parse_args())
