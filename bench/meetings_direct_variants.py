"""Quick meetings variants: the direct predictor's SFT alone, then accuracy on held-out scenarios.

`bench/align_quality.py --tasks meetings` runs every stage (SFT, rollouts, DPO, three models'
evaluation) and costs most of an hour; this isolates the SFT predictor that reads the scenario
text, so an answer format or schedule can be compared in ~10-30 minutes on one thread. It trains
a fresh LoRA (r=16, alpha=32, or `--lora-r`; lr 1e-3, batch 2, packed, as the align_meetings
preset) on `--rows` direct rows of data seed 0, then answers `--eval` held-out scenarios of seed
1000 greedily, as the bench's `sft_accuracy` does. Answer formats (`--fmt`):

- `plain`: `Final Answer: {"probability": p, "reason": r}` (the first release's format);
- `rfirst`: the same object with the reason first;
- `card`: a scorecard of each logit term's sign and size (`role ++, topic -, ...`), then `plain`;
- `verdict`: `{"success": true|false, "reason": r, "probability": p}` (`final_answer`): the side
  first, as one binary token, so greedy decoding takes the side the model finds likelier in
  total rather than the likeliest single reason (a 14-way choice whose argmax can sit on the
  minority side);
- `checklist`: each term's inputs copied from the text beside a word for its sign
  (`engagement 4 and 2: low`), the count of pros and cons, then `verdict`: what the pipeline's
  direct rows are now (`direct_completion`; tasks/meetings/checklist.py says why).

Each run is recorded under "meetings_variants" in bench/results/align_quality.json.

    python bench/meetings_direct_variants.py rfirst300e3 --fmt rfirst --epochs 3    # ~30 min, 1 thread
    python bench/meetings_direct_variants.py checklist300e3lr3 --fmt checklist --epochs 3 --lr 3e-3
    python bench/meetings_direct_variants.py smoke --model tiny-random --rows 8 --eval 4 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results" / "align_quality.json"
FORMATS = ("plain", "rfirst", "card", "verdict", "checklist")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--fmt", choices=FORMATS, default="rfirst")
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha is twice it)")
    p.add_argument("--eval", type=int, default=200, help="held-out scenarios (seed 1000)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def _symbol(v: float) -> str:
    return "++" if v > 2.0 else "+" if v > 0.5 else "--" if v < -2.0 else "-" if v < -0.5 else "0"


def scorecard(scenario: Any) -> str:
    terms = scenario.contributions()
    return "Scorecard: " + ", ".join(f"{k} {_symbol(v)}" for k, v in terms.items()) + "."


def completion(scenario: Any, fmt: str) -> str:
    from posttrain.tasks.meetings import final_answer
    from posttrain.tasks.meetings.data import direct_completion

    if fmt == "checklist":
        return direct_completion(scenario)
    if fmt == "verdict":
        return final_answer(scenario.clean_prob, scenario.reason)
    if fmt == "rfirst":
        answer = {"reason": scenario.reason, "probability": round(scenario.clean_prob, 2)}
        return "Final Answer: " + json.dumps(answer)
    answer = {"probability": round(scenario.clean_prob, 2), "reason": scenario.reason}
    plain = "Final Answer: " + json.dumps(answer)  # the first release's order
    return f"{scorecard(scenario)}\n{plain}" if fmt == "card" else plain


def scorecard_accuracy(texts: list[str], scenarios: list[Any]) -> float:
    """Share of the scorecard's terms the model wrote right (a card it did not write scores 0)."""
    right = total = 0
    for text, s in zip(texts, scenarios, strict=True):
        gold = scorecard(s).removeprefix("Scorecard: ").rstrip(".").split(", ")
        line = next((x for x in text.splitlines() if x.startswith("Scorecard: ")), "")
        said = line.removeprefix("Scorecard: ").rstrip(".").split(", ")
        right += sum(g == w for g, w in zip(gold, said + [""] * len(gold), strict=False))
        total += len(gold)
    return right / total


