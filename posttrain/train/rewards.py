"""ADLF reward components (seed 003): external reward-model score blended with internal signals.

    reward   = (1 - alpha) * external + alpha * internal                      (`adlf_reward`)
    internal = weighted mean of the [0, 1] scores + sum of weighted penalties  (`internal_reward`)

Internal components, each reported on its own (`reward_breakdown`):

| name         | function         | range   | meaning                                               |
|--------------|------------------|---------|-------------------------------------------------------|
| coherence    | `coherence`      | [0, 1]  | TF-IDF cosine between prompt and response             |
| length       | `length_penalty` | [-1, 0] | 0 inside the token band; negative outside or repeating |
| fluency      | `fluency`        | [0, 1]  | exp(-mean NLL / temperature) under a reference model  |
| faithfulness | `faithfulness`   | [0, 1]  | share of the response's numbers and names the prompt backs |

"quality" (seed 003's quality_weight) is not computed here: it names whatever overall
quality score the caller supplies, normally the normalised reward-model score, so the
multi-objective weights fluency/faithfulness/quality can all go to `internal_reward`.

Every function takes prompts and responses as plain strings or as TRL conversational
messages (lists of {role, content}). Formatted prompts may be passed too: chat-template
tokens, the ChatML/Llama-3 system block, the role/turn markers of
`posttrain.tasks.conversations` and a `<score=N>` prefix are stripped before the text
metrics look at them. Cleaner still is the `context` column of `to_prompts` rows, which
TRL's GRPO/RLOO trainers pass to reward functions as a keyword argument.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch

Text = str | list[dict[str, Any]]

PENALTIES = frozenset({"length"})  # components that are <= 0 and are added, not averaged
COMPONENTS = ("coherence", "length", "fluency", "faithfulness", "quality")

_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just me more most my no
    nor not now of off on once only or other our out over own same she should so some such than that
    the their them then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours human assistant user
    system
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# --------------------------------------------------------------------------- text helpers

_SYSTEM_BLOCK = re.compile(
    r"<\|im_start\|>system.*?<\|im_end\|>|<\|start_header_id\|>system<\|end_header_id\|>.*?<\|eot_id\|>",
    re.DOTALL,
)
_ROLE_HEADER = re.compile(
    r"<\|im_start\|>\w+\n?|<\|start_header_id\|>\w+<\|end_header_id\|>\n*|\[TURN \d+\] (?:Human|Assistant):"
)
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|<score=[^>]{0,8}>")


def plain_text(value: Text) -> str:
    """The words a person would read: message contents joined, template markup removed."""
    if isinstance(value, list):
        value = "\n".join(str(m.get("content", "")) for m in value if m.get("role") != "system")
    return _SPECIAL.sub(" ", _ROLE_HEADER.sub("\n", _SYSTEM_BLOCK.sub(" ", value)))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _stem(word: str) -> str:
    # Plurals only: enough to match "apples" with "apple" without a stemmer's surprises.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _terms(text: str) -> list[str]:
    return [_stem(w) for w in _words(text) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]


def _check_pairs(prompts: Sequence[Text], responses: Sequence[Text]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")


# --------------------------------------------------------------------------- coherence


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
    _check_pairs(prompts, responses)
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
        df.update(set(_terms(doc)))
    n = len(docs)

    def vector(text: str) -> dict[str, float]:
        tf = Counter(_terms(text))
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


# --------------------------------------------------------------------------- length


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
    words = _words(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


# --------------------------------------------------------------------------- fluency


@torch.no_grad()
def fluency(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Text],
    responses: Sequence[Text],
    batch_size: int = 8,
    *,
    temperature: float = 5.0,
    max_length: int = 1024,
) -> list[float]:
    """How likely the reference model finds each response after its prompt, in (0, 1].

    fluency = exp(-mean NLL / temperature) = perplexity ** (-1 / temperature), with the NLL
    averaged over the response's tokens only (the prompt is context, not scored). With the
    default temperature 5: perplexity 1 -> 1.0, 10 -> 0.63, 100 -> 0.40, 50,000 -> 0.11.
    An empty response scores 0. Prompts are used as given when they are strings
    (format them first) and through the chat template when they are message lists.
    Prompt and response are tokenized separately and joined, so the scored tokens are
    exactly the response's; the prompt is cut from the left to fit `max_length`.
    The model runs in eval mode without gradients and is put back in its previous mode.
    """
    _check_pairs(prompts, responses)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    pairs = [_token_pair(tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        for start in range(0, len(pairs), batch_size):
            scores.extend(_batch_nll(model, pairs[start : start + batch_size], tokenizer, device))
    finally:
        model.train(was_training)
    return [0.0 if nll is None else math.exp(-nll / temperature) for nll in scores]


def _token_pair(tokenizer: Any, prompt: Text, response: Text, max_length: int) -> tuple[list[int], list[int]]:
    if isinstance(prompt, list):
        prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    if isinstance(response, list):
        response = "".join(str(m.get("content", "")) for m in response)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"][:max_length]
    keep = max(0, max_length - len(r_ids))
    return p_ids[max(0, len(p_ids) - keep) :] if keep else [], r_ids


def _batch_nll(model: Any, pairs: list[tuple[list[int], list[int]]], tokenizer: Any, device: Any) -> list:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(p) + len(r) for p, r in pairs)
    if width == 0:
        return [None] * len(pairs)
    ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for i, (p, r) in enumerate(pairs):  # right padding: positions stay 0..n-1 for every row
        seq = p + r
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
        labels[i, len(p) : len(seq)] = torch.tensor(r, dtype=torch.long)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    shifted = labels[:, 1:].to(device)
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="none"
    )
    counted = (shifted != -100).sum(1)
    # The first response token of a row with no prompt has no context to be predicted from.
    return [None if c == 0 else float(n.sum() / c) for n, c in zip(nll, counted, strict=True)]


# --------------------------------------------------------------------------- faithfulness

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
    _check_pairs(prompts, responses)
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


# --------------------------------------------------------------------------- combining


def internal_reward(components: dict[str, Sequence[float]], weights: dict[str, float]) -> list[float]:
    """Multi-objective internal reward: weighted mean of scores plus weighted penalties.

        internal = sum_k w_k s_k / sum_k w_k   (score components, each in [0, 1])
                 + sum_p w_p s_p                (penalty components, `PENALTIES`, each <= 0)

    Seed 003's flags map to weights by name: {"fluency": fluency_weight, "faithfulness":
    faithfulness_weight, "quality": quality_weight, "coherence": ..., "length": ...}.
    Components without a weight (or with weight 0) are carried for logging only. A
    weighted component that is missing raises ValueError, as do negative weights and
    lists of different lengths. Range: [-sum of penalty weights, 1].
    """
    active = {k: w for k, w in weights.items() if w != 0}
    for name, w in active.items():
        if w < 0 or not math.isfinite(w):
            raise ValueError(f"weight {name!r} must be a finite number >= 0, got {w}")
        if name not in components:
            raise ValueError(
                f"weight {name!r} is set but there is no {name!r} component (got {sorted(components)})"
            )
    sizes = {len(v) for v in components.values()}
    if len(sizes) > 1:
        raise ValueError(f"components have different lengths: { {k: len(v) for k, v in components.items()} }")
    n = sizes.pop() if sizes else 0
    scored = {k: w for k, w in active.items() if k not in PENALTIES}
    total = sum(scored.values())
    out = []
    for i in range(n):
        mean = sum(w * components[k][i] for k, w in scored.items()) / total if total else 0.0
        out.append(mean + sum(w * components[k][i] for k, w in active.items() if k in PENALTIES))
    return out


def adlf_reward(external: Sequence[float], internal: Sequence[float], alpha: float) -> list[float]:
    """(1 - alpha) * external + alpha * internal, per sample; alpha in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if len(external) != len(internal):
        raise ValueError(f"got {len(external)} external but {len(internal)} internal rewards")
    return [(1.0 - alpha) * e + alpha * i for e, i in zip(external, internal, strict=True)]


