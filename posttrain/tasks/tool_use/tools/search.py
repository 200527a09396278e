"""The search tool: Okapi BM25 over the bundled knowledge base."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.errors import DataError

KB_PATH = Path(__file__).resolve().parents[3] / "data" / "tool_use_kb.jsonl"

_STOPWORDS_TEXT = """a an and are as at be by did do does for from has have how in is it its many
much of on or the to was were what when where which who whom why with"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def _tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOPWORDS]


class BM25Index:
    """Okapi BM25 over short documents (k1=1.5, b=0.75), dense numpy: the KB is ~100 documents."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        docs = [_tokens(t) for t in texts]
        self.vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
        tf = np.zeros((len(docs), len(self.vocab)))
        for row, doc in enumerate(docs):
            for w in doc:
                tf[row, self.vocab[w]] += 1
        lengths = tf.sum(axis=1, keepdims=True)
        df = (tf > 0).sum(axis=0)
        idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        self.weights = idf * tf * (k1 + 1) / (tf + norm)  # per (doc, term) BM25 contribution

    def top(self, query: str, k: int) -> list[int]:
        """Indices of the k best documents with a positive score, best first."""
        cols = [self.vocab[w] for w in _tokens(query) if w in self.vocab]
        if not cols:
            return []
        scores = self.weights[:, cols].sum(axis=1)
        order = np.argsort(-scores, kind="stable")[:k]
        return [int(i) for i in order if scores[i] > 0]


@functools.lru_cache(maxsize=4)
def load_kb(path: Path = KB_PATH) -> tuple[dict[str, Any], ...]:
    """The knowledge base rows: id, title, text, qa [{question, answer, query}], number?."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(str(path), line_no, None, f"invalid JSON ({err.msg})") from err
    return tuple(rows)


@functools.lru_cache(maxsize=4)
def _kb_index(path: Path = KB_PATH) -> BM25Index:
    return BM25Index([f"{d['title']} {d['text']}" for d in load_kb(path)])


def search(query: str, k: int = 3) -> list[dict[str, str]]:
    """The top-k knowledge-base documents for `query` as {title, text}; empty when nothing matches."""
    kb = load_kb()
    return [{"title": kb[i]["title"], "text": kb[i]["text"]} for i in _kb_index().top(query, k)]


def search_ids(query: str, k: int = 3) -> list[str]:
    """The ids of the documents `search` returns, for scoring a query by what it retrieves."""
    kb = load_kb()
    return [kb[i]["id"] for i in _kb_index().top(query, k)]
