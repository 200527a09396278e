"""`posttrain seal` end to end through the CLI on tiny-random: both domains, from presets and files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from safetensors.torch import load_file

from posttrain.store import Store
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # 2 shared CPU cores: torch's default of one thread per core oversubscribes them 3x here.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_seal_preset_test_end_to_end(tiny_spec, tmp_path):
    out = run_cli(
        "seal", "--preset", "test", "--name", "t", "--output-dir", "runs", cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "t"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    iterations, k = cfg["max_outer_iterations"], cfg["samples_per_iteration"]
    summary = json.loads((run / "summary.json").read_text())
    n_train = summary["train_contexts"]
    assert (iterations, k, n_train) == (2, 2, 3) and summary["self_edits"] == iterations * n_train * k

    # every self-edit in the store, and each kept one is the rewarded best of its context
    store = Store(f"sqlite:///{tmp_path / 'runs' / 'posttrain.db'}")
    run_row = store.find_run("t")
    assert run_row.status == "completed" and run_row.kind == "seal"
    edits = store.list_self_edits(run_row.id)
    assert len(edits) == iterations * n_train * k
    assert all(e.text for e in edits) and all(e.reward is not None for e in edits)
    for it in range(iterations):
        kept = [e for e in edits if e.iteration == it and e.kept]
        assert len(kept) == n_train and len({e.context_id for e in kept}) == n_train  # top1 per context
    assert len(store.list_episodes(run_row.id)) == iterations

    # per-iteration metrics, in the run dir and the report
    rows = _jsonl(run / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1]
    for r in rows:
        assert r["n_samples"] == n_train * k and r["success_rate"] == 1.0 and r["reward_hist"] == {"1": 6}
        assert r["m_step"] == "trained" and r["mstep_steps"] > 0 and r["mstep_loss_last"] > 0
    samples = _jsonl(run / "self_edits.jsonl")
    assert len(samples) == len(edits) and all(len(s["inner_seeds"]) == cfg["inner"]["runs"] for s in samples)
    seeds = json.loads((run / "seeds.json").read_text())
    assert seeds["master"] == 0 and {"data", "split", "inner_adapter", "generator_adapter"} <= set(seeds)
    report = (run / "report.md").read_text()
    for heading in (
        "## Outer iterations",
        "## Reward distribution",
        "## Held-out results",
        "Trend per iteration",
    ):
        assert heading in report
    for name in ("reward_trend.png", "before_after.png"):
        assert (run / "plots" / name).stat().st_size > 1000
    results = json.loads((run / "results.json").read_text())
    assert results["order"] == [
        "base",
        "passage_only",
        "base_self_edits",
        "seal_self_edits",
        "cpt_passage_only",
        "cpt_base_self_edits",
        "cpt_seal_self_edits",
    ]
    assert results["n_passages"] == 2 and results["n_questions"] >= 6
    for name in results["order"]:
        assert set(results[name]) >= {"f1", "em", "ci"} and results[name]["ci"][0] <= results[name]["f1"]
    assert (run / "generator_adapter" / "generator" / "adapter_config.json").exists()
    assert not (tmp_path / "runs" / ".t.partial").exists()


def test_seal_arc_from_a_json_config_file(tiny_spec, tmp_path):
    config = {
        "model_name": "tiny-random",
        "domain": "few_shot_learning",
        "max_outer_iterations": 1,
        "samples_per_iteration": 2,
        "lora_r": 4,
        "lora_alpha": 8,
        "data_config": {
            "max_samples": 4,
            "n_eval": 2,
            "max_rows": 4,
            "oracle_configs": [
                {"basic": False, "num_train_epochs": 1},
                {"basic": True, "num_train_epochs": 1},
            ],
        },
        "inner": {"runs": 1, "max_length": 512},
        "generation": {"max_new_tokens": 24},
        "restem": {"keep": "all_positive"},
    }
    path = tmp_path / "arc.json"
    path.write_text(json.dumps(config))
    out = run_cli(
        "seal", "--config", str(path), "--name", "a", "--output-dir", "runs", cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # the file uses seed 001's flat names: they still work, each with a note naming the new key
    assert "note: 'lora_r' is deprecated; use 'inner.lora.r'" in out.stderr
    run = tmp_path / "runs" / "a"
    assert yaml.safe_load((run / "config.yaml").read_text())["inner"]["lora"]["r"] == 4
    results = json.loads((run / "results.json").read_text())
    assert results["order"] == ["icl", "base_self_edits", "seal_self_edits", "oracle"]
    assert results["oracle"]["upper_bound"] is True and results["n_tasks"] == 2
    assert "oracle (upper bound: searched on the test answer)" in (run / "report.md").read_text()
    samples = _jsonl(run / "self_edits.jsonl")
    assert len(samples) == 2 * 2
    # tiny-random writes no parseable config: every self-edit is invalid, scores 0, and none is kept
    assert all(s["reward"] == 0 and not s["kept"] for s in samples if not s["valid"])
    rows = _jsonl(run / "metrics.jsonl")
    assert rows[0]["n_kept"] == sum(s["kept"] for s in samples)


def test_seal_config_errors_are_one_line(tmp_path):
    out = run_cli("seal", "--preset", "test", "--set", "data_config.max_sample=3", cwd=tmp_path)
    assert out.returncode == 2 and "data_config.max_sample: unknown key" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()
    from posttrain.config import SEALConfig, load_config, seal_preset
    from posttrain.errors import ConfigError

    with pytest.raises(ConfigError, match="restem.keep"):
        load_config(SEALConfig, preset=seal_preset("test"), overrides=["restem.keep=best"])


def test_seal_resume_after_sigkill_equals_an_uninterrupted_run(tiny_spec, tmp_path):
    """Kill a real run after its first outer iteration's checkpoint; --resume redoes nothing that
    was finished and ends with the uninterrupted run's self-edits, rewards and generator."""
    common = ["seal", "--preset", "test", "--output-dir", "runs", "--set", "evaluation.enabled=false"]
    whole = run_cli(*common, "--name", "whole", cwd=tmp_path, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    proc = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", *common, "--name", "cut"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    partial = tmp_path / "runs" / ".cut.partial"
    marker = partial / "checkpoints" / "iteration0" / "state.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists() and partial.exists(), "the run ended before its first checkpoint"

    again = run_cli(*common, "--name", "cut", "--resume", cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = tmp_path / "runs"

    def rows(name: str, file: str) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in _jsonl(runs / name / file)]

    assert rows("cut", "metrics.jsonl") == rows("whole", "metrics.jsonl")
    assert [r["iteration"] for r in rows("cut", "metrics.jsonl")] == [0, 1]
    assert rows("cut", "self_edits.jsonl") == rows("whole", "self_edits.jsonl")
    adapter = "generator_adapter/generator/adapter_model.safetensors"
    a, b = load_file(runs / "whole" / adapter), load_file(runs / "cut" / adapter)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    store = Store(f"sqlite:///{runs / 'posttrain.db'}")
    whole_edits = store.list_self_edits(store.find_run("whole").id)
    cut = store.find_run("cut")
    cut_edits = store.list_self_edits(cut.id)
    assert cut.status == "completed" and len(store.list_episodes(cut.id)) == 2
    key = lambda e: (e.iteration, e.context_id, e.sample_index, e.text, e.reward, e.kept)  # noqa: E731
    assert sorted(map(key, cut_edits)) == sorted(map(key, whole_edits))  # none written twice
