"""The proposers without training: every arm starts from the defaults, the Centaur hybrid overrides
its share of trials and records why, CMA-ES searches categorical values as ordinals, and an
Optuna study kept in a real SQLite store survives a resume without duplicates."""

from __future__ import annotations

import importlib.util
import math

import optuna
import pytest

from posttrain.agents.centaur import CentaurProposer, override_due
from posttrain.agents.tuners import TUNER_KINDS, make_proposer
from posttrain.config.search_space import SearchSpace

HAS_CMAES = importlib.util.find_spec("cmaes") is not None
needs_cmaes = pytest.mark.skipif(
    not HAS_CMAES, reason="the cmaes package is not installed (pip install cmaes)"
)


def _loss(hp: dict) -> float:
    """A made-up landscape with its optimum at lr 1e-4, lora_r 16."""
    return abs(math.log10(hp["lr"] / 1e-4)) + 0.1 * (hp["lora_r"] != 16)


def _kinds() -> list:
    return [pytest.param(k, marks=needs_cmaes) if k == "cma" else k for k in TUNER_KINDS]


@pytest.mark.parametrize("kind", _kinds())
def test_every_arm_trains_the_defaults_first_and_stays_in_the_space(kind):
    space = SearchSpace()
    proposer = make_proposer(kind, space, seed=1, tpe_startup_trials=2)
    agent = {**space.defaults(), "lr": 4e-4}  # an agent that would not start at the defaults
    first = proposer.propose(0, agent)
    assert first == space.defaults()
    assert proposer.source(0)["by"] == "default"
    proposer.observe(0, first, _loss(first))
    for episode in range(1, 6):
        hp = proposer.propose(episode, agent)
        assert space.contains(hp), hp
        assert proposer.source(episode)["by"] in ("agents", "random", "tpe", "cma", "hybrid")
        proposer.observe(episode, hp, _loss(hp))


def test_overrides_are_spread_evenly_at_the_configured_share():
    due = [i for i in range(21) if override_due(i, 0.3)]
    assert due == [4, 7, 10, 14, 17, 20]  # floor(0.3 * i) steps up: 6 of the 20 trials after the defaults
    assert [i for i in range(11) if override_due(i, 0.5)] == [2, 4, 6, 8, 10]
    assert not any(override_due(i, 0.0) for i in range(50))
    assert all(override_due(i, 1.0) for i in range(1, 50)) and not override_due(0, 1.0)


def test_centaur_takes_over_its_share_and_records_who_proposed_each_trial():
    space = SearchSpace()
    centaur = CentaurProposer(space, seed=0, base="tpe", override_share=0.3, startup_trials=2)
    bys = []
    for episode in range(11):
        # the agents propose a new config every episode (a different lr), as a live tuner would
        agent = {**space.defaults(), "lr": 1e-5 * 1.3**episode, "lora_r": 8}
        hp = centaur.propose(episode, agent)
        source = centaur.source(episode)
        bys.append(source["by"])
        if source["by"] == "agents":
            assert hp == space.clamp(agent)
            assert "override" in source["why"] and "incumbent loss" in source["why"]
        centaur.observe(episode, hp, _loss(hp))
    assert bys[0] == "default"
    assert [i for i, b in enumerate(bys) if b == "agents"] == [4, 7, 10]
    assert set(bys[1:]) == {"agents", "tpe"}
    trials = centaur.study.trials  # the overrides sit in the sampler's own study, so it learns from them
    assert [t.user_attrs["proposed_by"] for t in trials] == bys
    assert trials[4].params["lr"] == pytest.approx(1e-5 * 1.3**4) and trials[4].params["lora_r"] == 8
    assert all(t.state.name == "COMPLETE" for t in trials)


def test_centaur_does_not_spend_an_override_on_a_config_already_trained():
    space = SearchSpace()
    centaur = CentaurProposer(space, seed=0, base="tpe", override_share=1.0, startup_trials=2)
    stuck = {**space.defaults(), "lr": 3e-4}
    for episode in range(4):
        hp = centaur.propose(episode, stuck)
        centaur.observe(episode, hp, _loss(hp))
    bys = [centaur.source(e)["by"] for e in range(4)]
    assert bys[:2] == ["default", "agents"]
    assert bys[2:] == ["tpe", "tpe"]  # the same proposal again is not a new experiment
    assert "already trained" in centaur.source(2)["why"]


