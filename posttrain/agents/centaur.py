"""The Centaur hybrid: a classical sampler proposes, the agent team may override a share of trials.

After "Centaur" (arXiv 2603.24647): TPE (default) or CMA-ES drives the search; the agents see its state
(the incumbent, the sampler's mean and spread where it has them, the history) and replace a
minority of its trials, by default 30%, with their own proposal. An override is enqueued into the
same study, so the sampler learns from it like from its own samples. Letting the agents drive most
trials made the paper's hybrid worse, hence the cap. Every trial records who proposed it and why.
"""

from __future__ import annotations

import math
from typing import Any

from posttrain.agents.optuna_proposers import CMAProposer, OptunaProposer, TPEProposer
from posttrain.agents.tuners import DEFAULT_SOURCE, is_first_trial
from posttrain.config.search_space import HPARAM_NAMES, SearchSpace


def override_due(trial_index: int, share: float) -> bool:
    """Whether trial `trial_index` (0-based, the defaults are trial 0) is one the agents may take:
    the overrides are spread evenly, floor(share * i) of the first i trials after the defaults."""
    if trial_index < 1 or share <= 0:
        return False
    return math.floor(share * trial_index + 1e-9) > math.floor(share * (trial_index - 1) + 1e-9)


class CentaurProposer:
    """The base sampler's study with agent overrides on `override_share` of the trials.

    The agents' proposal arrives as `agent_hparams`: the tuner's, made after reading
    `state_text()` and the history (the pipeline leaves the reward-penalty override out, since it
    steps from the last trial, mostly the sampler's draw). It replaces the sampler's trial when an
    override is due and the proposal has not been trained before; otherwise the sampler's sample is.
    """

    name = "centaur"

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        *,
        base: str = "tpe",
        override_share: float = 0.3,
        startup_trials: int = 3,
        storage: str | None = None,
        study_name: str | None = None,
    ) -> None:
        if not 0 <= override_share <= 1:
            raise ValueError(f"centaur: override_share must be in [0, 1], got {override_share}")
        stored: dict[str, Any] = {"storage": storage, "study_name": study_name}
        if base == "cma":
            self.base: OptunaProposer = CMAProposer(space, seed, **stored)
        elif base == "tpe":
            self.base = TPEProposer(space, seed, startup_trials, **stored)
        else:
            raise ValueError(f"centaur: unknown base sampler {base!r} (choose cma or tpe)")
        self.space, self.share, self.base_name = space, override_share, base
        self.tried: list[dict[str, Any]] = []

    @property
    def study(self) -> Any:
        return self.base.study

    def propose(self, episode: int, agent_hparams: dict[str, Any] | None, slot: int = 0) -> dict[str, Any]:
        index = len(self.tried) + len(self.base._pending)
        if is_first_trial(episode, slot):
            source: dict[str, Any] = {**DEFAULT_SOURCE, "hparams": self.space.defaults()}
        elif agent_hparams is not None and override_due(index, self.share):
            proposal = self.space.clamp(agent_hparams)
            if _key(proposal) in {_key(t) for t in self.tried}:
                source = {
                    "by": self.base_name,
                    "why": "override due, but the agents' proposal was already trained",
                }
            else:
                why = f"agents override trial {index} ({self.share:.0%} share): {self.state_text()}"
                source = {"by": "agents", "why": why, "hparams": proposal}
        else:
            source = {"by": self.base_name, "why": f"{self.base_name} sample ({self.state_text()})"}
        return self.base.propose_from(episode, slot, source)

    def observe(self, episode: int, hparams: dict[str, Any], loss: float | None, slot: int = 0) -> None:
        self.tried.append(self.space.clamp(hparams))
        self.base.observe(episode, hparams, loss, slot)

    def source(self, episode: int, slot: int = 0) -> dict[str, Any]:
        return self.base.source(episode, slot)

    def state(self) -> dict[str, Any]:
        """What the agents see of the sampler: trials so far, the incumbent, and the mean and
        spread of the search: CMA-ES's own where it can be read, else of the best quarter of trials."""
        done = [t for t in self.study.get_trials(deepcopy=False) if t.value is not None]
        out: dict[str, Any] = {"sampler": self.base_name, "trials": len(done), "override_share": self.share}
        if not done:
            return out
        best = min(done, key=lambda t: t.value)
        out["incumbent"] = {"loss": round(best.value, 5), **self.base.decode(best.params)}
        out["search"] = _cma_state(self.base) or _elite_state(self.base, done)
        return out

    def state_text(self) -> str:
        s = self.state()
        if "incumbent" not in s:
            return f"{s['sampler']}: no finished trial yet"
        inc = s["incumbent"]
        text = f"{s['sampler']} after {s['trials']} trials: incumbent loss {inc['loss']:.4f}"
        text += f" at lr {inc['lr']:.3g}"
        search = s["search"]
        lr = search.get("lr")
        if lr:
            text += f"; {search['kind']} lr {lr['center']:.3g} (x/÷ {lr['spread']:.2g})"
        return text


def _key(hparams: dict[str, Any]) -> tuple:
    return tuple(float(f"{hparams[k]:.3g}") if k == "lr" else hparams[k] for k in HPARAM_NAMES)


def _elite_state(base: OptunaProposer, done: list[Any]) -> dict[str, Any]:
    """Geometric centre and spread (a factor) of the lr over the best quarter of the trials (at least two)."""
    elite = sorted(done, key=lambda t: t.value)[: max(2, len(done) // 4)]
    logs = [math.log(base.decode(t.params)["lr"]) for t in elite]
    mean = sum(logs) / len(logs)
    spread = math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))
    return {"kind": "best-quarter", "lr": {"center": math.exp(mean), "spread": math.exp(spread)}}


def _cma_state(base: OptunaProposer) -> dict[str, Any] | None:
    """CMA-ES's mean and step size, read through Optuna's private sampler state; None when that is
    not there (TPE, before the first generation, or another Optuna version)."""
    try:
        from optuna._transform import _SearchSpaceTransform

        sampler, study = base.study.sampler, base.study
        optimizer = sampler._restore_optimizer(sampler._get_trials(study))
        if optimizer is None:
            return None
        space = sampler.infer_relative_search_space(study, None)
        trans = _SearchSpaceTransform(space, transform_step=True, transform_0_1=True)
        mean = base.decode(trans.untransform(optimizer._mean))
        lr = space.get("lr")
        spread = math.exp(optimizer._sigma * (math.log(lr.high) - math.log(lr.low))) if lr else None
        out: dict[str, Any] = {"kind": "cma-es mean", "sigma": float(optimizer._sigma), "mean": mean}
        if spread is not None:
            out["lr"] = {"center": mean["lr"], "spread": spread}
        return out
    except Exception:  # private API: the state is advice for the agents, never worth a failed run
        return None
