"""Regressions said in words: every figure that got worse from one model to the next (base → tuned
→ DPO), so a report's reader does not have to spot a 1.00 → 0.00 in a table of numbers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# A metric whose name holds one of these is better when it is lower (hallucinated_function_rate,
# brier, eval_loss, agent_forced: answers the loop had to force); a name in NO_DIRECTION is neither
# better high nor low, so it never regresses.
LOWER_IS_BETTER = ("hallucinated", "invented", "brier", "loss", "error", "perplexity", "forced")
NO_DIRECTION = ("mean_tool_calls",)
TOLERANCE = 0.01  # on 0..1 shares: below one example in a hundred, a change is not reported

Figure = Mapping[str, Any]  # {"value": float | None, "n": int | None, "ci": [lo, hi] | None}


def better(metric: str) -> str | None:
    """ "higher", "lower" or None (no better direction) for a metric's name."""
    if any(name in metric for name in NO_DIRECTION):
        return None
    return "lower" if any(word in metric for word in LOWER_IS_BETTER) else "higher"


def from_flat(metrics: Mapping[str, Any], names: Sequence[str]) -> dict[str, Figure]:
    """Figures from the flat bench format (`name`, `name_ci`, `name_n`, and `n` for the set)."""
    return {
        name: {
            "value": metrics.get(name),
            "n": metrics.get(f"{name}_n", metrics.get("n")),
            "ci": metrics.get(f"{name}_ci"),
        }
        for name in names
    }


def regressions(
    models: Mapping[str, Mapping[str, Figure | None]],
    labels: Mapping[str, str],
    tolerance: float = TOLERANCE,
    direction: Callable[[str], str | None] = better,
) -> list[str]:
    """One sentence per figure that got worse by more than `tolerance` from each model to the next
    one in `models`' order, e.g. "DPO lowered irrelevance_accuracy from 1.00 to 0.00 compared with
    the tuned adapter (n=16)." Says "beyond its CI" when both CIs exist and do not overlap.

    `labels` name the models in a sentence ("the tuned adapter"; the model's key when absent). A
    figure missing or None on either side is not compared: it has nothing to regress from or to.
    """
    names = list(models)
    out = []
    for before, after in zip(names, names[1:], strict=False):
        for metric, new in models[after].items():
            old = models[before].get(metric)
            predicate = _worse(metric, old, new, direction(metric), tolerance, labels.get(before, before))
            if predicate:
                subject = labels.get(after, after)
                out.append(f"{subject[:1].upper()}{subject[1:]} {predicate}")
    return out


def regressions_markdown(
    groups: Mapping[str, Mapping[str, Mapping[str, Figure | None]]],
    labels: Mapping[str, str],
    tolerance: float = TOLERANCE,
) -> str:
    """The "## Regressions" section of a report: per group of figures (an evaluation set) its
    sentences as a list, or a line saying that nothing got worse."""
    parts = ["## Regressions\n"]
    for where, models in groups.items():
        found = regressions(models, labels, tolerance)
        if found:
            parts.append(f"On {where}:\n\n" + "".join(f"- {s}\n" for s in found))
        else:
            parts.append(
                f"On {where}: no figure got worse by more than {tolerance:g} from a model to the next.\n"
            )
    return "\n".join(parts)


def _worse(
    metric: str,
    old: Figure | None,
    new: Figure | None,
    direction: str | None,
    tolerance: float,
    reference: str,
) -> str | None:
    """The sentence after its subject, or None when `new` is no worse than `old`."""
    a, b = _value(old), _value(new)
    if direction is None or a is None or b is None:
        return None
    worse = a - b if direction == "higher" else b - a
    if worse <= tolerance:
        return None
    verb = "lowered" if b < a else "raised"
    n_old, n_new = (old or {}).get("n"), (new or {}).get("n")
    n = f"n={n_new}" if n_old == n_new else f"n={n_old} and {n_new}"
    beyond = ", beyond its CI" if _apart((old or {}).get("ci"), (new or {}).get("ci")) else ""
    hint = "; lower is better" if direction == "lower" else ""
    return f"{verb} {metric} from {a:.2f} to {b:.2f} compared with {reference} ({n}{beyond}){hint}."


def _value(fig: Figure | None) -> float | None:
    value = (fig or {}).get("value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _apart(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two confidence intervals are both there and do not overlap."""
    return bool(a) and bool(b) and (a[1] < b[0] or b[1] < a[0])  # type: ignore[index]