def checklist_accuracy(texts: list[str], scenarios: list[Any]) -> dict[str, float]:
    """Per term, the share of held-out checklists whose verdict word is right (missing: wrong),
    and how often the side followed the model's own count of pros and cons."""
    from posttrain.tasks.meetings.checklist import checklist, scenario_lines

    right: dict[str, int] = {}
    follows = 0
    for text, s in zip(texts, scenarios, strict=True):
        gold = checklist(scenario_lines(s)).removeprefix("Checklist: ").split("; ")
        line = next((x for x in text.splitlines() if x.startswith("Checklist: ")), "")
        said = line.removeprefix("Checklist: ").split("; ")
        for i, g in enumerate(gold):
            key = g.split(" ")[0]
            w = said[i] if i < len(said) else ""
            right[key] = right.get(key, 0) + (
                g.split(": ")[1].split(".")[0] == w.split(": ")[-1].split(".")[0]
            )
        m = re.search(r"Pros (\d+), cons (\d+)", line)
        pred = parse_side(text)
        follows += bool(m) and pred is not None and pred == (int(m.group(1)) > int(m.group(2)))
    out = {k: round(v / len(texts), 4) for k, v in right.items()}
    out["side_follows_count"] = round(follows / len(texts), 4)
    return out


def parse_side(text: str) -> bool | None:
    m = re.search(r'"success": (true|false)', text)
    return None if m is None else m.group(1) == "true"


def main(args: argparse.Namespace) -> dict[str, Any]:
    from posttrain.inference import generator, merged
    from posttrain.models import ResidentModel
    from posttrain.pipelines.align import tokenize_conversation
    from posttrain.tasks.meetings import (
        generate_scenarios,
        input_text,
        meetings_metrics,
        meetings_references,
        parse_prediction,
    )
    from posttrain.tasks.meetings.data import SFT_INSTRUCTION
    from posttrain.train.args import SFTArgs
    from posttrain.train.sft import sft_train

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    resident = ResidentModel(args.model)
    tok = resident.tokenizer
    model = resident.fresh_adapter(args.lora_r, 2 * args.lora_r, 0.05, 42)

    def ask(s: Any) -> list[dict[str, str]]:
        return [{"role": "user", "content": input_text(s) + SFT_INSTRUCTION}]

    train = generate_scenarios(args.rows, 0)
    rows = [
        tokenize_conversation(tok, ask(s) + [{"role": "assistant", "content": completion(s, args.fmt)}], 768)
        for s in train
    ]
    hp = SFTArgs(learning_rate=args.lr, batch_size=2, epochs=args.epochs, warmup_ratio=0.05, max_length=768)
    with tempfile.TemporaryDirectory() as tmp:
        result = sft_train(model, tok, rows, None, Path(tmp), hp, checkpoints=False, eval_before=False)
    train_s = time.perf_counter() - start
    held = generate_scenarios(args.eval, 1000)
    with merged(model):
        texts = generator(model, tok, {"card": 96, "checklist": 160}.get(args.fmt, 40), 20)(
            [ask(s) for s in held]
        )
    preds = [p[0] if (p := parse_prediction(t)) else None for t in texts]
    figs = meetings_metrics(preds, held) | meetings_references([s.outcome for s in train], held)
    record: dict[str, Any] = {
        "run": args.name,
        "settings": {
            "fmt": args.fmt,
            "rows": args.rows,
            "epochs": args.epochs,
            "lr": args.lr,
            "lora_r": args.lora_r,
            "steps": result.steps,
        },
        **{
            k: {"value": round(f.value, 4), "ci": [round(x, 4) for x in f.ci], "n": f.n}
            for k, f in figs.items()
        },
        "distinct_answers": len({t for t in texts}),
        "train_s": round(train_s, 1),
        "eval_s": round(time.perf_counter() - start - train_s, 1),
        "examples": texts[:3],
        "command": f"python bench/meetings_direct_variants.py {args.name} --fmt {args.fmt} "
        f"--rows {args.rows} --epochs {args.epochs:g} --lora-r {args.lora_r} --lr {args.lr:g}",
    }
    if args.fmt == "card":
        record["scorecard_term_accuracy"] = round(scorecard_accuracy(texts, held), 4)
    if args.fmt == "checklist":
        record["checklist_term_accuracy"] = checklist_accuracy(texts, held)
    print(json.dumps(record, indent=2))
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    old["meetings_variants"] = [v for v in old.get("meetings_variants", []) if v["run"] != args.name] + [
        record
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(old, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main(make_parser().parse_args())
