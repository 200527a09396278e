"""Agent messages agree with the decisions taken: the rules roles' text is written from their own
numbers, and each episode's rationale names whose value was trained. Checked on made-up
histories and over a real tune run on tiny-random."""

from __future__ import annotations

import re

import pytest

from posttrain.agents.rationale import explain_episode, hparam_rows
from posttrain.agents.roles import JudgeReply, enforce_min_episodes, rules_judge, rules_reward_penalty
from posttrain.agents.roles.base import hparam_text, trend
from posttrain.config.search_space import SearchSpace
from posttrain.store import Store
from tests.conftest import run_cli

SPACE = SearchSpace()


def _ep(i: int, loss: float | None, **hp: float) -> dict:
    return {"episode": i, "hparams": {**SPACE.defaults(), **hp}, "eval_loss": loss}


def test_judge_never_says_improving_when_its_feedback_says_the_last_is_worse():
    # best at episode 2, episode 3 worse: the plateau rule keeps going (best within patience)
    history = [_ep(0, 2.0), _ep(1, 1.9), _ep(2, 1.5), _ep(3, 1.7)]
    reply = rules_judge(history, force_min_episodes=2, max_episodes=8, patience=2)
    assert reply.continue_
    assert "worse than best" in reply.feedback
    assert "improving" not in reply.say and "worse" in reply.say and "episode 2" in reply.say
    best_last = rules_judge([*history, _ep(4, 1.2)], force_min_episodes=2, max_episodes=8, patience=2)
    assert best_last.continue_ and "best so far" in best_last.say and "best so far" in best_last.feedback


def test_an_overridden_stop_says_continue():
    stop = JudgeReply.model_validate({"say": "Stop now.", "continue": False, "reason": "looks done"})
    kept = enforce_min_episodes(stop, [_ep(0, 2.0)], force_min_episodes=3)
    assert kept.continue_ and kept.say.startswith("Continue") and "Stop now." in kept.say


@pytest.mark.parametrize(
    ("losses", "batch", "regime"),
    [
        ((2.0, 1.0), 8, "positive"),
        ((2.0, 1.0), 2, "positive"),
        ((1.0, 2.0), 1, "negative"),
        ((1.0, 1.0), 4, "plateau"),
    ],
)
def test_reward_penalty_says_exactly_the_changes_its_override_makes(losses, batch, regime):
    history = [_ep(0, losses[0], batch_size=batch), _ep(1, losses[1], batch_size=batch)]
    reply = rules_reward_penalty(history, SPACE)
    assert reply.reward_signal.regime == regime
    last = SPACE.clamp(history[-1]["hparams"])
    for name, value in reply.override.items():
        way = trend(last[name], value)
        if way == "same":  # at a bound of the space: said to stay, never "larger"
            assert f"{name} stays {hparam_text(name, value)}" in reply.say
        else:
            assert (
                f"{name} {hparam_text(name, last[name])} -> {hparam_text(name, value)} ({way})" in reply.say
            )
    if batch == 8:
        assert "batch_size stays 8" in reply.say


def test_rationale_names_the_override_when_it_replaced_the_tuners_lr():
    decisions = {
        "tuner": {"say": "try lr up", "hparams": {**SPACE.defaults(), "lr": 5e-4}},
        "reward_penalty": {"override": {"lr": 1e-4}, "reward_signal": {"regime": "negative"}},
        "proposed_by": "agents",
    }
    trained = {**SPACE.defaults(), "lr": 1e-4}
    why = explain_episode(decisions, trained, SPACE.defaults())
    assert why["source"]["lr"] == "reward-penalty" and why["source"]["batch_size"] == "tuner"
    assert why["summary"] == (
        "tuner proposed lr 5e-4 (up); reward-penalty set it to 1e-4: regime clear regression; "
        "trained 1e-4 (down from 2e-4), the reward-penalty's value"
    )
    rows = hparam_rows({"proposed_by": "tpe"}, trained, SPACE.defaults())
    assert rows["lr"]["source"] == "tpe" and rows["lr"]["change"] == "down"
    assert (
        explain_episode({"proposed_by": "tpe"}, trained)["summary"]
        == "first episode: trained the tpe's proposal"
    )


@pytest.fixture(scope="module")
def tune_run(tiny_spec, tmp_path_factory):
    """A real four-episode tune run (rules backend, no SEAL/QA: only the TRAIN decisions)."""
    cwd = tmp_path_factory.mktemp("rationale")
    sets = ["agents.qa=false", "agents.max_episodes=4", "agents.force_min_episodes=2"]
    args = ["tune", "--preset", "tune_test", "--name", "r", "--output-dir", "runs", "--seal", "none"]
    out = run_cli(*args, *[x for s in sets for x in ("--set", s)], cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    with Store(f"sqlite:///{cwd / 'runs' / 'posttrain.db'}") as store:
        return store.list_episodes(store.find_run("r").id)


def test_every_episode_of_a_tune_run_says_whose_values_it_trained(tune_run):
    assert len(tune_run) >= 3
    previous = None
    for e in tune_run:
        d = e.decisions
        rationale = d["rationale"]
        assert rationale == explain_episode(d, e.hparams, previous)  # stored = recomputed from the record
        override, proposal = d["reward_penalty"]["override"], d["tuner"]["hparams"]
        for name, value in e.hparams.items():
            expected = "reward-penalty" if name in override else "tuner"
            assert rationale["source"][name] == expected
            assert value == pytest.approx(override.get(name, proposal[name]))
        if previous is not None and trend(previous["lr"], e.hparams["lr"]) != "same":
            way = trend(previous["lr"], e.hparams["lr"])
            now, before = hparam_text("lr", e.hparams["lr"]), hparam_text("lr", previous["lr"])
            assert f"trained {now} ({way} from {before})" in rationale["summary"]
        if override.get("lr") is not None and override["lr"] != pytest.approx(proposal["lr"]):
            assert "reward-penalty set it to" in rationale["summary"]
        previous = e.hparams
    # tiny-random barely moves its loss: the plateau override replaces the tuner's lr, the case of the issue
    assert any(e.decisions["rationale"]["source"]["lr"] == "reward-penalty" for e in tune_run)


def test_tuner_and_reward_penalty_texts_match_their_numbers_in_a_tune_run(tune_run):
    for e in tune_run[1:]:
        d = e.decisions
        for old, new, way in re.findall(r"lr (\S+) -> (\S+) \((up|down)\)", d["tuner"]["say"]):
            assert float(new) == pytest.approx(d["tuner"]["hparams"]["lr"], rel=1e-2)
            assert (float(new) > float(old)) == (way == "up")
        say, override = d["reward_penalty"]["say"], d["reward_penalty"]["override"]
        for name in override:
            assert re.search(rf"\b{name} ", say), (name, say)


def test_judge_text_matches_its_decision_and_feedback_in_a_tune_run(tune_run):
    judged = [e.decisions["judge"] for e in tune_run if "judge" in e.decisions]
    assert judged
    for j in judged:
        assert j["continue"] and j["say"].startswith("Continue")
        if "worse than best" in j["feedback"]:
            assert "improving" not in j["say"] and "best so far" not in j["say"]
        if "best so far" in j["feedback"]:
            assert "worse" not in j["say"]
