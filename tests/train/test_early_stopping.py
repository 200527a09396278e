"""Evaluation during training (`train.eval_steps`) and early stopping on the validation loss, on
tiny-random with real training: eval points in metrics.jsonl, a run that must stop early, the best
checkpoint loaded back, and bad combinations refused before anything loads."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import ConfigError
from posttrain.models import ResidentModel
from posttrain.tasks.instructions import load_preference_dataset, load_sft_dataset, sample_path
from posttrain.train.args import DPOArgs, SFTArgs, TrainArgs
from posttrain.train.dpo import dpo_train
from posttrain.train.sft import evaluate_loss, sft_train
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # 2 shared CPU cores: torch's default of one thread per core oversubscribes them.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture()
def resident(tiny_spec):
    import torch

    torch.set_num_threads(1)
    return ResidentModel(tiny_spec)


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# Every evaluation after the first counts as "no better": the loss would have to drop by 1e9.
NEVER_BETTER = dict(eval_steps=1, save_steps=1, early_stopping_patience=2, early_stopping_threshold=1e9)


def test_hf_keywords_turn_evaluation_and_best_model_on_only_when_asked(tmp_path):
    assert TrainArgs().hf_kwargs(tmp_path)["eval_strategy"] == "no"  # the default run is unchanged
    plain = TrainArgs(eval_steps=5).hf_kwargs(tmp_path)
    assert (plain["eval_strategy"], plain["eval_steps"]) == ("steps", 5)
    assert "load_best_model_at_end" not in plain and TrainArgs(eval_steps=5).callbacks() == []
    stopping = TrainArgs(eval_steps=5, save_steps=10, early_stopping_patience=3)
    kw = stopping.hf_kwargs(tmp_path)
    assert kw["load_best_model_at_end"] is True and kw["metric_for_best_model"] == "eval_loss"
    assert kw["greater_is_better"] is False
    assert stopping.hf_kwargs(tmp_path, checkpoints=False)["load_best_model_at_end"] is False
    [callback] = stopping.callbacks()
    assert (callback.early_stopping_patience, callback.early_stopping_threshold) == (3, 0.0)
    with pytest.raises(ConfigError, match="set eval_steps"):
        TrainArgs(early_stopping_patience=2)
    with pytest.raises(ConfigError, match=r"save_steps \(50\) must be a multiple of eval_steps \(20\)"):
        TrainArgs(eval_steps=20, early_stopping_patience=2)


def test_eval_steps_puts_eval_points_in_the_metrics_file_and_the_report(tiny_spec, tmp_path):
    out = run_cli(
        "sft",
        "--preset",
        "test",
        "--name",
        "e",
        "--output-dir",
        "runs",
        "--set",
        "train.eval_steps=2",
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "e"
    rows = _jsonl(run / "metrics.jsonl")
    evals = [r["step"] for r in rows if "eval_loss" in r]
    assert evals == [0, 2, 4, 6, 8]  # before training, every 2 steps, and the last one not run twice
    train = [r["step"] for r in rows if "loss" in r]
    assert train == list(range(1, 9))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 8
    assert summary["eval_loss"] == pytest.approx(
        next(r["eval_loss"] for r in rows if r.get("step") == 8 and "eval_loss" in r)
    )
    assert (run / "plots" / "loss.png").stat().st_size > 1000
    assert "eval loss" in out.stdout + out.stderr  # the console line of an evaluation
    assert "Loading weights" not in out.stderr  # transformers' unlabelled load bar is silenced


@pytest.fixture(scope="module")
def sft_data():
    return load_sft_dataset(sample_path("alpaca"), max_train=48, max_val=8)


def test_early_stopping_stops_sft_when_no_evaluation_can_count_as_better(resident, sft_data, tmp_path):
    train_rows, val_rows = sft_data
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    hp = SFTArgs(
        learning_rate=2e-3, batch_size=4, max_steps=20, warmup_ratio=0.0, max_length=128, **NEVER_BETTER
    )
    metrics = tmp_path / "metrics.jsonl"
    result = sft_train(
        model, resident.tokenizer, train_rows, val_rows, tmp_path / "ckpt", hp, metrics_path=metrics
    )
    assert result.status == "completed"
    # eval at 1 sets the best; 2 and 3 do not beat it by 1e9: patience 2 is spent at step 3 of 20
    assert result.steps == 3 and [s for s, _ in result.losses] == [1, 2, 3]
    evals = {r["step"]: r["eval_loss"] for r in _jsonl(metrics) if "eval_loss" in r}
    assert sorted(evals) == [0, 1, 2, 3]  # before training, then every step; the last not run twice
    # the metrics file holds the same (token-mean) eval loss the run reports and a fresh evaluation gives
    again = evaluate_loss(model, resident.tokenizer, val_rows, tmp_path / "again", max_length=128)
    assert result.eval_loss == pytest.approx(again, abs=1e-6) and result.eval_loss_before == evals[0]


def test_early_stopping_on_a_plateau_goes_back_to_the_best_checkpoint(resident, sft_data, tmp_path):
    train_rows, val_rows = sft_data
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    hp = SFTArgs(
        learning_rate=0.05,  # a constant high rate: the validation loss falls, then wobbles on a plateau
        scheduler="constant",
        batch_size=4,
        max_steps=12,
        warmup_ratio=0.0,
        max_length=128,
        eval_steps=1,
        save_steps=1,
        early_stopping_patience=2,
    )
    result = sft_train(model, resident.tokenizer, train_rows, val_rows, tmp_path / "ckpt", hp)
    evals = {r["step"]: r["eval_loss"] for r in result.extra["log"] if "eval_loss" in r and r["step"] > 0}
    best = min(evals, key=evals.get)
    assert result.steps < 12 and result.steps == best + 2  # two evaluations no better than the best
    assert evals[result.steps] > evals[best]
    # the adapter left in the model is the best step's, not the last one's, measured afresh
    again = evaluate_loss(model, resident.tokenizer, val_rows, tmp_path / "again", max_length=128)
    assert again == pytest.approx(evals[best], abs=1e-6) and result.eval_loss == pytest.approx(again)


def test_early_stopping_stops_dpo_too(resident, tmp_path):
    train_rows, val_rows = load_preference_dataset(sample_path("preference"), max_train=32, max_val=4)
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    hp = DPOArgs(
        learning_rate=1e-3, batch_size=2, max_steps=20, warmup_ratio=0.0, max_length=128, **NEVER_BETTER
    )
    result = dpo_train(model, resident.tokenizer, train_rows, val_rows, tmp_path / "ckpt", hp)
    assert result.status == "completed" and result.steps == 3


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["train.early_stopping_patience=2"], "train: early_stopping_patience=2 compares evaluations"),
        (
            ["train.eval_steps=3", "train.early_stopping_patience=1"],
            "save_steps (4) must be a multiple of eval_steps (3), e.g. save_steps=3",
        ),
        (["train.eval_steps=-1"], "train.eval_steps: Input should be greater than or equal to 0"),
    ],
)
def test_bad_combinations_exit_2_with_one_line(tmp_path, sets, needle):
    args = [arg for item in sets for arg in ("--set", item)]
    out = run_cli("sft", "--preset", "test", "--name", "bad", *args, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_eval_steps_without_validation_rows_exit_2_before_a_model_loads(tmp_path):
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "output": "hi"}) + "\n")
    out = run_cli(
        "sft",
        "--preset",
        "test",
        "--data",
        str(data),
        "--set",
        "train.eval_steps=2",
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2 and "train.eval_steps=2 evaluates on validation rows" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
