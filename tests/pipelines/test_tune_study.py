"""`posttrain tune` keeps its Optuna study in the run's store: `optuna.load_study` on the store's
URL reads every trial, with the episode, slot and proposer of each (real run on tiny-random)."""

from __future__ import annotations

import json

import optuna

from posttrain.store import Store
from tests.conftest import run_cli


def test_tune_leaves_its_study_in_the_store(tiny_spec, tmp_path):
    sets = ["agents.qa=false", "agents.max_episodes=3", "agents.force_min_episodes=3"]
    sets += ["agents.centaur_base=tpe", "agents.override_share=0.5"]
    args = ["tune", "--preset", "tune_test", "--name", "s", "--output-dir", "runs", "--seal", "none"]
    out = run_cli(*args, "--tuner", "centaur", *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())
    assert summary["optuna_study"] == "posttrain-tune/s"
    url = f"sqlite:///{tmp_path / 'runs' / 'posttrain.db'}"
    study = optuna.load_study(study_name=summary["optuna_study"], storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert [t.user_attrs["episode"] for t in study.trials] == [0, 1, 2]
    # trial 0 is the defaults, trial 2 the agents' override (share 0.5: trials 2, 4, ...)
    assert [t.user_attrs["proposed_by"] for t in study.trials] == ["default", "tpe", "agents"]
    with Store(url) as store:
        episodes = store.list_episodes(store.find_run("s").id)
    for e, t in zip(episodes, study.trials, strict=True):
        assert e.metrics["eval_loss"] == t.value
        assert e.decisions["proposal_source"]["by"] == t.user_attrs["proposed_by"]
    assert episodes[2].decisions["proposed_by"] == "agents" and "tuner" in episodes[2].decisions
    shown = run_cli("runs", "show", "s", "--output-dir", "runs", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    timeline = shown.stdout[shown.stdout.index("tuner timeline") :]
    for word in ("default", "tpe", "agents", "override", "continue"):
        assert word in timeline, word


def test_a_judge_stop_is_returned_as_a_decision_and_shown_in_the_timeline():
    from posttrain.agents.backends import AgentLog
    from posttrain.agents.history import EpisodeSummary
    from posttrain.agents.tuners import make_proposer
    from posttrain.config import TuneConfig
    from posttrain.pipelines.tune import _agent_team, run_episode
    from posttrain.report.tune_timeline import tune_timeline

    cfg = TuneConfig.model_validate(
        {"agents": {"max_episodes": 8, "force_min_episodes": 0, "qa": False}, "seal": {"mode": "none"}}
    )
    space = cfg.search_space
    history = [  # the loss clearly degrades: the rules judge stops
        EpisodeSummary.model_validate({"episode": i, "hparams": space.defaults(), "eval_loss": loss})
        for i, loss in enumerate([1.0, 1.2, 1.5])
    ]
    proposer = make_proposer("agents", space, seed=0)
    calls: list = []

    def train_many(episode: int, proposals: list) -> list:
        calls.append(proposals)
        return [{"eval_loss": 1.0, "perplexity": 2.7, "status": "completed", "train_s": 0, "fit_s": 0}]

    team = _agent_team(cfg, AgentLog())
    row = run_episode(3, history, {}, cfg, team, proposer, None, None, [], [], train_many)
    assert row["kind"] == "stop" and row["decisions"]["judge"]["continue"] is False
    assert calls == []  # nothing was trained
    stop = {"before_episode": 3, "reason": row["decisions"]["judge"]["reason"]}
    table = tune_timeline([], {"judge_stop": stop})
    assert table.row_count == 1 and "stop before episode 3" in str(table.columns[-1]._cells[0])
