"""Coherence: how on-topic a response is for its prompt (TF-IDF cosine, or a model's embeddings)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from posttrain.train.rewards.text import Text, check_pairs, plain_text, terms


def coherence(
    prompts: Sequence[Text],
    responses: Sequence[Text],
    *,
    idf_corpus: Iterable[str] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    batch_size: int = 8,
) -> list[float]:
    """Relevance of each response to its prompt, in [0, 1]; 0 for an off-topic answer.

    Default: cosine between TF-IDF vectors of prompt and response (lowercased words,
    English stopwords dropped, plurals folded). IDF is smoothed, idf = ln((1+N)/(1+df)) + 1,
    over `idf_corpus` when given (pass the training prompts for batch-independent values),
    else over the distinct prompts and responses of this call, so the value of one sample
    depends a little on its batch. A response sharing no content word with the prompt
    scores 0.

    With `model` and `tokenizer`, the cosine of mean-pooled last hidden states instead,
    clipped at 0. A causal LM's states all point roughly the same way, so those values
    bunch near 1 and separate topics weakly; use it with a sentence-embedding model.
    """
    check_pairs(prompts, responses)
    p_texts = [plain_text(p) for p in prompts]
    r_texts = [plain_text(r) for r in responses]
    if model is not None:
        if tokenizer is None:
            raise ValueError("coherence with a model needs its tokenizer too")
        p_emb = _mean_pooled(model, tokenizer, p_texts, batch_size)
        r_emb = _mean_pooled(model, tokenizer, r_texts, batch_size)
        cos = torch.nn.functional.cosine_similarity(p_emb, r_emb, dim=-1)
        return [min(1.0, max(0.0, float(c))) for c in cos]
    docs = list(idf_corpus) if idf_corpus is not None else list(dict.fromkeys(p_texts + r_texts))
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(terms(doc)))
    n = len(docs)

    def vector(text: str) -> dict[str, float]:
        tf = Counter(terms(text))
        return {t: c * (math.log((1 + n) / (1 + df[t])) + 1.0) for t, c in tf.items()}

    return [_cosine(vector(p), vector(r)) for p, r in zip(p_texts, r_texts, strict=True)]


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    dot = sum(v * b[t] for t, v in a.items() if t in b)
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return 0.0 if norm == 0 else min(1.0, dot / norm)


@torch.no_grad()
def _mean_pooled(model: Any, tokenizer: Any, texts: list[str], batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=512,
            add_special_tokens=False,
        ).to(device)
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
    return torch.cat(out).cpu()
