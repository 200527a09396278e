"""No-context QA: ask a passage's questions without the passage and grade by SQuAD EM and token F1."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from posttrain.tasks.knowledge.passages import Passage
from posttrain.tasks.metrics import bootstrap_ci, exact_match, token_f1

Judge = Callable[[str, list[str], str], float]
"""judge(question, gold_answers, prediction) -> score in [0, 1], e.g. an LLM judge."""

_QA_INSTRUCTION = "Answer with a short phrase only (a name, number or place), no explanation."
_ANSWER_PREFIX = re.compile(
    r"^\s*(?:(?:the\s+)?(?:final\s+)?answer\b\s*(?:is\b)?\s*[:\-]?|a\s*:)\s*", re.IGNORECASE
)


def qa_prompt(question: str) -> list[dict]:
    """Chat messages asking `question` with no passage, for a short answer."""
    return [{"role": "user", "content": f"{_QA_INSTRUCTION}\nQuestion: {question}"}]


def qa_prompts(passages: Sequence[Passage]) -> list[list[dict]]:
    """`qa_prompt` for every question, in the order `grade` expects predictions."""
    return [qa_prompt(q.question) for p in passages for q in p.questions]


def clean_prediction(text: str) -> str:
    """The answer part of a generation: its first non-empty line without an "Answer:" prefix."""
    for line in text.splitlines():
        line = _ANSWER_PREFIX.sub("", line.strip(), count=1).strip()
        if line:
            return line
    return ""


def grade(predictions: Sequence[str], passages: Sequence[Passage], judge: Judge | None = None) -> dict:
    """Score no-context answers: SQuAD EM and token F1, best over each question's gold answers.

    `predictions` line up with `qa_prompts(passages)` (questions in passage order) and are
    cleaned with `clean_prediction` first. Returns `em`, `f1` (means over questions), `ci`
    (95% bootstrap interval of F1 over questions, seed 0), `n_questions`, `n_passages`,
    `per_passage` (mean em/f1 per passage, for per-passage rewards) and `per_question`.
    With `judge`, each question also gets a judge score and the result a mean `judge`.
    """
    pairs = [(p, q) for p in passages for q in p.questions]
    if len(predictions) != len(pairs):
        raise ValueError(f"got {len(predictions)} predictions for {len(pairs)} questions")
    per_question = []
    for (p, q), raw in zip(pairs, predictions, strict=True):
        pred = clean_prediction(raw)
        row = {
            "passage_id": p.id,
            "question_id": q.id,
            "question": q.question,
            "gold": list(q.answers),
            "prediction": pred,
            "em": exact_match(pred, q.answers),
            "f1": token_f1(pred, q.answers),
        }
        if judge is not None:
            row["judge"] = float(judge(q.question, list(q.answers), pred))
        per_question.append(row)
    result: dict[str, Any] = {
        "em": _mean([r["em"] for r in per_question]),
        "f1": _mean([r["f1"] for r in per_question]),
        "ci": list(bootstrap_ci([r["f1"] for r in per_question])) if per_question else [0.0, 0.0],
        "n_questions": len(per_question),
        "n_passages": len(passages),
        "per_passage": [],
        "per_question": per_question,
    }
    if judge is not None:
        result["judge"] = _mean([r["judge"] for r in per_question])
    start = 0
    for p in passages:
        rows = per_question[start : start + len(p.questions)]
        start += len(p.questions)
        result["per_passage"].append(
            {
                "passage_id": p.id,
                "em": _mean([r["em"] for r in rows]),
                "f1": _mean([r["f1"] for r in rows]),
                "n_questions": len(rows),
            }
        )
    return result


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def evaluate(
    pred_fn: Callable[[list[list[dict]]], list[str]],
    passages: Sequence[Passage],
    judge: Judge | None = None,
) -> dict:
    """Ask every question of `passages` without the passage through `pred_fn`, then `grade`.

    `pred_fn` is a batched generator: a list of chat prompts in, one completion each out.
    """
    prompts = qa_prompts(passages)
    predictions = pred_fn(prompts) if prompts else []
    return grade(list(predictions), passages, judge)