def reward_breakdown(
    components: dict[str, Sequence[float]],
    weights: dict[str, float],
    external: Sequence[float],
    alpha: float,
) -> list[dict[str, float]]:
    """One dict per sample: every component, then "internal", "external" and "reward".

    Made for logging each component on its own (metrics.jsonl, the report's plots);
    "reward" is exactly what `adlf_reward` returns.
    """
    internal = internal_reward(components, weights)
    total = adlf_reward(external, internal, alpha)
    rows = []
    for i, (inside, outside, reward) in enumerate(zip(internal, external, total, strict=True)):
        row = {name: float(values[i]) for name, values in components.items()}
        row.update(internal=inside, external=float(outside), reward=reward)
        rows.append(row)
    return rows


def internal_components(
    prompts: Sequence[Text],
    responses: Sequence[Text],
    which: Iterable[str] = ("coherence", "length"),
    *,
    model: Any = None,
    tokenizer: Any = None,
    length_target: tuple[int, int] = (4, 128),
    batch_size: int = 8,
) -> dict[str, list[float]]:
    """Compute the named internal components in one call (what a reward function needs).

    `which` picks from coherence, length, fluency and faithfulness; fluency needs the
    reference `model` and `tokenizer`; length counts the tokenizer's tokens when one is given.
    """
    out: dict[str, list[float]] = {}
    for name in which:
        if name == "coherence":
            out[name] = coherence(prompts, responses)
        elif name == "length":
            out[name] = length_penalty(responses, tokenizer, length_target)
        elif name == "faithfulness":
            out[name] = faithfulness(prompts, responses)
        elif name == "fluency":
            if model is None or tokenizer is None:
                raise ValueError("the fluency component needs the reference model and its tokenizer")
            out[name] = fluency(model, tokenizer, prompts, responses, batch_size)
        else:
            raise ValueError(
                f"unknown internal component {name!r} (choose from coherence, length, fluency, faithfulness)"
            )
    return out


def normalize_external(
    scores: Sequence[float],
    method: Literal["sigmoid", "zscore", "minmax"] = "sigmoid",
    *,
    center: float = 0.0,
    scale: float = 1.0,
) -> list[float]:
    """Put reward-model outputs on a scale that can be mixed with the internal reward.

    - "sigmoid": sigmoid((s - center) / scale), in (0, 1). Per sample, so a score does not
      depend on its batch; a Bradley-Terry reward model's outputs are log-odds, which is
      what a sigmoid undoes. Set `center` to the reference policy's mean score to centre it.
    - "zscore": (s - batch mean) / batch std (0 when the batch is constant); not bounded.
    - "minmax": (s - min) / (max - min) over the batch, in [0, 1] (0.5 when constant).
    """
    values = [float(s) for s in scores]
    if method == "sigmoid":
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        return [1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, (s - center) / scale)))) for s in values]
    if not values:
        return []
    if method == "zscore":
        mean = sum(values) / len(values)
        std = math.sqrt(sum((s - mean) ** 2 for s in values) / len(values))
        return [0.0 if std == 0 else (s - mean) / std for s in values]
    if method == "minmax":
        low, high = min(values), max(values)
        return [0.5 if high == low else (s - low) / (high - low) for s in values]
    raise ValueError(f"unknown method {method!r} (choose sigmoid, zscore or minmax)")
