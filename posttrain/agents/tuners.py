"""Where each episode's hyperparameters come from: the agent team, random search, Optuna's
TPE, or a hybrid that enqueues the agents' proposals into a TPE study.

All four see the same search space and are told every result, so `bench/tune_compare.py` can
give them the same budget and the same `train_and_eval`. Proposers are rebuilt on resume by
replaying `observe` over the finished episodes; random search seeds each episode on its own,
so a resumed run draws exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal, Protocol

from posttrain.agents.search_space import SearchSpace

TunerKind = Literal["agents", "random", "tpe", "hybrid"]


class Proposer(Protocol):
    """`propose` returns the hparams to train next; `observe` reports how they did."""

    name: str

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None) -> dict[str, Any]: ...

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None) -> None: ...


class AgentProposer:
    """Seed 000: the tuner's proposal merged with the reward-penalty override (done by the loop)."""

    name = "agents"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None) -> dict[str, Any]:
        return self.space.clamp(agent_hparams)

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None) -> None:
        pass


class RandomProposer:
    """Independent uniform (log-uniform for lr) draws, one seeded generator per episode."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space, self.seed = space, seed

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None) -> dict[str, Any]:
        return self.space.sample_random(random.Random(self.seed * 100_003 + episode))

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None) -> None:
        pass


class TPEProposer:
    """Optuna's TPESampler through ask/tell.

    Optuna's default of 10 random start-up trials would make TPE pure random search at the
    budgets a laptop affords (4-8 trainings), so the start-up count is a setting (default 3).
    """

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int, startup_trials: int = 3) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.distributions = space.distributions()
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self._pending: dict[int, Any] = {}

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None) -> dict[str, Any]:
        trial = self.study.ask(self.distributions)
        self._pending[episode] = trial
        return self.space.clamp(trial.params)

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None) -> None:
        import optuna

        trial = self._pending.pop(episode, None)
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
    (so TPE learns from it), on odd ones TPE proposes its own."""

    name = "hybrid"

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None) -> dict[str, Any]:
        if agent_hparams is not None and episode % 2 == 0:
            self.study.enqueue_trial(self.space.clamp(agent_hparams), skip_if_exists=False)
        return super().propose(episode, agent_hparams)


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
