"""posttrain/train/loop.py: run_trainer on a real HF Trainer with a 5-parameter regression, so
resume, the NaN guard, metrics trimming and evaluation are checked in well under a second each
(tests/train/test_sft.py runs the same loop through the real SFT trainer on tiny-random)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments

from posttrain.train.args import TrainArgs
from posttrain.train.loop import (
    COMPLETE_MARKER,
    GuardMixin,
    run_trainer,
    training_callbacks,
)


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": ((self.linear(x).squeeze(-1) - labels) ** 2).mean()}


class GuardedTrainer(GuardMixin, Trainer):
    pass


def _rows(n: int = 24, nan_at: int | None = None) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n):
        x = torch.randn(4, generator=gen)
        y = x.sum() + 0.1 * torch.randn((), generator=gen)
        rows.append({"x": torch.full((4,), float("nan")) if i == nan_at else x, "labels": y})
    return rows


def _trainer(out: Path, *, eval_rows=None, rows=None, metrics: Path | None = None, **kw):
    args = TrainArgs(
        **{"learning_rate": 0.05, "batch_size": 4, "max_steps": 6, "warmup_ratio": 0.0, "save_steps": 2, **kw}
    )
    log, callbacks = training_callbacks(metrics)
    torch.manual_seed(0)
    trainer = GuardedTrainer(
        model=Regression(),
        args=TrainingArguments(
            **{**args.hf_kwargs(out, use_cpu=True), "disable_tqdm": True}, remove_unused_columns=False
        ),
        train_dataset=rows or _rows(),
        eval_dataset=eval_rows,
        callbacks=callbacks,
    )
    return trainer, log


def _metric_steps(path: Path) -> list[int]:
    return [row["step"] for row in map(json.loads, path.read_text().splitlines()) if "loss" in row]


def test_resume_past_a_half_written_checkpoint_repeats_the_losses_and_each_metrics_row_once(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    ref = run_trainer(*_trainer(tmp_path / "ckpt", metrics=metrics))
    assert ref.status == "completed" and [s for s, _ in ref.losses] == [1, 2, 3, 4, 5, 6]
    (tmp_path / "ckpt" / "checkpoint-6" / COMPLETE_MARKER).unlink()  # a kill during the last save

    restored: list[Path] = []
    trainer, log = _trainer(tmp_path / "ckpt", metrics=metrics)
    resumed = run_trainer(trainer, log, resume=True, on_resume=restored.append)
    assert restored == [tmp_path / "ckpt" / "checkpoint-4"]
    assert resumed.extra["resumed_from"] == str(tmp_path / "ckpt" / "checkpoint-4")
    assert resumed.losses == ref.losses[-2:]  # bit-identical: same data order, RNG and optimizer state
    assert _metric_steps(metrics) == [1, 2, 3, 4, 5, 6]


def test_resume_without_a_checkpoint_redoes_every_row(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    stale = [{"step": 0, "note": 1}, {"step": 1, "loss": 9.0}]
    metrics.write_text("".join(json.dumps(row) + "\n" for row in stale))
    result = run_trainer(*_trainer(tmp_path / "ckpt", metrics=metrics, max_steps=2), resume=True)
    assert result.extra["resumed_from"] == ""
    assert _metric_steps(metrics) == [1, 2]  # the stale step-1 row went; rows before any step stay
    assert json.loads(metrics.read_text().splitlines()[0]) == {"step": 0, "note": 1}


def test_a_nan_batch_ends_the_run_as_diverged_before_the_update(tmp_path):
    rows = _rows(nan_at=9)  # batch 3 of 4 rows holds it (data order is shuffled: find its step)
    trainer, log = _trainer(tmp_path, rows=rows, eval_rows=_rows(8), max_steps=6)
    result = run_trainer(trainer, log)
    assert result.status == "diverged" and "training diverged at step" in result.error
    bad_step = int(result.error.split("step ")[1].split(":")[0])
    assert result.steps == bad_step - 1 and [s for s, _ in result.losses] == list(range(1, bad_step))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert result.eval_loss is None and "eval" not in result.extra  # a diverged model is not evaluated


def test_evaluates_before_and_after_on_a_fresh_start(tmp_path):
    trainer, log = _trainer(tmp_path, eval_rows=_rows(8))
    result = run_trainer(trainer, log, eval_before=True)
    assert result.eval_loss_before is not None and result.eval_loss is not None
    assert result.eval_loss < result.eval_loss_before
    assert result.extra["eval"]["eval_loss"] == pytest.approx(result.eval_loss)
    assert result.eval_s > 0 and result.runtime_s > 0
    assert [row["step"] for row in result.extra["log"] if "loss" in row] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_the_console_gets_one_line_per_log_step_not_a_dict(tmp_path, capsys, disable_tqdm):
    trainer, log = _trainer(tmp_path, eval_rows=_rows(8), max_steps=3)
    trainer.args.disable_tqdm = disable_tqdm
    if not disable_tqdm:  # _trainer builds with PrinterCallback; give it the bar HF would have
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(ProgressCallback)
    run_trainer(trainer, log)
    out = capsys.readouterr().out
    assert "{'loss'" not in out and "{'eval_loss'" not in out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith(("step", "trained"))]
    assert [line.split(" · ")[0] for line in lines][:3] == ["step 1/3", "step 2/3", "step 3/3"]
    assert lines[3].startswith("trained 3 steps in ") and len(lines) == 5
    assert lines[0].startswith("step 1/3 · loss ") and " · lr 0.05 · grad norm " in lines[0]
    assert lines[-1].startswith("step 3/3 · eval loss ")


def test_a_tiny_random_sft_run_prints_no_raw_dicts(tiny_spec, tmp_path):
    from tests.conftest import run_cli

    args = ["--preset", "test", "--max-steps", "2", "--name", "r", "--output-dir", "runs"]
    out = run_cli("sft", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "{'loss'" not in out.stdout and "{'train_runtime'" not in out.stdout
    assert "step 2/2 · loss " in out.stdout
