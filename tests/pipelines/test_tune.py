"""`posttrain tune` end to end on tiny-random with the rules backend, every tuner, and resume
after a real SIGKILL between episodes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from posttrain.agents.tuners import lr_ladder, make_proposer
from posttrain.config.search_space import SearchSpace
from posttrain.pipelines.tune import replay_history
from posttrain.store import Store
from tests.conftest import run_cli


def _episodes(tmp_path, name):
    with Store(f"sqlite:///{tmp_path / 'runs' / 'posttrain.db'}") as store:
        run = store.find_run(name)
        return [] if run is None else store.list_episodes(run.id)


def test_tune_runs_the_episode_loop_with_seal_and_qa(tiny_spec, tmp_path):
    out = run_cli("tune", "--preset", "tune_test", "--name", "t", "--output-dir", "runs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "t"
    episodes = _episodes(tmp_path, "t")
    assert [e.index for e in episodes] == [0, 1, 2]
    space = SearchSpace()
    for e in episodes:
        assert space.contains(e.hparams)
        assert e.kind == "train+seal"
        assert e.metrics["seal_mode"] == "refine" and e.metrics["seal_epochs"] in (1, 2)
        assert e.metrics["eval_loss"] > 0 and "qa_score" in e.metrics
        assert {"reward_penalty", "tuner", "seal_expert"} <= set(e.decisions)
    assert "judge" in episodes[1].decisions  # the judge speaks from the second episode on
    roles = {json.loads(line)["role"] for line in (run / "agents.jsonl").read_text().splitlines()}
    assert roles == {"judge", "reward_penalty", "tuner", "seal_expert", "qa_generator", "qa_evaluator"}
    assert (run / "adapter" / "adapter_config.json").exists()
    assert "| episode | lr |" in (run / "report.md").read_text()
    assert (run / "plots" / "episodes.png").exists()
    summary = json.loads((run / "summary.json").read_text())
    best = min(min(e.metrics["eval_loss"], e.metrics["seal_eval_loss"]) for e in episodes)
    assert summary["best_eval_loss"] == pytest.approx(best)
    shown = run_cli("runs", "show", "1", "--output-dir", "runs", cwd=tmp_path)
    assert shown.returncode == 0 and "train+seal" in shown.stdout


@pytest.mark.parametrize("tuner", ["random", "tpe", "hybrid"])
def test_tuners_propose_inside_the_space(tuner):
    space = SearchSpace()
    proposer = make_proposer(tuner, space, seed=3, tpe_startup_trials=2)
    agent = space.defaults()
    seen = []
    for episode in range(8):
        hp = proposer.propose(episode, agent)
        assert space.contains(hp), hp
        seen.append(hp)
        proposer.observe(episode, hp, abs(hp["lr"] - 1e-4) * 1e4)  # a made-up loss
    distinct = len({json.dumps(h, sort_keys=True) for h in seen})
    assert distinct >= (5 if tuner == "hybrid" else 8)  # hybrid repeats the (constant) agent proposal
    if tuner == "hybrid":
        assert seen[0] == agent and seen[2] == agent  # even episodes are the agents' proposals


def test_episode_trains_k_proposals_and_keeps_the_best(tiny_spec, tmp_path):
    args = ["tune", "--preset", "tune_test", "--name", "k", "--output-dir", "runs", "--seal", "none"]
    sets = ["agents.qa=false", "agents.max_episodes=2", "agents.proposals_per_episode=3"]
    out = run_cli(*args, *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    episodes = _episodes(tmp_path, "k")
    assert [e.index for e in episodes] == [0, 1]
    for e in episodes:
        proposals = e.decisions["proposals"]
        assert [p["slot"] for p in proposals] == [0, 1, 2]
        lrs = [p["hparams"]["lr"] for p in proposals]
        assert len(set(lrs)) == 3
        for lr in lrs[1:]:  # rungs of the agents' lr (x2, x1/2, x4, ...) or a bound of the range
            steps = math.log2(lr / lrs[0])
            assert lr in (1e-5, 5e-4) or steps == pytest.approx(round(steps))
        assert {k: v for k, v in proposals[1]["hparams"].items() if k != "lr"} == {
            k: v for k, v in proposals[0]["hparams"].items() if k != "lr"
        }
        losses = [p["eval_loss"] for p in proposals]
        assert len(set(losses)) == 3 and all(p["status"] == "completed" for p in proposals)
        best = e.decisions["best_proposal"]
        assert losses[best] == min(losses) == e.metrics["eval_loss"]
        assert e.hparams == proposals[best]["hparams"]
    summary = json.loads((tmp_path / "runs" / "k" / "summary.json").read_text())
    assert summary["best_eval_loss"] == pytest.approx(min(e.metrics["eval_loss"] for e in episodes))


def test_slots_propose_distinct_configs_and_slot_0_is_unchanged():
    space = SearchSpace()
    agent = {**space.defaults(), "lr": 1e-4}
    agents = make_proposer("agents", space, seed=0)
    assert [agents.propose(1, agent, slot)["lr"] for slot in range(5)] == pytest.approx(
        [1e-4, 2e-4, 5e-5, 4e-4, 2.5e-5]
    )
    assert lr_ladder(0) == 1.0
    top = {**agent, "lr": 5e-4}  # at the upper bound, x2 and x4 clamp back onto it: skipped
    assert [agents.propose(1, top, slot)["lr"] for slot in range(3)] == pytest.approx([5e-4, 2.5e-4, 1.25e-4])
    rand = make_proposer("random", space, seed=3)
    assert rand.propose(2, None) == rand.propose(2, None, 0) == space.sample_random(3 * 100_003 + 2)
    draws = [rand.propose(2, None, slot) for slot in range(4)]
    assert len({json.dumps(d, sort_keys=True) for d in draws}) == 4
    assert draws == [make_proposer("random", space, seed=3).propose(2, None, slot) for slot in range(4)]
    tpe = make_proposer("tpe", space, seed=3, tpe_startup_trials=1)
    for episode in range(3):
        asked = [tpe.propose(episode, None, slot) for slot in range(2)]
        assert all(space.contains(hp) for hp in asked)
        for slot, hp in enumerate(asked):
            tpe.observe(episode, hp, abs(hp["lr"] - 1e-4) * 1e4, slot)
    assert len(tpe.study.trials) == 6 and all(t.state.name == "COMPLETE" for t in tpe.study.trials)


def test_resume_replays_every_proposal_of_an_episode_to_the_proposer(tmp_path):
    space = SearchSpace()
    proposals = [{"slot": s, "hparams": space.sample_random(s), "eval_loss": 2.0 + s} for s in range(3)]
    with Store(f"sqlite:///{tmp_path / 'h.db'}") as store:
        run_id = store.create_run("r", "tune", {}, None)
        decisions = {"proposals": proposals, "best_proposal": 0}
        store.add_episode(run_id, 0, "train", proposals[0]["hparams"], {"eval_loss": 2.0}, decisions)
        store.add_episode(run_id, 1, "train", space.defaults(), {"eval_loss": 1.5}, {})
        tpe = make_proposer("tpe", space, seed=0)
        history, metrics = replay_history(store, run_id, tpe)
    assert [h.episode for h in history] == [0, 1] and metrics[1] == {"eval_loss": 1.5}
    assert sorted(t.value for t in tpe.study.trials) == [1.5, 2.0, 3.0, 4.0]


def test_resume_after_sigkill_continues_at_the_next_episode(tiny_spec, tmp_path):
    args = [
        "tune",
        "--preset",
        "tune_test",
        "--output-dir",
        "runs",
        "--seal",
        "none",
        "--set",
        "agents.qa=false",
    ]
    ref = run_cli(*args, "--name", "ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    proc = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", *args, "--name", "k"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if (tmp_path / "runs" / "posttrain.db").exists() and len(_episodes(tmp_path, "k")) >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_episodes(tmp_path, "k"))
    assert 1 <= done < 3, "the kill must land between the first and the last episode"
    again = run_cli(*args, "--name", "k", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming after" in again.stdout
    resumed, reference = _episodes(tmp_path, "k"), _episodes(tmp_path, "ref")
    assert [e.index for e in resumed] == [0, 1, 2]
    assert [e.hparams for e in resumed] == [e.hparams for e in reference]
    for a, b in zip(resumed, reference, strict=True):
        assert a.metrics["eval_loss"] == pytest.approx(b.metrics["eval_loss"], rel=1e-5)
