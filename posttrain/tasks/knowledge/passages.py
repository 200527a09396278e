"""Passages and their questions: the items of SEAL knowledge incorporation."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class QA:
    """One question with every accepted answer (graders take the best match over them)."""

    id: str
    question: str
    answers: list[str]


@dataclass
class Passage:
    """A passage and the questions whose answers it states."""

    id: str
    title: str
    context: str
    questions: list[QA] = field(default_factory=list)


def passage_text(passage: Passage) -> str:
    """The passage as one training sequence: title line (when there is one), then the context."""
    return f"{passage.title}\n{passage.context}" if passage.title else passage.context


def split_passages(
    passages: Sequence[Passage], n_eval: int, seed: int
) -> tuple[list[Passage], list[Passage]]:
    """(train, eval): a seeded choice of `n_eval` held-out passages; both keep input order."""
    if not 0 <= n_eval <= len(passages):
        raise ValueError(f"n_eval must be in [0, {len(passages)}], got {n_eval}")
    held = set(random.Random(seed).sample(range(len(passages)), n_eval))
    train = [p for i, p in enumerate(passages) if i not in held]
    evals = [p for i, p in enumerate(passages) if i in held]
    return train, evals
