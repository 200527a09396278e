"""Faithfulness: the share of a response's numbers and names that its prompt backs."""

from __future__ import annotations

import re
from collections.abc import Sequence

from posttrain.train.rewards.text import Text, check_pairs, plain_text

_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(%?)")
_ENUMERATOR = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.MULTILINE)
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z'’-]*")
_ALWAYS_CAPITALISED = frozenset({"i", "i'm", "i've", "i'll", "i'd", "ok"})
_SENTENCE_START = set(".!?:;\"'“(")


def extract_numbers(text: str) -> list[tuple[float, float]]:
    """(value, tolerance) of every number written in `text`, in order.

    "42,000" is 42000; "14:30" is a time, counted as 870 minutes after midnight so that
    "leave at 13:45" follows from "14:30" and "45 minutes"; "25%" is 25. Tolerance is half a
    unit of the last digit written ("2.33" matches 7/3). List enumerators ("1. ", "2) ")
    at the start of a line are not numbers.
    """
    text = _ENUMERATOR.sub(" ", text)
    out: list[tuple[int, float, float]] = []
    for m in _TIME.finditer(text):
        out.append((m.start(), int(m.group(1)) * 60 + int(m.group(2)), 0.5))
    text = _TIME.sub(lambda m: " " * len(m.group(0)), text)
    for m in _NUMBER.finditer(text):
        decimals = m.group(2) or ""
        value = float(m.group(1).replace(",", "") + (f".{decimals}" if decimals else ""))
        out.append((m.start(), value, 0.5 * 10.0 ** -len(decimals)))
    return [(v, tol) for _, v, tol in sorted(out)]


def extract_names(text: str) -> list[str]:
    """Capitalised words that do not start a sentence or a line, lowercased: a crude named-entity list."""
    found = []
    for m in _CAPITALISED.finditer(text):
        before = text[: m.start()]
        stripped = before.rstrip(" \t")
        if not stripped or stripped[-1] in _SENTENCE_START or stripped[-1] == "\n" or "\n" in before[-2:]:
            continue
        word = m.group(0).lower().rstrip("'’-")
        if word not in _ALWAYS_CAPITALISED and len(word) > 1:
            found.append(word)
    return found


def faithfulness(prompts: Sequence[Text], responses: Sequence[Text]) -> list[float]:
    """Share of the response's checkable facts that the prompt supports, in [0, 1].

    The rule, per sample:
    - Numbers are checked when the prompt contains a number. A response number is
      supported when it equals a prompt number or follows by ONE step of +, -, x or /
      from two numbers already supported (prompt numbers, percentages also as fractions,
      and the response's other supported numbers, wherever they stand), so working such as
      "12 + 7 = 19, minus 5 is 14" is fully supported while an invented "24" is not.
    - Names (capitalised words not starting a sentence) are checked when the prompt has
      one; a name is supported when the prompt contains that word, in any case.
    - score = supported / (supported + unsupported); 0.5 (no evidence either way) when the
      response has nothing checkable.
    A correct answer that brings in outside knowledge ("Jane Austen wrote it") loses some
    points when the prompt names things; the rule measures grounding, not truth.
    """
    check_pairs(prompts, responses)
    return [_faithfulness_one(plain_text(p), plain_text(r)) for p, r in zip(prompts, responses, strict=True)]


def _faithfulness_one(prompt: str, response: str) -> float:
    supported = unsupported = 0
    prompt_numbers = extract_numbers(prompt)
    if prompt_numbers:
        known = [v for v, _ in prompt_numbers]
        known += [v / 100 for v, _ in extract_numbers(_percentages(prompt))]
        pending = extract_numbers(response)
        progress = True
        while pending and progress:  # until no more numbers follow: working may state a result first
            still = [(v, tol) for v, tol in pending if not _derivable(v, tol, known)]
            known += [v for v, tol in pending if (v, tol) not in still]
            progress = len(still) < len(pending)
            supported += len(pending) - len(still)
            pending = still
        unsupported += len(pending)
    if extract_names(prompt):
        prompt_words = set(re.findall(r"[a-z][a-z'’-]*", prompt.lower()))
        for name in extract_names(response):
            if name in prompt_words:
                supported += 1
            else:
                unsupported += 1
    total = supported + unsupported
    return 0.5 if total == 0 else supported / total


def _percentages(text: str) -> str:
    return " ".join(m.group(0)[:-1] for m in re.finditer(r"\d[\d,.]*%", text))


def _derivable(value: float, tol: float, known: list[float]) -> bool:
    tol += 1e-9
    if any(abs(value - k) <= tol for k in known):
        return True
    for i, a in enumerate(known):
        for b in known[i + 1 :]:  # two different numbers: "24" must not follow from "12" alone
            candidates = (a + b, a - b, b - a, a * b)
            if any(abs(value - c) <= tol for c in candidates):
                return True
            if (b and abs(value - a / b) <= tol) or (a and abs(value - b / a) <= tol):
                return True
    return False
