"""Small answer metrics shared by the tasks: SQuAD-style exact match and token F1, a
bootstrap confidence interval for a mean, and `Figure`, the mean-with-n-and-CI every align
number is reported as.

Normalisation follows the official SQuAD evaluation script (lowercase, drop punctuation,
drop the articles a/an/the, collapse whitespace), so numbers here are comparable with
published SQuAD and SEAL results.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)

# Resampling draws n_boot x n indices; past this many we draw in chunks to bound memory.
_BOOT_CHUNK = 1_000_000


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, strip punctuation and articles, collapse whitespace.

    Punctuation is removed before articles, as the official script does, so "12,400" and
    "12400" compare equal and "the-end" becomes "theend".
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    golds = [gold] if isinstance(gold, str) else list(gold)
    if not golds:
        raise ValueError("need at least one gold answer")
    return golds


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(gold)))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    # Both empty counts as a match (SQuAD v2 convention); one empty scores 0.
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Bag-of-tokens F1 of the normalised strings, best over the gold answers (SQuAD's rule)."""
    pred = normalize_answer(prediction).split()
    return max(_f1(pred, normalize_answer(g).split()) for g in _golds(gold))


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval for the mean of `values`.

    Deterministic for a given seed. Resamples the values themselves, so when they are
    clustered (several questions per passage) the interval is somewhat too narrow; pass
    per-cluster means instead when that matters. One value gives a zero-width interval.
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D sequence of numbers")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = data.size
    chunk = max(1, _BOOT_CHUNK // n)
    means = np.concatenate(
        [
            data[rng.integers(0, n, size=(min(chunk, n_boot - start), n))].mean(axis=1)
            for start in range(0, n_boot, chunk)
        ]
    )
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


N_BOOT = 1000


@dataclass(frozen=True)
class Figure:
    """One reported number: the mean of per-example values, their count and a 95% bootstrap CI.

    `value` and `ci` are None when `n` is 0 (nothing to measure, e.g. no tool calls at all).
    """

    value: float | None
    n: int
    ci: tuple[float, float] | None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "n": self.n, "ci": list(self.ci) if self.ci else None}

    def __str__(self) -> str:
        if self.value is None:
            return f"- (n={self.n})"
        return f"{self.value:.3f} [{self.ci[0]:.2f}, {self.ci[1]:.2f}] n={self.n}"  # type: ignore[index]


def figure(values: Sequence[float | bool], seed: int = 0) -> Figure:
    """Mean, n and percentile-bootstrap 95% CI (1000 resamples, seeded) of `values`."""
    xs = [float(v) for v in values]
    if not xs:
        return Figure(None, 0, None)
    lo, hi = bootstrap_ci(xs, n_boot=N_BOOT, seed=seed)
    return Figure(sum(xs) / len(xs), len(xs), (round(lo, 4), round(hi, 4)))


def flat(figures: dict[str, Figure], n: int | None = None) -> dict[str, Any]:
    """`{name: value, name_ci: [lo, hi], name_n: n}` per figure, plus `n` (bench JSON format)."""
    out: dict[str, Any] = {}
    for name, fig in figures.items():
        out[name] = None if fig.value is None else round(fig.value, 4)
        out[f"{name}_ci"] = list(fig.ci) if fig.ci else None
        out[f"{name}_n"] = fig.n
    if n is not None:
        out["n"] = n
    return out
