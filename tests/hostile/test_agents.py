"""Bad agent settings for `posttrain tune`: unknown backends and tuners, impossible limits, and an
openai backend with no endpoint. Each is one line, exit 2, and leaves no run folder."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import refused

TUNE = ("tune", "--preset", "tune_test", "--name", "t")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--backend", "gpt"), "agents.backend"),
        (("--tuner", "oracle"), "agents.tuner"),
        (("--episodes", "-1"), "agents.max_episodes"),
        (("--set", "agents.timeout_s=0"), "agents.timeout_s"),
        (("--set", "agents.patience=0"), "agents.patience"),
        (("--set", "agents.proposals_per_episode=1000"), "agents.proposals_per_episode"),
        (("--set", "agents.qa_items=0"), "agents.qa_items"),
        (("--set", "agents.force_min_episodes=-1"), "agents.force_min_episodes"),
        (("--set", "agents.endpoint=http://x"), "agents.endpoint"),
        (("--set", "seal.examples=0"), "seal.examples"),
        (("--set", "trial.max_length=4"), "trial.max_length"),
    ],
)
def test_bad_agent_settings(cli, tmp_path, args, needle):
    refused(cli(*TUNE, *args), needle, root=tmp_path)


def test_the_openai_backend_without_an_endpoint_leaves_no_run_folder(cli, tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "POSTTRAIN_AGENT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    refused(cli(*TUNE, "--backend", "openai"), "OPENAI_BASE_URL", root=tmp_path)
    assert not (tmp_path / "runs" / "t").exists()
