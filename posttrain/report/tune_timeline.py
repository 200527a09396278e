"""The tuner timeline `posttrain runs show` prints for a tune run: per episode who proposed the
trained hyperparameters and why, what they were, the loss to beat against the loss observed,
and the judge's decision; then the judge's stop, if it stopped the run.

It reads only what the episode rows and the run summary already hold (`proposal_source`,
`proposed_by`, `rationale`, `judge`), so it shows old runs too, with less detail. The dashboard's
richer HTML timeline is `report/timeline.py`; both read the same recorded rationale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from posttrain.agents.rationale import explain_episode
from posttrain.store import EpisodeRecord


def tune_timeline(episodes: Sequence[EpisodeRecord], summary: Mapping[str, Any] | None = None) -> Table:
    """One row per episode: # · proposer · hparams · why · to beat → observed · judge."""
    table = Table(title="tuner timeline", title_justify="left")
    for column in ("#", "proposer", "hparams", "why", "to beat → observed", "judge"):
        table.add_column(column, justify="right" if column == "#" else "left")
    best, previous = math.inf, None
    for e in episodes:
        d = e.decisions or {}
        by, why = _source(d, e.hparams, previous)
        previous = e.hparams
        loss = e.metrics.get("eval_loss")
        observed = f"{loss:.4f}" if isinstance(loss, int | float) and math.isfinite(loss) else "-"
        to_beat = "-" if best == math.inf else f"{best:.4f}"
        judge = d.get("judge") or {}
        if not isinstance(judge, Mapping):  # a bare verdict string, as older records hold
            judge = {"continue": str(judge).lower() != "stop"}
        verdict = "-" if not judge else ("continue" if judge.get("continue", True) else "stop")
        if judge.get("reason"):
            verdict += f": {judge['reason']}"
        table.add_row(str(e.index), by, _hparams(e.hparams), why, f"{to_beat} → {observed}", verdict)
        if observed != "-":
            best = min(best, float(loss))
    stop = (summary or {}).get("judge_stop")
    if stop:
        table.add_row(
            "", "judge", "", "", "", f"stop before episode {stop.get('before_episode')}: {stop.get('reason')}"
        )
    return table


def _source(
    decisions: Mapping[str, Any], trained: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> tuple[str, str]:
    source = decisions.get("proposal_source")
    if isinstance(source, list):  # several proposals per episode: the one that won
        source = source[decisions.get("best_proposal") or 0]
    source = source or {}
    by = source.get("by") or decisions.get("proposed_by") or "agents"
    why = source.get("why") or ""
    # runs recorded before episodes carried a rationale get it recomputed, as on the dashboard
    rationale = (decisions.get("rationale") or explain_episode(decisions, trained, previous)).get("summary")
    if rationale:
        why = f"{why}; {rationale}" if why else rationale
    return by, why


def _hparams(hp: Mapping[str, Any]) -> str:
    keys = ("lr", "lora_r", "batch_size")
    return " ".join(f"{k}={hp[k]:.3g}" if k == "lr" else f"{k}={hp[k]}" for k in keys if k in hp)
