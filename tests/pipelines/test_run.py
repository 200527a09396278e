"""The run lifecycle every pipeline shares (`open_run`): what a completed, a diverged, a failed and a
resumed run leave in the run directory and the store. No model loads: `run.resident` is lazy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from posttrain.config import SFTConfig, TuneConfig
from posttrain.errors import PosttrainError
from posttrain.pipelines._run import open_run, resumed
from posttrain.store import Store


def _cfg(tmp_path: Path, name: str = "r", **train: object) -> SFTConfig:
    return SFTConfig.model_validate(
        {
            "model": {"name": "tiny-random", "device": "cpu"},
            "train": train,
            "run": {"name": name, "output_root": str(tmp_path / "runs"), "store": _url(tmp_path)},
        }
    )


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def _row(tmp_path: Path, name: str):
    with Store(_url(tmp_path)) as store:
        return store.find_run(name)


def test_a_completed_run_writes_its_files_and_is_renamed(tmp_path):
    cfg = _cfg(tmp_path)
    seen = {}
    with open_run("sft", cfg, False) as run:
        partial = tmp_path / "runs" / ".r.partial"
        assert run.path == partial and (partial / "config.yaml").exists()
        assert yaml.safe_load((partial / "config.yaml").read_text()) == cfg.model_dump(mode="json")
        assert _row(tmp_path, "r").status == "running"
        assert run.settings.device == "cpu" and run.executor is None
        run.dir.metrics.write_text('{"step": 1, "loss": 2.5}\n')
        assert run.metric_rows() == [{"step": 1, "loss": 2.5}]

        def report(path: Path, summary: dict) -> None:
            seen.update(path=path, summary=dict(summary))
            (path / "report.md").write_text("# r\n")

        out = run.finish({"steps": 1}, report=report)
    final = tmp_path / "runs" / "r"
    assert seen == {"path": partial, "summary": {"run": "r", "status": "completed", "steps": 1}}
    assert out == {"run": "r", "status": "completed", "steps": 1, "run_dir": str(final)}
    assert not partial.exists()
    assert {p.name for p in final.iterdir()} == {"config.yaml", "metrics.jsonl", "report.md", "summary.json"}
    assert json.loads((final / "summary.json").read_text()) == {"run": "r", "status": "completed", "steps": 1}
    row = _row(tmp_path, "r")
    assert (row.status, row.run_dir, row.metrics["steps"]) == ("completed", str(final), 1)


def test_a_diverged_run_stays_partial_without_a_report(tmp_path):
    with open_run("sft", _cfg(tmp_path), False) as run:
        out = run.finish({"steps": 3}, status="diverged", error="loss is nan", report=pytest.fail)
    partial = tmp_path / "runs" / ".r.partial"
    assert out["run_dir"] == str(partial) and not (tmp_path / "runs" / "r").exists()
    summary = json.loads((partial / "summary.json").read_text())
    assert summary == {"run": "r", "status": "diverged", "steps": 3, "error": "loss is nan"}
    row = _row(tmp_path, "r")
    assert (row.status, row.error) == ("diverged", "loss is nan")


def test_an_exception_fails_the_row_and_resume_continues_with_the_saved_config(tmp_path):
    with pytest.raises(RuntimeError, match="CUDA out of memory"), open_run("sft", _cfg(tmp_path), False):
        raise RuntimeError("CUDA out of memory.")
    row = _row(tmp_path, "r")
    assert row.status == "failed" and "CUDA out of memory" in row.error
    assert (tmp_path / "runs" / ".r.partial" / "config.yaml").exists()

    with pytest.raises(PosttrainError, match="--resume"), open_run("sft", _cfg(tmp_path), False):
        pass  # the killed run is not clobbered by a fresh start

    changed = _cfg(tmp_path, learning_rate=1e-3)
    cfg = resumed(changed, True)
    assert cfg.train.learning_rate == _cfg(tmp_path).train.learning_rate  # config.yaml wins
    with open_run("sft", cfg, True) as run:
        assert _row(tmp_path, "r").status == "running"
        run.finish({})
    with Store(_url(tmp_path)) as store:
        assert [r.status for r in store.list_runs()] == ["completed"]  # the same row, not a second one


def test_resume_needs_a_name_and_a_partial_directory(tmp_path):
    with pytest.raises(PosttrainError, match="--name"):
        resumed(
            _cfg(tmp_path).model_copy(update={"run": _cfg(tmp_path).run.model_copy(update={"name": None})}),
            True,
        )
    assert resumed(_cfg(tmp_path), False) == _cfg(tmp_path)
    with pytest.raises(PosttrainError, match="nothing to resume"), open_run("sft", _cfg(tmp_path), True):
        pass
    assert not (tmp_path / "runs" / "r").exists()


def test_an_executor_logs_under_the_run_and_a_default_name_uses_the_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_RUN_STAMP", "stamp")
    cfg = TuneConfig.model_validate(
        {"model": {"device": "cpu"}, "run": {"output_root": str(tmp_path / "runs"), "store": _url(tmp_path)}}
    )
    with open_run("tune", cfg, False, executor=cfg.executor.model_dump()) as run:
        assert run.name == "tune-stamp" and run.executor.kind == "local"
        assert run.executor.map(lambda x: x * 2, [1, 2], stage="t", keys=["a", "b"]) == [2, 4]
        run.finish({})
    assert (tmp_path / "runs" / "tune-stamp" / "summary.json").exists()
    with open_run("align", cfg, False, default_name="align-tool_use") as run:
        assert run.name == "align-tool_use-stamp"
        run.finish({})
