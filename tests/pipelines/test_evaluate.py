"""`posttrain eval` and `posttrain chat --tools tool_use` on tiny-random: the metric keys with n
and CI on both tool_use splits and on meetings, and the tool chat showing every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from posttrain.errors import PosttrainError
from posttrain.pipelines.evaluate import run_eval
from posttrain.tasks.tool_use import TOOL_USE_METRICS
from tests.conftest import run_cli


def test_eval_cli_tool_use_reports_every_metric_with_n_and_ci(tiny_spec, tmp_path):
    out = run_cli(
        "eval",
        "--task",
        "tool_use",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--max-new-tokens",
        "8",
        "--max-steps",
        "2",
        "-o",
        "eval.json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| base |" in out.stdout
    result = json.loads((tmp_path / "eval.json").read_text())
    assert set(result["splits"]) == {"indist", "heldout"}
    for split, figs in result["splits"].items():
        for name in (*TOOL_USE_METRICS, "task_accuracy"):
            assert name in figs and f"{name}_n" in figs and f"{name}_ci" in figs, (split, name)
        assert figs["task_accuracy_n"] == figs["full_compliance_n"] == figs["n"] == 2  # episodes
        assert len(result["records"][split]) == 2
        assert figs["full_compliance"] == 0.0  # a random model never writes the format
        lo, hi = figs["full_compliance_ci"]
        assert lo <= figs["full_compliance"] <= hi
    assert result["compact_prompt"] is True and result["seed"] == 1000


def test_eval_meetings_has_both_modes_and_the_references(tiny_spec):
    result = run_eval("meetings", "tiny-random", None, n=3, max_new_tokens=6, max_steps=2)
    figs = result["splits"]["heldout"]
    for name in ("direct_accuracy", "direct_brier", "agent_accuracy", "agent_mean_tool_calls"):
        assert figs[f"{name}_n"] == 3 and figs[f"{name}_ci"] is not None
    assert figs["direct_brier"] == 0.25  # nothing parses, so every prediction counts as 0.5
    refs = result["references"]
    assert refs["majority_baseline_n"] == refs["oracle_accuracy_n"] == 3
    assert "oracle_accuracy" in result["table"]


def test_eval_rejects_unknown_task_and_split():
    with pytest.raises(PosttrainError, match="--task must be one of"):
        run_eval("chess", None, None)
    with pytest.raises(PosttrainError, match="--split for meetings"):
        run_eval("meetings", None, None, split="indist")


def test_chat_with_tools_shows_each_step(tiny_spec, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "posttrain.cli",
            "chat",
            "--model",
            "tiny-random",
            "--tools",
            "tool_use",
            "--max-new-tokens",
            "4",
            "--max-steps",
            "2",
        ],
        input="What is 2+3?\n/quit\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # A random model never writes the format: each step shows its parse failure, then the cap.
    assert "step 1" in proc.stdout and "step 2" in proc.stdout
    assert "no_action" in proc.stdout or "no_thought" in proc.stdout
    assert "no Final Answer after 2 steps" in proc.stdout
