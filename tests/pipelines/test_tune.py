"""`posttrain tune` end to end on tiny-random with the rules backend, every tuner, and resume
after a real SIGKILL between episodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from posttrain.agents.search_space import SearchSpace
from posttrain.agents.tuners import make_proposer
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
