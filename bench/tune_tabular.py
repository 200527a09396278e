"""Tuners against a tabular benchmark: the real `posttrain tune` episode loop, with each training
replaced by a lookup in `bench/results/tune_table.json` (written by `bench/tune_table.py`).

The episode is `posttrain.pipelines.tune.run_episode` itself (judge, reward-penalty, tuner,
proposer, rationale), so what is compared is the tuner as `posttrain tune` runs it; only TRAIN
is a lookup. The table's grid fixes every hyperparameter but lr, lora_r and batch_size; a
proposed lr is snapped to the nearest tabulated lr on a log scale.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The arms and the tuner setting each runs. centaur_parzen is the Centaur hybrid on TPE: its
# name avoids "tpe" and "cma" so no reader mistakes its row for the classical arms'.
ARMS: dict[str, dict[str, Any]] = {
    "agents": {"tuner": "agents"},
    "random": {"tuner": "random"},
    "tpe": {"tuner": "tpe"},
    "cma": {"tuner": "cma"},
    "hybrid": {"tuner": "hybrid"},
    "centaur": {"tuner": "centaur", "centaur_base": "cma"},
    "centaur_parzen": {"tuner": "centaur", "centaur_base": "tpe"},
}
AGENT_BASED = ("agents", "hybrid", "centaur", "centaur_parzen")
CLASSICAL = ("tpe", "cma")


class Table:
    """The tabulated configurations; `lookup(hparams)` is what a training would have returned."""

    def __init__(self, path: Path) -> None:
        data = json.loads(Path(path).read_text())
        self.data = data
        self.rows = list(data["table"].values())
        self.lrs = sorted({r["lr"] for r in self.rows})
        self.by_key = {(r["lr"], r["lora_r"], r["batch_size"]): r for r in self.rows}
        self.best_val = min(r["val_loss"] for r in self.rows)

    def space(self, default_lr: float = 2e-4) -> Any:
        """The tuners' search space: the table's ranges, the project's defaults snapped onto the grid."""
        from posttrain.config.search_space import Choice, FloatRange, SearchSpace

        s, fixed = self.data["space"], self.data["fixed"]

        def pick(values: list[int], wanted: int) -> int:
            return min(values, key=lambda v: (abs(v - wanted), v))

        def single(value: float) -> FloatRange:
            return FloatRange(low=value, high=value, default=value)

        lr_default = self.snap_lr(default_lr)
        return SearchSpace(
            lr=FloatRange(low=min(self.lrs), high=max(self.lrs), log=True, default=lr_default),
            batch_size=Choice(values=s["batch_size"], default=pick(s["batch_size"], 4)),
            lora_r=Choice(values=s["lora_r"], default=pick(s["lora_r"], 16)),
            lora_alpha=Choice(values=[fixed["lora_alpha"]], default=fixed["lora_alpha"]),
            epochs=Choice(values=[fixed["epochs"]], default=fixed["epochs"]),
            warmup_ratio=single(fixed["warmup_ratio"]),
            lora_dropout=single(fixed["lora_dropout"]),
        )

    def snap_lr(self, lr: float) -> float:
        return min(self.lrs, key=lambda x: abs(math.log(x) - math.log(lr)))

    def row(self, hparams: dict[str, Any]) -> dict[str, Any]:
        return self.by_key[
            (self.snap_lr(float(hparams["lr"])), int(hparams["lora_r"]), int(hparams["batch_size"]))
        ]

    def lookup(self, hparams: dict[str, Any]) -> dict[str, Any]:
        """A training's metrics as `make_train_and_eval` returns them, from the table."""
        r = self.row(hparams)
        return {
            "eval_loss": r["val_loss"],
            "perplexity": math.exp(min(r["val_loss"], 50.0)),
            "status": r["status"],
            "train_s": r["seconds"],
            "fit_s": r["train_s"],
        }


def run_arm(
    table: Table, arm: str, seed: int, budget: int, backend: str = "rules", **agent: Any
) -> list[dict]:
    """One tuner for `budget` episodes; per episode the trained config's table row and its source."""
    from posttrain.agents.backends import AgentLog
    from posttrain.agents.history import EpisodeSummary
    from posttrain.agents.tuners import make_proposer
    from posttrain.config import TuneConfig
    from posttrain.pipelines.tune import _agent_team, run_episode

    settings = {**ARMS[arm], "seed": seed, "max_episodes": budget, "force_min_episodes": budget}
    cfg = TuneConfig.model_validate(
        {
            "search_space": table.space().model_dump(),
            "agents": {**settings, "qa": False, "backend": backend, **agent},
            "seal": {"mode": "none"},
        }
    )
    a = cfg.agents
    # The judge may not end a run early here: every arm gets exactly `budget` trainings.
    team = _agent_team(cfg, AgentLog())
    team.degrade_tol = 1e9
    proposer = make_proposer(
        a.tuner,
        cfg.search_space,
        seed,
        a.tpe_startup_trials,
        override_share=a.override_share,
        centaur_base=a.centaur_base,
    )
    train_many: Callable = lambda episode, proposals: [table.lookup(p) for p in proposals]  # noqa: E731
    history: list[EpisodeSummary] = []
    metrics: dict[int, dict] = {}
    trace: list[dict] = []
    for episode in range(budget):
        row = run_episode(episode, history, metrics, cfg, team, proposer, None, None, [], [], train_many)
        if row["kind"] == "stop":
            break
        history.append(
            EpisodeSummary.model_validate(
                {
                    "episode": episode,
                    "hparams": row["hparams"],
                    "decisions": row["decisions"],
                    **row["metrics"],
                }
            )
        )
        metrics[episode] = row["metrics"]
        trace.append(
            {**table.row(row["hparams"]), "by": row["decisions"].get("proposal_source", {}).get("by")}
        )
    return trace


def best_at(trace: list[dict], n: int) -> dict:
    """The table row with the lowest validation loss among the first `n` trainings."""
    return min(trace[:n], key=lambda r: r["val_loss"])
