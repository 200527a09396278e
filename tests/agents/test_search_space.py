"""SearchSpace: seed 000's ranges, clamping/snapping, random sampling and Optuna suggestions."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from posttrain.config.search_space import HPARAM_NAMES, Choice, FloatRange, SearchSpace

SPACE = SearchSpace()

garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["1e-4", " 16 ", "nan", "inf", "-3", "0x10"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def test_defaults_match_seed_000_ranges() -> None:
    assert (SPACE.lr.low, SPACE.lr.high, SPACE.lr.log) == (1e-5, 5e-4, True)
    assert SPACE.batch_size.values == [1, 2, 4, 8]
    assert SPACE.epochs.values == [1, 2]
    assert (SPACE.warmup_ratio.low, SPACE.warmup_ratio.high) == (0.0, 0.2)
    assert SPACE.lora_r.values == [8, 16, 32]
    assert SPACE.lora_alpha.values == [16, 32, 64]
    assert (SPACE.lora_dropout.low, SPACE.lora_dropout.high) == (0.0, 0.2)
    assert SPACE.defaults() == {
        "lr": 2e-4,
        "batch_size": 4,
        "epochs": 1,
        "warmup_ratio": 0.05,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
    }
    assert SPACE.contains(SPACE.defaults())


def test_clamp_clamps_snaps_and_defaults() -> None:
    got = SPACE.clamp(
        {
            "lr": 0.1,  # above → high
            "batch_size": 3,  # tie between 2 and 4 → the lower
            "epochs": "2",  # numeric string
            "warmup_ratio": float("nan"),  # NaN → default
            "lora_r": 20,  # nearest is 16
            "lora_alpha": True,  # a bool is not a number → default
            "lora_dropout": -1,  # below → low
            "trial_id": "train_ep_0",  # not a hyperparameter → dropped
        }
    )
    assert got == {
        "lr": 5e-4,
        "batch_size": 2,
        "epochs": 2,
        "warmup_ratio": 0.05,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
    }
    assert SPACE.clamp({"lr": 1e-9, "batch_size": 100, "lora_r": 1, "warmup_ratio": math.inf})["lr"] == 1e-5
    assert SPACE.clamp({"batch_size": 100})["batch_size"] == 8
    assert SPACE.clamp({"warmup_ratio": math.inf})["warmup_ratio"] == 0.05
    assert SPACE.clamp(None) == SPACE.defaults()
    assert SPACE.clamp("not a dict") == SPACE.defaults()  # type: ignore[arg-type]


@given(st.dictionaries(st.sampled_from([*HPARAM_NAMES, "other"]), garbage, max_size=9))
@settings(max_examples=300, deadline=None)
def test_clamp_always_lands_inside(hparams: dict) -> None:
    clamped = SPACE.clamp(hparams)
    assert list(clamped) == list(HPARAM_NAMES)
    assert SPACE.contains(clamped)
    assert all(math.isfinite(v) for v in clamped.values())


def test_choice_step_stops_at_the_ends() -> None:
    assert SPACE.batch_size.step(4, +1) == 8
    assert SPACE.batch_size.step(8, +1) == 8
    assert SPACE.batch_size.step(4, -2) == 1
    assert SPACE.batch_size.step(3, -1) == 1  # 3 snaps to 2 first


def test_sample_random_is_log_uniform_and_inside() -> None:
    rng = random.Random(0)
    draws = [SPACE.sample_random(rng) for _ in range(2000)]
    assert all(SPACE.contains(d) for d in draws)
    geometric_mid = math.sqrt(
        1e-5 * 5e-4
    )  # 7.07e-5; a linear-uniform lr would fall below it only 13% of the time
    below = sum(d["lr"] < geometric_mid for d in draws) / len(draws)
    assert 0.45 < below < 0.55
    assert {d["batch_size"] for d in draws} == {1, 2, 4, 8}
    assert SPACE.sample_random(7) == SPACE.sample_random(7)


def test_invalid_space_configs_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="low"):
        FloatRange(low=1.0, high=0.5, default=0.7)
    with pytest.raises(ValidationError, match="log range needs low > 0"):
        FloatRange(low=0.0, high=1.0, default=0.5, log=True)
    with pytest.raises(ValidationError, match="not one of"):
        Choice(values=[8, 16], default=4)
    with pytest.raises(ValidationError, match="extra"):
        SearchSpace.model_validate({"learning_rate": {"low": 1, "high": 2, "default": 1}})


def test_space_is_configurable_from_a_dict() -> None:
    space = SearchSpace.model_validate(
        {
            "lr": {"low": 1e-4, "high": 1e-3, "log": True, "default": 3e-4},
            "lora_r": {"values": [64, 4], "default": 4},
        }
    )
    assert space.lora_r.values == [4, 64]
    assert space.clamp({"lr": 1e-5, "lora_r": 30})["lr"] == 1e-4
    assert space.clamp({"lora_r": 30})["lora_r"] == 4
    assert space.batch_size.values == [1, 2, 4, 8]  # untouched fields keep seed 000's values


def test_optuna_suggest_and_distributions_stay_in_space() -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    proposal = SPACE.clamp({"lr": 3e-4, "batch_size": 2})
    study.enqueue_trial(proposal)  # how the hybrid tuner feeds agent proposals to TPE
    seen = []
    for _ in range(15):
        trial = study.ask()
        hparams = SPACE.suggest(trial)
        assert SPACE.contains(hparams)
        seen.append(hparams)
        study.tell(trial, (math.log(hparams["lr"]) - math.log(1e-4)) ** 2 + hparams["batch_size"] / 10)
    assert seen[0] == proposal
    fixed = study.ask(fixed_distributions=SPACE.distributions())
    assert SPACE.contains(fixed.params)
    assert study.best_value < 1.0
