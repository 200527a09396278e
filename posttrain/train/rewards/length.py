"""Length penalty: a response outside the target token band, or repeating itself, loses reward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from posttrain.train.rewards.text import Text, plain_text, words


def length_penalty(
    responses: Sequence[Text],
    tokenizer: Any = None,
    target: tuple[int, int] = (4, 128),
    *,
    ngram: int = 3,
    repetition_weight: float = 1.0,
) -> list[float]:
    """Penalty in [-1, 0] for a response outside the `target` length band or repeating itself.

    Length n is counted in the tokenizer's tokens (no special tokens) or, without a
    tokenizer, in whitespace-separated words. With target (lo, hi):

        short  = (lo - n) / lo            if n < lo   (1 for an empty response)
        long   = min(1, (n - hi) / hi)    if n > hi   (1 at twice the limit)
        repeat = 1 - distinct / total word n-grams    (0 when nothing repeats)
        penalty = -min(1, short + long + repetition_weight * repeat)

    So a concise answer inside the band scores 0, and an answer saying the same sentence
    four times scores about -0.75 even when it fits the band.
    """
    lo, hi = target
    if not 0 <= lo <= hi or hi == 0:
        raise ValueError(
            f"target must be (min_tokens, max_tokens) with 0 <= min <= max and max > 0, got {target}"
        )
    texts = [plain_text(r) for r in responses]
    if tokenizer is not None:
        counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    else:
        counts = [len(t.split()) for t in texts]
    out = []
    for text, n in zip(texts, counts, strict=True):
        short = (lo - n) / lo if n < lo else 0.0
        long = min(1.0, (n - hi) / hi) if n > hi else 0.0
        term = short + long + repetition_weight * repeated_ngram_fraction(text, ngram)
        out.append(-min(1.0, term))
    return out


def repeated_ngram_fraction(text: str, n: int = 3) -> float:
    """Share of the word n-grams of `text` that repeat an earlier one, in [0, 1)."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)
