"""The quickstart (make demo's job) end to end on tiny-random at the smallest budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.config import DPOConfig, QuickstartConfig, TuneConfig
from posttrain.pipelines.quickstart import dpo_config, tune_config
from tests.conftest import run_cli


def test_stage_configs_carry_the_quickstart_settings_and_keep_the_recipes_defaults(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = QuickstartConfig(
        model={"name": "tiny-random"}, episodes=2, trial_steps=3, dpo_steps=5, max_length=256, seed=7
    )
    tune = tune_config(cfg, Path("d/sft.jsonl"), Path("out"), "q-tune")
    assert (tune.model.name, tune.data.path, tune.data.seed, tune.data.max_val) == (
        "tiny-random",
        "d/sft.jsonl",
        7,
        8,
    )
    assert (tune.agents.backend, tune.agents.max_episodes, tune.agents.force_min_episodes) == ("rules", 2, 2)
    assert (tune.trial.max_steps, tune.trial.max_length, tune.seal.mode) == (3, 256, "refine")
    assert tune.search_space.batch_size.values == [1, 2, 4]
    assert tune.search_space.lr == TuneConfig().search_space.lr
    assert (tune.run.name, tune.run.output_root) == ("q-tune", "out")
    dpo = dpo_config(cfg, Path("d/pref.jsonl"), Path("out/q-tune/adapter"), Path("out"), "q-dpo")
    assert (dpo.dpo.adapter, dpo.data.max_length, dpo.train.max_steps, dpo.train.seed) == (
        "out/q-tune/adapter",
        256,
        5,
        7,
    )
    # everything the quickstart does not set is DPO's own default (lr 5e-5 included)
    set_here = {"max_steps", "seed", "save_steps", "batch_size"}
    assert dpo.train.model_dump(exclude=set_here) == DPOConfig().train.model_dump(exclude=set_here)
    assert dpo.train.learning_rate == 5e-5 and dpo.train.batch_size == 2 and dpo.data.max_val == 8


# The smallest real quickstart: one episode of one step, one DPO step, one held-out episode.
SMALLEST = (
    "quickstart",
    *("--model", "tiny-random", "--rows", "30", "--episodes", "1", "--trial-steps", "1"),
    *("--dpo-steps", "1", "--eval-episodes", "1", "--pool-rows", "8", "--eval-items", "4"),
    *("--name", "q", "--output-dir", "runs"),
)


@pytest.mark.slow
def test_quickstart_writes_the_compliance_table(tiny_spec, tmp_path):
    out = run_cli(*SMALLEST, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    table = json.loads((tmp_path / "runs" / "q" / "compliance.json").read_text())
    assert set(table) == {"base", "tuned", "dpo"}
    for metrics in table.values():
        assert metrics["n"] >= 1 and 0.0 <= metrics["full_compliance"] <= 1.0
    families = json.loads((tmp_path / "runs" / "q" / "families.json").read_text())
    assert set(families) == {"base", "tuned", "dpo"}
    for metrics in families.values():
        assert metrics["n"] == 4 and metrics["format_validity_n"] == 4
    report = (tmp_path / "runs" / "q" / "report.md").read_text()
    assert "| model | ast_accuracy |" in report and "| model | full_compliance |" in report
    assert "AST accuracy is the headline" in report and "Seconds per stage: model" in report
    assert (tmp_path / "runs" / "q-tune" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "runs" / "q-dpo" / "adapter" / "adapter_config.json").exists()

    # --resume reads finished stages back instead of training them again
    again = run_cli(*SMALLEST, "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / "q" / "compliance.json").read_text()) == table
    assert not (tmp_path / "runs" / ".q-tune.partial").exists()


def test_quickstart_loads_the_old_flat_keys_with_a_note(capsys):
    from posttrain.config import load_config

    cfg = load_config(QuickstartConfig, extra={"model": "tiny-random", "name": "q", "output_root": "out"})
    assert (cfg.model.name, cfg.run.name, cfg.run.output_root) == ("tiny-random", "q", "out")
    assert "'model' is deprecated; use 'model.name'" in capsys.readouterr().err
