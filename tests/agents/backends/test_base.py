"""The agent log every backend writes to."""

from __future__ import annotations

import math
from pathlib import Path

from posttrain.agents.backends import AgentLog
from tests.agents.backends.fakes import read_log


def test_agent_log_writes_strict_json(tmp_path: Path) -> None:
    log = AgentLog(tmp_path / "deep" / "agents.jsonl")
    log.record("judge", "rules", {"x": math.nan}, {"y": [math.inf, 1.5]}, episode=0)
    (line,) = read_log(tmp_path / "deep" / "agents.jsonl")
    assert line["request"] == {"x": None} and line["response"] == {"y": [None, 1.5]}
