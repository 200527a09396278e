"""Optuna's samplers as proposers: TPE, CMA-ES and the agents+TPE hybrid, through ask/tell.

One `OptunaProposer` holds the study. Its first trial is the search space's defaults (enqueued,
so the sampler learns from it like any other trial), every trial carries its episode, slot and
source as user attributes, and with `storage` (the run store's SQLAlchemy URL) the study lives
in the store: `optuna.load_study(study_name=..., storage=url)` and optuna-dashboard read it,
and a resumed run finds its trials there instead of replaying them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from posttrain.agents.tuners import DEFAULT_SOURCE, is_first_trial
from posttrain.config.search_space import Choice, SearchSpace


class OptunaProposer:
    """An Optuna study behind the `Proposer` protocol; subclasses pick the sampler and encoding.

    The proposals of one episode are all asked before any is told, so samplers that support
    it (TPE's constant liar) do not put them on one point.
    """

    name = "optuna"

    def __init__(
        self,
        space: SearchSpace,
        sampler: Any,
        *,
        storage: str | None = None,
        study_name: str | None = None,
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.distributions = self.encode_distributions(space)
        self.study = optuna.create_study(
            direction="minimize",
            sampler=sampler,
            storage=storage,
            study_name=study_name,
            load_if_exists=storage is not None,
        )
        self._pending: dict[tuple[int, int], Any] = {}
        self._sources: dict[tuple[int, int], dict[str, Any]] = {}
        self._stored = self._recover_stored_trials()

    # -- encoding: subclasses that cannot model categorical values change these two
    def encode_distributions(self, space: SearchSpace) -> dict[str, Any]:
        return space.distributions()

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.space.clamp(params)

    def encode(self, hparams: dict[str, Any]) -> dict[str, Any]:
        return {k: self.space.clamp(hparams)[k] for k in self.distributions}

    # -- the Proposer protocol
    def propose(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0) -> dict[str, Any]:
        return self.propose_from(episode, slot, self.choose_source(episode, agent_hparams, slot))

    def propose_from(self, episode: int, slot: int, source: dict[str, Any]) -> dict[str, Any]:
        """Ask the study for a trial: `source` is `{"by", "why"}` and, to fix the trial's values
        instead of sampling them, `"hparams"` (enqueued, so the sampler learns from them too)."""
        source = dict(source)
        fixed = source.pop("hparams", None)
        if fixed is not None:
            self.study.enqueue_trial(self.encode(fixed), skip_if_exists=False)
        trial = self.ask()
        for key, value in {"episode": episode, "slot": slot, "proposed_by": source["by"]}.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("why", source["why"])
        self._pending[(episode, slot)] = trial
        self._sources[(episode, slot)] = source
        return self.decode(trial.params)

    def choose_source(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int) -> dict[str, Any]:
        """Who proposes this trial: `{"by", "why"}`, plus `"hparams"` when they are fixed (enqueued)."""
        if is_first_trial(episode, slot):
            return {**DEFAULT_SOURCE, "hparams": self.space.defaults()}
        return {"by": self.name, "why": f"{self.name} sample"}

    def ask(self) -> Any:
        with warnings.catch_warnings():  # samplers warn about experimental options on every ask
            warnings.simplefilter("ignore")
            return self.study.ask(self.distributions)

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None:
        import optuna

        trial = self._pending.pop((episode, slot), None)
        ok = loss is not None and math.isfinite(loss)
        if trial is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if ok:
                    self.study.tell(trial, loss)
                else:
                    self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        if (episode, slot) in self._stored:
            return  # resumed on a stored study: the trial is already there
        # Replaying a finished episode after a resume: add it as a completed trial.
        state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL
        frozen = optuna.trial.create_trial(
            params=self.encode(hparams),
            distributions=self.distributions,
            value=loss if ok else None,
            state=state,
            user_attrs={"episode": episode, "slot": slot, "proposed_by": "replay"},
        )
        self.study.add_trial(frozen)

    def source(self, episode: int, slot: int = 0) -> dict[str, Any]:
        return self._sources.get((episode, slot), {"by": self.name, "why": "replayed after a resume"})

    def _recover_stored_trials(self) -> set[tuple[int, int]]:
        """(episode, slot) of the finished trials a stored study already has; a trial left running
        by a killed run is marked failed, since its episode is trained again."""
        import optuna

        done: set[tuple[int, int]] = set()
        for t in self.study.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.RUNNING:
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            elif "episode" in t.user_attrs:
                done.add((int(t.user_attrs["episode"]), int(t.user_attrs.get("slot", 0))))
        return done


class TPEProposer(OptunaProposer):
    """Optuna's TPESampler. Its default of 10 random start-up trials would make TPE pure random
    search at the budgets a laptop affords (4-16 trainings), so the count is a setting (default 3)."""

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int, startup_trials: int = 3, **stored: Any) -> None:
        import optuna

        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
        super().__init__(space, sampler, **stored)


class HybridProposer(TPEProposer):
    """Agents and TPE share one study: on even episodes the agents' proposal is enqueued
    (so TPE learns from it), on odd ones TPE proposes its own; further slots are TPE's."""

    name = "hybrid"

    def choose_source(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int) -> dict[str, Any]:
        if is_first_trial(episode, slot):
            return super().choose_source(episode, agent_hparams, slot)
        if agent_hparams is not None and episode % 2 == 0 and slot == 0:
            return {"by": "agents", "why": "even episode: the agents' proposal", "hparams": agent_hparams}
        return {"by": "tpe", "why": "odd episode or extra slot: TPE's sample"}


class CMAProposer(OptunaProposer):
    """Optuna's CmaEsSampler (needs the `cmaes` package), started at the space's defaults.

    CMA-ES only models numbers, so every categorical hyperparameter is searched as its index
    in the sorted choices (an ordinal integer); without that Optuna would draw them at random.
    sigma0 is a quarter of the (0-1 normalised) range: wide enough to leave the start at the
    budgets of a tuning run, where the population is a large share of all trials.
    """

    name = "cma"

    def __init__(self, space: SearchSpace, seed: int, sigma0: float = 0.25, **stored: Any) -> None:
        import optuna

        try:
            import cmaes  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "agents.tuner=cma (and centaur on CMA-ES) needs the `cmaes` package: pip install cmaes "
                "(it is in posttrain's dependencies), or pick agents.tuner=tpe"
            ) from exc
        self.space = space
        with (
            warnings.catch_warnings()
        ):  # x0 is deprecated in Optuna 4.9 but is the way to start at the defaults
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.CmaEsSampler(
                x0=self.encode(space.defaults()),
                sigma0=sigma0,
                seed=seed,
                n_startup_trials=1,
                warn_independent_sampling=False,
            )
        super().__init__(space, sampler, **stored)

    def encode_distributions(self, space: SearchSpace) -> dict[str, Any]:
        from optuna.distributions import IntDistribution

        dists = space.distributions()
        for name in list(dists):
            p = space.param(name)
            if isinstance(p, Choice):
                dists[name] = IntDistribution(0, len(p.values) - 1)
        return dists

    def encode(self, hparams: dict[str, Any]) -> dict[str, Any]:
        clamped = self.space.clamp(hparams)
        out: dict[str, Any] = {}
        for name in self.encode_distributions(self.space):
            p = self.space.param(name)
            out[name] = p.values.index(clamped[name]) if isinstance(p, Choice) else clamped[name]
        return out

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        out = dict(params)
        for name, value in params.items():
            p = self.space.param(name)
            if isinstance(p, Choice):
                out[name] = p.values[min(max(int(round(value)), 0), len(p.values) - 1)]
        return self.space.clamp(out)
