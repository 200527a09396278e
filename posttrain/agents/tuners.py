"""Where each episode's hyperparameters come from: the agent team, random search, Optuna's
TPE, or a hybrid that enqueues the agents' proposals into a TPE study.

All four see the same search space and are told every result, so `bench/tune_compare.py` can
give them the same budget and the same `train_and_eval`. Proposers are rebuilt on resume by
replaying `observe` over the finished episodes; random search seeds each episode on its own,
so a resumed run draws exactly what the uninterrupted one would have.

An episode may train several proposals at once (`proposals_per_episode`): each has a `slot`
(0, 1, ...), all are proposed before any result is told, and slot 0 is always what a
one-proposal episode would have trained.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal, Protocol

from posttrain.config.search_space import SearchSpace

TunerKind = Literal["agents", "random", "tpe", "hybrid"]


class Proposer(Protocol):
    """`propose` returns the hparams to train next; `observe` reports how they did."""

    name: str

    def propose(
        self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0
    ) -> dict[str, Any]: ...

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None: ...


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
        hparams = self.space.clamp(agent_hparams)
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


class RandomProposer:
    """Independent uniform (log-uniform for lr) draws, one seeded generator per episode."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space, self.seed = space, seed

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0) -> dict[str, Any]:
        seed: int | str = self.seed * 100_003 + episode if slot == 0 else f"{self.seed}/{episode}/{slot}"
        return self.space.sample_random(random.Random(seed))

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None:
        pass


class TPEProposer:
    """Optuna's TPESampler through ask/tell.

    Optuna's default of 10 random start-up trials would make TPE pure random search at the
    budgets a laptop affords (4-8 trainings), so the start-up count is a setting (default 3).
    The proposals of one episode are asked before any is told; Optuna's TPE treats the
    pending ones as a "constant liar" (on by default), so they do not all land on one point.
    """

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int, startup_trials: int = 3) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.distributions = space.distributions()
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self._pending: dict[tuple[int, int], Any] = {}

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0) -> dict[str, Any]:
        trial = self.study.ask(self.distributions)
        self._pending[(episode, slot)] = trial
        return self.space.clamp(trial.params)

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None:
        import optuna

        trial = self._pending.pop((episode, slot), None)
        ok = loss is not None and math.isfinite(loss)
        if trial is not None:
            if ok:
                self.study.tell(trial, loss)
            else:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        # Replaying a finished episode after a resume: add it as a completed trial.
        params = {k: hparams[k] for k in self.distributions}
        state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL
        frozen = optuna.trial.create_trial(
            params=params, distributions=self.distributions, value=loss if ok else None, state=state
        )
        self.study.add_trial(frozen)


class HybridProposer(TPEProposer):
    """Agents and TPE share one study: on even episodes the agents' proposal is enqueued
    (so TPE learns from it), on odd ones TPE proposes its own; further slots are TPE's."""

    name = "hybrid"

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0) -> dict[str, Any]:
        if agent_hparams is not None and episode % 2 == 0 and slot == 0:
            self.study.enqueue_trial(self.space.clamp(agent_hparams), skip_if_exists=False)
        return super().propose(episode, agent_hparams, slot)


def make_proposer(kind: TunerKind, space: SearchSpace, seed: int, tpe_startup_trials: int = 3) -> Proposer:
    if kind == "agents":
        return AgentProposer(space)
    if kind == "random":
        return RandomProposer(space, seed)
    if kind == "tpe":
        return TPEProposer(space, seed, tpe_startup_trials)
    if kind == "hybrid":
        return HybridProposer(space, seed, tpe_startup_trials)
    raise ValueError(f"unknown tuner {kind!r} (choose agents, random, tpe or hybrid)")
