"""Combining components into the ADLF reward, and putting reward-model scores on a mixable scale.

reward   = (1 - alpha) * external + alpha * internal                      (`adlf_reward`)
internal = weighted mean of the [0, 1] scores + sum of weighted penalties  (`internal_reward`)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from posttrain.train.rewards.coherence import coherence
from posttrain.train.rewards.faithfulness import faithfulness
from posttrain.train.rewards.fluency import fluency
from posttrain.train.rewards.length import length_penalty
from posttrain.train.rewards.text import Text

PENALTIES = frozenset({"length"})  # components that are <= 0 and are added, not averaged
COMPONENTS = ("coherence", "length", "fluency", "faithfulness", "quality")


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
