"""Where each episode's hyperparameters come from: the agent team, random search, Optuna's
TPE or CMA-ES (`agents/optuna_proposers.py`), the hybrid that enqueues the agents' proposals
into a TPE study, or the Centaur hybrid (`agents/centaur.py`).

All of them see the same search space, start from the same first trial (the space's defaults)
and are told every result, so `bench/tune_compare.py` can give them the same budget and the
same `train_and_eval`. Proposers are rebuilt on resume by replaying `observe` over the finished
episodes (an Optuna study kept in the run's store already holds them); random search seeds each
episode on its own, so a resumed run draws exactly what the uninterrupted one would have.

An episode may train several proposals at once (`proposals_per_episode`): each has a `slot`
(0, 1, ...), all are proposed before any result is told, and slot 0 is always what a
one-proposal episode would have trained.
"""

from __future__ import annotations

import random
from typing import Any, Literal, Protocol

from posttrain.config.search_space import SearchSpace

TunerKind = Literal["agents", "random", "tpe", "cma", "hybrid", "centaur"]
TUNER_KINDS: tuple[str, ...] = ("agents", "random", "tpe", "cma", "hybrid", "centaur")


class Proposer(Protocol):
    """`propose` returns the hparams to train next; `observe` reports how they did;
    `source(episode, slot)` says who proposed that trial and why (`{"by": ..., "why": ...}`)."""

    name: str

    def propose(
        self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0
    ) -> dict[str, Any]: ...

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None: ...

    def source(self, episode: int, slot: int = 0) -> dict[str, Any]: ...


def is_first_trial(episode: int, slot: int) -> bool:
    """Every tuner trains the space's defaults first, so no arm wins by its starting point."""
    return episode == 0 and slot == 0


DEFAULT_SOURCE = {
    "by": "default",
    "why": "first trial: the search space's defaults (the same for every tuner)",
}


def lr_ladder(slot: int) -> float:
    """Factor on the learning rate of proposal `slot`: 1, 2, 1/2, 4, 1/4, ... (the lr matters most)."""
    steps = (slot + 1) // 2
    return 2.0**steps if slot % 2 else 2.0**-steps


class AgentProposer:
    """Seed 000: the tuner's proposal merged with the reward-penalty override (done by the loop).

    With several proposals per episode the agents' config is slot 0 and the others bracket its
    learning rate (`lr_ladder`), everything else kept: one agent call, k informative trainings.
    Rungs that clamp onto an lr already taken are skipped, so an agent lr at a bound of the
    range still gives k different trainings.
    """

    name = "agents"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0) -> dict[str, Any]:
        # The first episode brackets the defaults, whatever the agents said, like every other arm.
        hparams = self.space.defaults() if episode == 0 else self.space.clamp(agent_hparams)
        lr_range = self.space.param("lr")
        lrs: list[float] = []
        # 2**32 spans any sane lr range, so both bounds are reached well before the last rung.
        for rung in range(2 * slot + 64):
            lr = lr_range.clamp(hparams["lr"] * lr_ladder(rung))
            if lr not in lrs:
                lrs.append(lr)
            if len(lrs) > slot:
                break
        return {**hparams, "lr": lrs[min(slot, len(lrs) - 1)]}

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None:
        pass

    def source(self, episode: int, slot: int = 0) -> dict[str, Any]:
        if is_first_trial(episode, slot):
            return DEFAULT_SOURCE
        if slot:
            return {"by": "agents", "why": f"lr ladder around the tuner's proposal (x{lr_ladder(slot):g})"}
        return {"by": "agents", "why": "the tuner's proposal, after the reward-penalty override"}


class RandomProposer:
    """Independent uniform (log-uniform for lr) draws, one seeded generator per episode."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space, self.seed = space, seed

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0) -> dict[str, Any]:
        if is_first_trial(episode, slot):
            return self.space.defaults()
        seed: int | str = self.seed * 100_003 + episode if slot == 0 else f"{self.seed}/{episode}/{slot}"
        return self.space.sample_random(random.Random(seed))

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None:
        pass

    def source(self, episode: int, slot: int = 0) -> dict[str, Any]:
        return DEFAULT_SOURCE if is_first_trial(episode, slot) else {"by": "random", "why": "uniform draw"}


def make_proposer(
    kind: TunerKind | str,
    space: SearchSpace,
    seed: int,
    tpe_startup_trials: int = 3,
    *,
    override_share: float = 0.3,
    centaur_base: str = "tpe",
    storage: str | None = None,
    study_name: str | None = None,
) -> Proposer:
    """The proposer for `agents.tuner`. With `storage` (a SQLAlchemy URL) the Optuna-based ones keep
    their study there under `study_name`, so `optuna.load_study` and optuna-dashboard can read it."""
    from posttrain.agents.centaur import CentaurProposer
    from posttrain.agents.optuna_proposers import CMAProposer, HybridProposer, TPEProposer

    stored = {"storage": storage, "study_name": study_name}
    if kind == "agents":
        return AgentProposer(space)
    if kind == "random":
        return RandomProposer(space, seed)
    if kind == "tpe":
        return TPEProposer(space, seed, tpe_startup_trials, **stored)
    if kind == "cma":
        return CMAProposer(space, seed, **stored)
    if kind == "hybrid":
        return HybridProposer(space, seed, tpe_startup_trials, **stored)
    if kind == "centaur":
        return CentaurProposer(
            space,
            seed,
            base=centaur_base,
            override_share=override_share,
            startup_trials=tpe_startup_trials,
            **stored,
        )
    raise ValueError(f"unknown tuner {kind!r} (choose {', '.join(TUNER_KINDS)})")


def __getattr__(name: str) -> Any:
    # The Optuna proposers moved to their own module; old imports keep working without importing
    # optuna at module load.
    if name in ("TPEProposer", "HybridProposer", "CMAProposer"):
        from posttrain.agents import optuna_proposers

        return getattr(optuna_proposers, name)
    raise AttributeError(name)
