"""The QA generator and evaluator (seed 000 §3.5): questions from the validation data, and
grades of the model's answers to them."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from posttrain.agents.roles.base import Reply, clip_text, json_object
from posttrain.config.search_space import as_number

GENERATOR_PROMPT = (
    "You write evaluation questions for a fine-tuned model. From the validation examples, write "
    "short prompts and the expected answers (at most n items)."
)
EVALUATOR_PROMPT = (
    "You grade a model's answers against the expected answers. Give one score in [0, 1] per item "
    "(1 = fully correct) and a short comment per item."
)

# Row shapes a validation set may have: (prompt key, optional extra-input key, answer key).
_PROMPT_KEYS = (
    ("instruction", "input", "output"),
    ("prompt", None, "completion"),
    ("prompt", None, "expected"),
)


class QAItem(BaseModel):
    """One question and its reference answer."""

    model_config = ConfigDict(extra="ignore")

    prompt: Annotated[str, BeforeValidator(lambda v: clip_text(v).strip())] = Field(min_length=1)
    expected: Annotated[str, BeforeValidator(lambda v: clip_text(v).strip())]


class QAGenReply(Reply):
    """Seed §3.5 QA generator: `{items: [{prompt, expected}]}`. Malformed items are dropped;
    at most `context["n"]` are kept; none left is invalid."""

    items: list[QAItem]

    @field_validator("items", mode="before")
    @classmethod
    def _keep_valid(cls, value: Any, info: ValidationInfo) -> list[QAItem]:
        if not isinstance(value, list):
            raise ValueError("items must be a JSON array")
        kept = []
        for item in value:
            try:
                kept.append(QAItem.model_validate(item))
            except ValueError:
                continue
        if not kept:
            raise ValueError("no item has a non-empty prompt and an expected answer")
        limit = (info.context or {}).get("n")
        return kept[:limit] if isinstance(limit, int) and limit > 0 else kept


class QAEvalReply(Reply):
    """Seed §3.5 QA evaluator: `{scores, comments}`, one score in [0, 1] per item.

    Scores above 1 but at most 10 are read as a 0–10 scale (LLMs often answer so) and divided
    by 10; then everything is clamped to [0, 1]. With `context["items"]`, fewer scores than
    items is invalid and extra scores are dropped.
    """

    scores: list[float]
    comments: list[str] = Field(default_factory=list)

    @field_validator("scores", mode="before")
    @classmethod
    def _scale(cls, value: Any, info: ValidationInfo) -> list[float]:
        if not isinstance(value, list):
            value = [value]
        numbers = []
        for v in value:
            if isinstance(v, float) and not math.isfinite(v):
                numbers.append(1.0 if v == math.inf else 0.0)  # NaN and -inf grade as 0
                continue
            n = as_number(v)
            if n is None:
                raise ValueError(f"score {v!r} is not a number")
            numbers.append(n)
        if numbers and 1.0 < max(numbers) <= 10.0:
            numbers = [n / 10.0 for n in numbers]
        numbers = [min(max(n, 0.0), 1.0) for n in numbers]
        items = (info.context or {}).get("items")
        if isinstance(items, list) and items:
            if len(numbers) < len(items):
                raise ValueError(f"expected {len(items)} scores (one per item), got {len(numbers)}")
            numbers = numbers[: len(items)]
        if not numbers:
            raise ValueError("scores must not be empty")
        return numbers

    @field_validator("comments", mode="before")
    @classmethod
    def _comments(cls, value: Any) -> list[str]:
        if value is None:
            return []
        return [clip_text(v) for v in value] if isinstance(value, list) else [clip_text(value)]

    @property
    def mean_score(self) -> float:
        return sum(self.scores) / len(self.scores)


def rules_qa_generator(val_rows: Sequence[Mapping[str, Any]], n: int = 4) -> QAGenReply:
    """`n` rows spread evenly over the validation data, their prompt and reference answer.
    Reads Alpaca rows (instruction/input/output) and prompt/completion or prompt/expected rows."""
    usable = [item for row in val_rows if (item := _qa_item(row)) is not None]
    if not usable:
        return QAGenReply.model_construct(items=[])
    n = max(1, min(n, len(usable)))
    picks = [usable[i * len(usable) // n] for i in range(n)]
    return QAGenReply(items=picks)


def _qa_item(row: Mapping[str, Any]) -> QAItem | None:
    for prompt_key, extra_key, answer_key in _PROMPT_KEYS:
        prompt, answer = row.get(prompt_key), row.get(answer_key)
        if isinstance(prompt, str) and prompt.strip() and isinstance(answer, str):
            extra = row.get(extra_key) if extra_key else None
            text = (
                f"{prompt.strip()}\n\n{extra.strip()}" if isinstance(extra, str) and extra.strip() else prompt
            )
            return QAItem(prompt=text, expected=answer)
    return None


def _tokens(text: str) -> list[str]:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).split()


def token_f1(answer: str, expected: str) -> float:
    """SQuAD-style token F1 after lowercasing and removing punctuation."""
    a, e = _tokens(answer), _tokens(expected)
    if not a or not e:
        return float(a == e)
    common = sum(min(a.count(t), e.count(t)) for t in set(e))
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(e)
    return 2 * precision * recall / (precision + recall)


def rules_qa_evaluator(items: Sequence[QAItem | Mapping[str, Any]], answers: Sequence[str]) -> QAEvalReply:
    """Score 1.0 when the normalized expected answer is contained in the answer, else token F1."""
    scores, comments = [], []
    for item, answer in zip(items, answers, strict=False):
        expected = item.expected if isinstance(item, QAItem) else str(item.get("expected", ""))
        norm_e, norm_a = " ".join(_tokens(expected)), " ".join(_tokens(answer or ""))
        if norm_e and norm_e in norm_a:
            scores.append(1.0)
            comments.append("contains the expected answer")
        else:
            f1 = token_f1(answer or "", expected)
            scores.append(round(f1, 4))
            comments.append(f"token F1 {f1:.2f}")
    if not scores:
        return QAEvalReply.model_construct(scores=[0.0], comments=["no answers"])
    return QAEvalReply(scores=scores, comments=comments)


def generator_answer(context: Mapping[str, Any]) -> QAGenReply:
    """The generator's rules policy fed from the role context `AgentTeam` builds."""
    return rules_qa_generator(context.get("val_rows") or [], context.get("n", 4))


def evaluator_answer(context: Mapping[str, Any]) -> QAEvalReply:
    """The evaluator's rules policy fed from the role context `AgentTeam` builds."""
    return rules_qa_evaluator(context.get("items") or [], context.get("answers") or [])


def generator_schema(context: Mapping[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """The generator's wire schema: at most `context["n"]` items (bounded, so decoding terminates)."""
    n = max(1, int(context.get("n", 4)))
    item = json_object({"prompt": text, "expected": text})
    return json_object({"items": {"type": "array", "items": item, "minItems": 1, "maxItems": n}})


def evaluator_schema(context: Mapping[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """The evaluator's wire schema: exactly one score per item in `context["items"]`."""
    n = max(1, len(context.get("items") or []) or 1)
    score = {"type": "number", "minimum": 0.0, "maximum": 1.0}
    return json_object(
        {
            "scores": {"type": "array", "items": score, "minItems": n, "maxItems": n},
            "comments": {"type": "array", "items": text, "maxItems": n},
        }
    )
