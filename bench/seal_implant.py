"""Does SEAL's inner LoRA update implant a passage in smollm2-135m? Passage-only variants, quickly.

`bench/seal_knowledge.py` found every condition at F1 ~ 0, training on the passage included. This
isolates the inner update: for each fictional passage (invented entities, so the base scores 0) it
trains a fresh LoRA (r=32, alpha=64, batch 1, the seal preset's inner settings) on one variant of
the passage's text, then asks the passage's questions WITHOUT it, as seal_knowledge does (same
prompt, greedy, SQuAD F1/EM, bootstrap CI over questions). Variants of the training text:

- `plain`: the passage as one sequence (what `passage_only` trains on);
- `sent`: each sentence its own sequence, then the passage (the shape a self-edit of one
  restated fact per line gives `self_edit_to_sequences`);
- `chatsent`: each sentence as a chat answer to "Tell me a fact about <title>.", then the passage;
- `qa_oracle`: the evaluation questions with their answers, as chat turns. A diagnostic upper
  bound (can a LoRA update store and return these answers at all?), never a condition.

    python bench/seal_implant.py --variants plain,sent --epochs 10      # one thread
    python bench/seal_implant.py --model tiny-random --passages 1 --epochs 1 --out /tmp/x.json

Each variant is recorded under "implant_variants" in bench/results/seal_knowledge.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "seal_knowledge.json"
VARIANTS = ("plain", "sent", "chatsent", "qa_oracle")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--variants", default="plain,sent", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=float, default=10.0, help="Inner epochs (paper: 10).")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--passages", type=int, default=12, help="Fictional passages (~4 questions each).")
    p.add_argument("--seed", type=int, default=1, help="Passage seed (seal_knowledge's runs use 0).")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def training_rows(variant: str, passage, tokenizer) -> list[dict]:
    from posttrain.tasks.knowledge import qa_prompt
    from posttrain.tasks.knowledge.passages import passage_text

    def chat(user: str, answer: str) -> str:
        turns = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        return tokenizer.apply_chat_template(turns, tokenize=False)

    sentences = [s.strip().rstrip(".") + "." for s in passage.context.split(". ") if s.strip()]
    whole = passage_text(passage)
    if variant == "plain":
        return [{"text": whole}]
    if variant == "sent":
        return [{"text": s} for s in sentences] + [{"text": whole}]
    if variant == "chatsent":
        return [{"text": chat(f"Tell me a fact about {passage.title}.", s)} for s in sentences] + [
            {"text": whole}
        ]
    if variant == "qa_oracle":
        return [{"text": chat(qa_prompt(q.question)[0]["content"], q.answers[0])} for q in passage.questions]
    raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def run_variant(inner, tokenizer, passages, variant: str) -> dict:
    """Each passage's questions answered after its own update, then graded together."""
    from posttrain.inference import generate_batch
    from posttrain.tasks import knowledge

    start = time.perf_counter()
    predictions: list[str] = []
    for i, passage in enumerate(passages):
        inner.adapt(training_rows(variant, passage, tokenizer), seed=i)
        prompts = knowledge.qa_prompts([passage])
        n = len(prompts)
        predictions += generate_batch(inner.model, tokenizer, prompts, max_new_tokens=24, batch_size=n)
    inner.reset()
    graded = knowledge.grade(predictions, passages)
    return {
        "variant": variant,
        "f1": round(graded["f1"], 4),
        "em": round(graded["em"], 4),
        "ci": [round(x, 4) for x in graded["ci"]],
        "n_questions": graded["n_questions"],
        "runtime_s": round(time.perf_counter() - start, 1),
        "examples": [[q["question"], q["gold"][0], q["prediction"]] for q in graded["per_question"][:4]],
    }


def main(args: argparse.Namespace) -> list[dict]:
    from posttrain.models import ResidentModel
    from posttrain.tasks import knowledge
    from posttrain.train.args import SFTArgs
    from posttrain.train.restem import InnerLoop

    torch.set_num_threads(args.threads)
    resident = ResidentModel(args.model)
    hp = SFTArgs(learning_rate=args.lr, batch_size=1, epochs=args.epochs, warmup_ratio=0.0, packing=False)
    inner = InnerLoop(resident, r=32, alpha=64, dropout=0.0, hp=hp, adapter_seed=0)
    passages = knowledge.generate_fictional_passages(args.passages, seed=args.seed)
    setup = {
        "model": args.model,
        "epochs": args.epochs,
        "lr": args.lr,
        "lora": "r=32 alpha=64 batch=1",
        "passages": args.passages,
        "passage_seed": args.seed,
        "device": f"{platform.machine()}, torch threads {args.threads}",
        "command": "python bench/seal_implant.py "
        f"--variants {args.variants} --epochs {args.epochs:g} --passages {args.passages}",
    }
    results = []
    for variant in args.variants.split(","):
        result = run_variant(inner, resident.tokenizer, passages, variant) | setup
        print(json.dumps(result, indent=2), flush=True)
        results.append(result)
        record = json.loads(args.out.read_text()) if args.out.exists() else {}
        key = (variant, args.epochs, args.lr, args.passages, args.model)
        kept = [
            v
            for v in record.get("implant_variants", [])
            if (v["variant"], v["epochs"], v["lr"], v["passages"], v["model"]) != key
        ]
        record["implant_variants"] = [*kept, result]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(make_parser().parse_args())
