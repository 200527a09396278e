"""Which agent's value an episode trained, and why: the tuner's proposal, the reward-penalty
override merged on top, the proposer (agents, TPE, random, an lr-ladder slot) and the clamp,
told key by key against what the previous episode trained.

The tune loop stores the result in the episode's `decisions["rationale"]`; the dashboard
recomputes it for runs recorded before that existed. Everything here is read from the
recorded decisions and hparams, so the text can only say what the record shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from posttrain.agents.roles.base import hparam_text, trend
from posttrain.config.search_space import HPARAM_NAMES, as_number

_REGIME_REASON = {
    "positive": "clear improvement",
    "negative": "clear regression",
    "plateau": "plateau",
}


def explain_episode(
    decisions: Mapping[str, Any], trained: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`{"summary": str, "source": {name: who}}` for one episode, compact enough to travel in
    the history every LLM role reads.

    `decisions` is the episode's recorded decisions (tuner, reward_penalty, proposed_by,
    best_proposal); `trained` the hparams it trained; `previous` what the episode before
    trained (None for the first). `source` says whose value each key trained ("tuner",
    "reward-penalty", "tpe", ...); `summary` tells every key whose trained value moved, or was
    not the tuner's, in one line.
    """
    reward = decisions.get("reward_penalty") or {}
    regime = (reward.get("reward_signal") or {}).get("regime", "none")
    proposed_by = decisions.get("proposed_by") or "agents"
    rows = hparam_rows(decisions, trained, previous)
    lines = [
        line for name, row in rows.items() if (line := _line(name, row, regime, proposed_by)) is not None
    ]
    if not lines:
        lines = [_unchanged(previous is None, proposed_by)]
    return {"summary": "; ".join(lines), "source": {name: row["source"] for name, row in rows.items()}}


def hparam_rows(
    decisions: Mapping[str, Any], trained: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Per hyperparameter: `previous`, `tuner`, `override`, `trained`, `source` (whose value was
    trained) and `change` ("new" on the first episode, else up/down/same against `previous`)."""
    tuner = (decisions.get("tuner") or {}).get("hparams") or {}
    override = (decisions.get("reward_penalty") or {}).get("override") or {}
    proposed_by = decisions.get("proposed_by") or "agents"
    slot = decisions.get("best_proposal") or 0
    rows: dict[str, dict[str, Any]] = {}
    for name in (k for k in HPARAM_NAMES if k in trained):
        row = {
            "previous": None if previous is None else previous.get(name),
            "tuner": tuner.get(name),
            "override": override.get(name),
            "trained": trained[name],
        }
        row["source"] = _source(name, row, proposed_by, slot)
        row["change"] = "new" if previous is None else trend(row["previous"], row["trained"])
        rows[name] = row
    return rows


def _same(a: Any, b: Any) -> bool:
    x, y = as_number(a), as_number(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12)


def _source(name: str, entry: Mapping[str, Any], proposed_by: str, slot: int) -> str:
    """Whose value was trained. The override is merged over the tuner, so it wins where both match."""
    trained = entry["trained"]
    if proposed_by in ("random", "tpe", "cma"):
        return proposed_by
    if entry["override"] is not None and _same(trained, entry["override"]):
        return "reward-penalty"
    if entry["tuner"] is not None and _same(trained, entry["tuner"]):
        return "tuner"
    if proposed_by == "hybrid":
        return "tpe"
    if name == "lr" and slot:
        return f"lr ladder (proposal {slot})"
    return "search-space clamp"


def _line(name: str, e: Mapping[str, Any], regime: str, proposed_by: str) -> str | None:
    """One key's story, or None when nothing happened to it worth saying."""
    moved = e["change"] in ("up", "down")
    overridden = e["override"] is not None and e["tuner"] is not None and not _same(e["override"], e["tuner"])
    tuner_dropped = e["tuner"] is not None and not _same(e["tuner"], e["trained"])
    if not (moved or overridden or tuner_dropped):
        return None
    value = hparam_text(name, e["trained"])
    parts = []
    if e["tuner"] is not None and proposed_by in ("agents", "hybrid"):
        said = f"tuner proposed {name} {hparam_text(name, e['tuner'])}"
        if e["previous"] is not None:
            said += f" ({trend(e['previous'], e['tuner'])})"
        parts.append(said)
    if overridden:
        why = _REGIME_REASON.get(regime, regime)
        parts.append(f"reward-penalty set it to {hparam_text(name, e['override'])}: regime {why}")
    trained = f"trained {value}" if parts else f"{name}: trained {value}"
    if e["previous"] is not None:
        trained += f" ({_change_words(name, e)})"
    source = e["source"]
    trained += f", the {source}'s value" if source in ("tuner", "reward-penalty") else f", from {source}"
    return "; ".join([*parts, trained])


def _change_words(name: str, e: Mapping[str, Any]) -> str:
    if e["change"] == "same":
        return f"same as before, {hparam_text(name, e['previous'])}"
    return f"{e['change']} from {hparam_text(name, e['previous'])}"


def _unchanged(first: bool, proposed_by: str) -> str:
    if first:
        return f"first episode: trained the {'tuner' if proposed_by == 'agents' else proposed_by}'s proposal"
    return "trained the same hparams as the episode before"
