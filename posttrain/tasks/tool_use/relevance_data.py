"""Which training tool families a trained relevance scorer (`train.relevance`) is fitted on, and
which it never sees so that its threshold can be set there (with the validation families:
`pool_align.calibrated_gate`).

Why two groups of the training families and not the validation families: a threshold set on the
three validation families, as the base-scored gate's is, transferred badly for a trained scorer
(those families score high for every scorer, so the threshold came out too strict elsewhere:
must-call 0.77-0.85 at keep 0.93 on held-back training families). Set on training families held
back from the scorer, it transferred to the validation families at keep 0.90 with must-call 0.99
and irrelevance 0.88, against 0.98 / 0.52-0.64 for the base channel, on two different family
splits (variant gate_trained_relevance_scorer, bench/results/align_quality.json). On the bench's
held-out families that threshold still declined only 0.68 of the no-call requests, as it did on
the validation families, which is why both groups set it now. Neither group is a test family:
the held-out families stay unseen by policy and scorer alike.
"""

from __future__ import annotations

from posttrain.tasks.tool_use.pool import pool_functions
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.pool_rows import pool_rows
from posttrain.tasks.tool_use.scoring import NO_CALL
from posttrain.toolcall.relevance import RelevanceExample, last_request

HOLD_BACK_EVERY = 4  # every 4th training family, in name order: 7 of 27 held back from the scorer
NO_CALL_SHARE = 0.3  # requests offered only tools that do not fit, in fitting and calibration rows


def scorer_families() -> tuple[list[str], list[str]]:
    """(families the scorer is fitted on, families held back from it for its threshold)."""
    families = sorted({fn.family for fn in pool_functions("train")})
    held = families[::HOLD_BACK_EVERY]
    return [f for f in families if f not in held], held


def relevance_examples(rows: int, seed: int) -> list[RelevanceExample]:
    """`rows` requests of the fitted families (`NO_CALL_SHARE` of them no-call) as examples."""
    fit, _ = scorer_families()
    examples = []
    for i, row in enumerate(pool_rows(rows, seed, "train", irrelevance=NO_CALL_SHARE, families=fit)):
        item = pool_item(row, i)
        gold = None if item.gold == NO_CALL else next(iter(item.gold[0]))
        examples.append(RelevanceExample.of(last_request(item.messages), item.tools, gold))
    return examples


def held_back_rows(rows: int, seed: int) -> list[dict]:
    """`rows` requests of the families held back from the scorer (`NO_CALL_SHARE` no-call)."""
    _, held = scorer_families()
    return pool_rows(rows, seed, "train", irrelevance=NO_CALL_SHARE, families=held)
