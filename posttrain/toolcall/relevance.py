"""Which offered tool a request is about, read by the language model as a noisy channel.

Why: a tuned 135M model calls some tool on every request, even when none fits (irrelevance 0.00
on unseen tool families across every data fix tried in issue 13: 15% and 30% no-call rows, no-call
twins, description and checklist Thoughts), and picks the wrong one of several about a fifth of
the time. Asking the model the other way round works without any training: a tool fits when its
description makes the request more likely. The score of a tool is the mean per-token
log P(request | "Tool: <name>: <description> (<parameters>)") - log P(request | no tool), the
channel direction of Min et al. 2022 ("Noisy Channel Language Model Prompting"). Measured with
the base smollm2-135m on 200 validation-family requests (bench/tool_relevance.py): the best
tool's score separates requests some tool fits from those none does with AUC 0.92, and the
best-scoring tool is the gold one for 97% of the requests that have one (the SFT model's own
choice: 78%). The reverse direction (P(tool | request)) gave AUC 0.88 and top-1 0.85.

A `RelevanceGate` turns the scores into the constrained decoder's choice: the best tool only,
or no tool at all (a final answer) when even the best scores under the threshold; `calibrate`
sets that threshold from scored requests (posttrain's own validation tool families, never the
data being evaluated), keeping must-call first.

Which model scores is the gate's `scorer`: the evaluated model itself, its base model with the
adapter off, or a LoRA trained for this decision (`train.relevance`, "trained"). Tuning on tool
calls blunts the channel where the gate needs it most, at high recall: on validation families
with ~94% of calls kept, the base smollm2-135m declines 0.81 of the requests no tool fits, the
tuned one 0.55 (bench/tool_relevance.py). Training the channel for the gate's decision carries
further across families than either (see `train.relevance`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from posttrain.toolcall.spec import Tool

GateScorer = Literal["model", "base", "trained"]
"""Whose channel scores a gate: the evaluated model, its base (adapter off), or a relevance scorer
trained for the gate (`train.relevance`) loaded beside it."""

ChannelScore = Callable[[Sequence[str], Sequence[str]], list[float]]
"""Mean per-token log P(target | prefix) for each (prefix, target) pair, e.g. `inference.channel_scorer`."""


def tool_line(tool: Tool) -> str:
    """A tool as the channel reads it: "Tool: <name>: <description> (<param>: <description>, ...)"."""
    properties = tool.parameters.get("properties", {}) if isinstance(tool.parameters, dict) else {}
    params = ", ".join(
        f"{k}: {v.get('description', '')}" for k, v in properties.items() if isinstance(v, dict)
    )
    return f"Tool: {tool.name}: {tool.description} ({params})"


def tool_prefix(tool: Tool) -> str:
    """The text a tool's request is scored after: its name, description and every parameter's."""
    return f"{tool_line(tool)}\nA request for this tool: "


# The baseline is a tool that says nothing, in the same frame: a terse request ("se tax for 74133")
# is likelier after any "Tool: ... A request for this tool:" than after a bare "A request:", which
# scored unrelated tools up (AUC 0.918 with the bare prefix, 0.949 with this one; bench/tool_relevance.py).
NULL_PREFIX = tool_prefix(Tool("tool", "A tool.", {}))


def memoized(channel: ChannelScore, memo: dict[tuple[str, str], float]) -> ChannelScore:
    """`channel` scoring each (prefix, target) pair once into `memo`, which the caller keeps: a
    base model's scores are the same under every adapter, and an align run's evaluation gates the
    same requests for each model it scores (~4 min of a 135M model on a 2-core CPU per model)."""

    def score(prefixes: Sequence[str], targets: Sequence[str]) -> list[float]:
        pairs = list(zip(prefixes, targets, strict=True))
        missing = [pair for pair in dict.fromkeys(pairs) if pair not in memo]
        if missing:
            fresh = channel([p for p, _ in missing], [t for _, t in missing])
            memo.update(zip(missing, fresh, strict=True))
        return [memo[pair] for pair in pairs]

    return score


def relevance_scores(
    channel: ChannelScore, requests: Sequence[str], tools: Sequence[Sequence[Tool]]
) -> list[list[float]]:
    """For each request, one score per offered tool (see the module docstring), in one call of
    `channel` over every pair so it can batch them."""
    prefixes: list[str] = []
    targets: list[str] = []
    for request, offered in zip(requests, tools, strict=True):
        prefixes += [tool_prefix(t) for t in offered] + [NULL_PREFIX]
        targets += [request] * (len(offered) + 1)
    logprobs = iter(channel(prefixes, targets))
    scores = []
    for offered in tools:
        given = [next(logprobs) for _ in offered]
        null = next(logprobs)
        scores.append([x - null for x in given])
    return scores


@dataclass(frozen=True)
class RelevanceExample:
    """One request and its candidates as a trained scorer learns them (`train.relevance`):
    `prefixes` are the offered tools' `tool_prefix` with `NULL_PREFIX` LAST, `gold` indexes them
    (the null tool's index: no offered tool fits)."""

    prefixes: tuple[str, ...]
    request: str
    gold: int

    @classmethod
    def of(cls, request: str, tools: Sequence[Tool], gold: str | None) -> RelevanceExample:
        """The example of a request offered `tools` whose right call is the tool named `gold`
        (None: no call)."""
        names = [t.name for t in tools]
        if gold is not None and gold not in names:
            raise ValueError(f"the gold tool {gold!r} is not among the offered {names}")
        index = len(names) if gold is None else names.index(gold)
        return cls(tuple(tool_prefix(t) for t in tools) + (NULL_PREFIX,), request, index)


@dataclass(frozen=True)
class RelevanceGate:
    """Keep the best-scoring tool when its score reaches `threshold` (nats per request token),
    none otherwise. A model's scores have their own scale (the tuned smollm2-135m scores ~0.1
    higher than the base), so the threshold belongs to the model that scores (`scorer`: the
    evaluated model, its base with the adapter off, or a trained scorer): `calibrate` finds it."""

    threshold: float
    scorer: GateScorer = "model"

    def choose(self, scores: Sequence[float]) -> int | None:
        """The index of the tool to call, or None for no call."""
        if not scores:
            return None
        best = max(range(len(scores)), key=scores.__getitem__)
        return best if scores[best] >= self.threshold else None


def calibrate(
    call_best: Sequence[float], no_call_best: Sequence[float], min_pass: float = 0.9
) -> dict[str, float]:
    """The threshold that declines the most requests no tool fits while still letting at least
    `min_pass` of those some tool fits through (declines only grow with the threshold, so it is
    the largest such one), with the two shares it gives on these scores. Must-call comes first:
    a gate that refuses everything would score irrelevance 1.0. Raises ValueError without call rows."""
    if not call_best:
        raise ValueError("calibrating a relevance gate needs requests some tool fits")
    ranked = sorted(call_best)
    # the most call rows that may fall under it: k <= (1 - min_pass) n (the epsilon: 0.1 * 10 < 1.0)
    threshold = ranked[min(int((1 - min_pass) * len(ranked) + 1e-9), len(ranked) - 1)]
    passing = sum(x >= threshold for x in call_best) / len(call_best)
    declined = sum(x < threshold for x in no_call_best) / len(no_call_best) if no_call_best else None
    return {
        "threshold": round(threshold, 4),
        "call_rows_passing": round(passing, 4),
        "no_call_rows_declined": None if declined is None else round(declined, 4),
        "call_rows": len(call_best),
        "no_call_rows": len(no_call_best),
    }


def last_request(messages: Sequence[dict[str, str]]) -> str:
    """The text a tool must fit: the last user turn that is not a tool's observation (in the
    Thought→Action format a tool result comes back as a user turn "Observation: ...")."""
    return next(
        (
            m["content"]
            for m in reversed(messages)
            if m["role"] == "user" and not m["content"].lstrip().startswith("Observation:")
        ),
        "",
    )