def test_centaur_state_shows_the_incumbent_and_the_spread_of_the_best_trials():
    space = SearchSpace()
    centaur = CentaurProposer(space, seed=0, base="tpe", startup_trials=2)
    assert "no finished trial" in centaur.state_text()
    for episode in range(5):
        hp = centaur.propose(episode, None)
        centaur.observe(episode, hp, _loss(hp))
    state = centaur.state()
    assert state["trials"] == 5 and state["sampler"] == "tpe"
    best = min(centaur.study.trials, key=lambda t: t.value)
    assert state["incumbent"]["loss"] == pytest.approx(best.value, abs=1e-5)
    assert state["incumbent"]["lr"] == pytest.approx(best.params["lr"])
    assert state["search"]["kind"] == "best-quarter"
    assert state["search"]["lr"]["spread"] >= 1.0
    assert "incumbent loss" in centaur.state_text()


@needs_cmaes
def test_cma_searches_categorical_values_as_ordinals_and_starts_at_the_defaults():
    space = SearchSpace()
    cma = make_proposer("cma", space, seed=0)
    enc = cma.encode(space.defaults())
    assert enc["lora_r"] == space.lora_r.values.index(16) and enc["batch_size"] == 2
    assert cma.decode(enc) == space.defaults()
    seen = []
    for episode in range(12):
        hp = cma.propose(episode, None)
        seen.append(hp)
        cma.observe(episode, hp, _loss(hp))
    assert len({h["lora_r"] for h in seen}) >= 2  # CMA-ES moves the ordinal, not only the floats
    assert min(_loss(h) for h in seen[1:]) < _loss(seen[0])


@pytest.mark.skipif(HAS_CMAES, reason="cmaes is installed: the missing-package error cannot happen")
def test_cma_without_the_cmaes_package_says_how_to_fix_it():
    with pytest.raises(ImportError, match="pip install cmaes"):
        make_proposer("cma", SearchSpace(), seed=0)


def test_study_lives_in_the_store_and_a_resume_does_not_duplicate_it(tmp_path):
    space = SearchSpace()
    url = f"sqlite:///{tmp_path / 'posttrain.db'}"
    tpe = make_proposer("tpe", space, seed=0, storage=url, study_name="posttrain-tune/r")
    trained = []
    for episode in range(3):
        hp = tpe.propose(episode, None)
        tpe.observe(episode, hp, _loss(hp))
        trained.append(hp)
    tpe.propose(3, None)  # killed mid-episode: the trial stays RUNNING in the store
    study = optuna.load_study(study_name="posttrain-tune/r", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["RUNNING"]
    assert [t.user_attrs["episode"] for t in study.trials] == [0, 1, 2, 3]
    assert study.trials[0].user_attrs["proposed_by"] == "default"

    resumed = make_proposer("tpe", space, seed=0, storage=url, study_name="posttrain-tune/r")
    for episode, hp in enumerate(trained):  # what replay_history does on resume
        resumed.observe(episode, hp, _loss(hp))
    hp = resumed.propose(3, None)
    resumed.observe(3, hp, _loss(hp))
    states = [t.state.name for t in optuna.load_study(study_name="posttrain-tune/r", storage=url).trials]
    assert states == ["COMPLETE"] * 3 + ["FAIL", "COMPLETE"]


def test_the_rules_agents_keep_a_custom_search_space():
    """The agents arm of the tabular bench searches lr up to 1e-2 and lora_r in {4, 16}; the rules
    replies used to be clamped into the default space (lr <= 5e-4, lora_r 8/16/32)."""
    from posttrain.agents.roles.reward_penalty import rules_reward_penalty
    from posttrain.agents.roles.tuner import rules_tuner
    from posttrain.config.search_space import Choice, FloatRange

    space = SearchSpace(
        lr=FloatRange(low=1e-5, high=1e-2, log=True, default=3e-3),
        lora_r=Choice(values=[4, 16], default=4),
    )
    history = [{"episode": 0, "hparams": space.defaults(), "eval_loss": 1.0}]
    assert rules_tuner(history, space).hparams["lr"] == pytest.approx(9e-3)  # x3 up from 3e-3
    history.append({"episode": 1, "hparams": {**space.defaults(), "lr": 9e-3}, "eval_loss": 0.5})
    override = rules_reward_penalty(history, space).override  # clear gain: lr x1.25, lora_r one up
    assert override["lr"] == pytest.approx(1e-2) and override["lora_r"] == 16
