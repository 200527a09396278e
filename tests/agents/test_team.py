"""The agent team's episode loop on every backend that can start here."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posttrain.agents.backends import AgentLog, make_backend
from posttrain.agents.roles import merge_hparams, rules_answer
from posttrain.agents.team import AgentTeam
from tests.agents.backends.fakes import ITEMS, SPACE, ChatServer, read_log, rules_server

pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture(params=["rules", "openai", "local"])
def team_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any, Path]]:
    log_path = tmp_path / "agents.jsonl"
    log = AgentLog(log_path)
    if request.param == "rules":
        yield "rules", make_backend("rules", log=log), log_path
    elif request.param == "openai":
        with ChatServer(rules_server) as server:
            yield "openai", make_backend("openai", base_url=server.url, max_retries=0, log=log), log_path
    else:
        model, tokenizer = request.getfixturevalue("tiny_model")
        yield "local", make_backend("local", model=model, tokenizer=tokenizer, max_new_tokens=320,
                                    max_text_chars=10, log=log), log_path  # fmt: skip


def test_three_episodes_of_the_seed_loop_on_every_backend(team_backend: tuple[str, Any, Path]) -> None:
    kind, backend, log_path = team_backend
    team = AgentTeam(backend, SPACE, force_min_episodes=3, max_episodes=3)
    history: list[dict[str, Any]] = []
    val_rows = [{"instruction": f"say {w}", "output": w} for w in ("yes", "no", "maybe", "later")]
    for episode in range(3):
        if history:
            judge = team.judge(history, episode)
            assert judge.continue_  # fewer than force_min_episodes and nothing degrades
        reward = team.reward_penalty(history, episode)
        tuner = team.tuner(history, episode, "", reward, team.seal_summary(history))
        hparams = merge_hparams(tuner.hparams, reward.override, SPACE)
        loss = 2.0 + abs(math.log(hparams["lr"] / 1e-4)) * 0.1  # stands in for train_and_eval
        history.append({"episode": episode, "hparams": hparams, "eval_loss": loss})
        seal = team.seal_expert(history, episode, "", reward)
        history[-1].update(seal_eval_loss=loss - 0.01 * seal.seal_epochs, seal_base_episode=episode)
        qa = team.qa_generate(val_rows, 2, episode)
        scores = team.qa_evaluate(qa.items, [i.expected for i in qa.items], episode)
        history[-1]["qa_score"] = scores.mean_score
        assert SPACE.contains(hparams) and 0 <= scores.mean_score <= 1
    lines = read_log(log_path)
    assert len(lines) == 3 * 6 - 1  # 6 roles per episode, no judge before the first
    assert {x["backend"] for x in lines} == {kind} and not any(x["fallback"] for x in lines)
    assert [x["episode"] for x in lines if x["role"] == "tuner"] == [0, 1, 2]
    if kind != "local":  # rules over HTTP must agree with rules in-process
        assert rules_answer("qa_evaluator", {"items": ITEMS, "answers": ["Paris", "4"]}).scores == [1.0, 1.0]
        assert history[-1]["qa_score"] == 1.0
