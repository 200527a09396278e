"""KL controllers: the Ziegler et al. update computed by hand, and the benchmark's band check."""

from __future__ import annotations

import pytest

from posttrain.train.kl import AdaptiveKLController, FixedKLController, mean_kl_after_warmup, within_band


@pytest.mark.parametrize(
    ("kl", "expected"),
    [
        (0.055, 0.1 * (1 + 0.1 * 10 / 100)),  # 10% over target: beta up by 1%
        (0.06, 0.1 * (1 + 0.2 * 10 / 100)),  # 20% over: exactly at the clip
        (5.0, 0.1 * (1 + 0.2 * 10 / 100)),  # far over: clipped to +0.2
        (0.05, 0.1),  # on target: unchanged
        (0.045, 0.1 * (1 - 0.1 * 10 / 100)),  # 10% under: beta down by 1%
        (0.0, 0.1 * (1 - 0.2 * 10 / 100)),  # far under: clipped to -0.2
        (-0.3, 0.1 * (1 - 0.2 * 10 / 100)),  # a negative KL estimate is clipped the same way
    ],
)
def test_adaptive_update_by_hand(kl, expected):
    controller = AdaptiveKLController(init_beta=0.1, kl_target=0.05, horizon=100)
    assert controller.update(kl, n_steps=10) == pytest.approx(expected)
    assert controller.beta == pytest.approx(expected)


def test_updates_compound_and_scale_with_steps():
    controller = AdaptiveKLController(0.1, 0.05, 100)
    controller.update(1.0, 10)
    controller.update(1.0, 10)
    assert controller.beta == pytest.approx(0.1 * 1.02 * 1.02)
    assert controller.update(1.0, 0) == pytest.approx(0.1 * 1.02 * 1.02)


def test_beta_settles_where_kl_meets_the_target():
    # A toy policy whose KL falls as beta rises: KL = 0.02 / beta, so beta* = 0.2 for target 0.1.
    controller = AdaptiveKLController(init_beta=0.05, kl_target=0.1, horizon=10)
    kls = []
    for _ in range(300):
        kls.append(0.02 / controller.beta)
        controller.update(kls[-1], n_steps=1)
    assert kls[0] == pytest.approx(0.4)
    assert mean_kl_after_warmup(kls, 150) == pytest.approx(0.1, rel=0.05)
    assert within_band(mean_kl_after_warmup(kls, 150), 0.1, rel=0.05)
    assert controller.beta == pytest.approx(0.2, rel=0.05)


def test_state_dict_round_trip_for_resume():
    a = AdaptiveKLController(0.1, 0.05, 100)
    a.update(1.0, 10)
    b = AdaptiveKLController(1.0, 1.0, 1.0)
    b.load_state_dict(a.state_dict())
    assert b.update(0.0, 10) == pytest.approx(a.update(0.0, 10))


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="init_beta"):
        AdaptiveKLController(0.0, 0.05, 100)
    with pytest.raises(ValueError, match="kl_target"):
        AdaptiveKLController(0.1, -1, 100)
    with pytest.raises(ValueError, match="horizon"):
        AdaptiveKLController(0.1, 0.05, 0)
    controller = AdaptiveKLController(0.1, 0.05, 100)
    with pytest.raises(ValueError, match="finite"):
        controller.update(float("nan"), 1)
    with pytest.raises(ValueError, match="n_steps"):
        controller.update(0.1, 500)  # would multiply beta by 1 - 0.2 * 5 = 0
    assert controller.beta == 0.1


def test_fixed_controller_never_moves():
    controller = FixedKLController(0.04)
    assert controller.update(10.0, 100) == 0.04 and controller.update(0.0, 100) == 0.04
    assert controller.state_dict() == {"beta": 0.04}


def test_mean_after_warmup_and_band():
    assert mean_kl_after_warmup([10.0, 10.0, 1.0, 2.0, 3.0], warmup=2) == 2.0
    assert mean_kl_after_warmup([1.0, 3.0], warmup=0) == 2.0
    with pytest.raises(ValueError, match="no KL values after a warm-up of 5 steps"):
        mean_kl_after_warmup([1.0, 2.0], warmup=5)
    assert within_band(0.07, 0.05) and within_band(0.03, 0.05)
    assert not within_band(0.08, 0.05) and not within_band(0.02, 0.05)
    assert not within_band(float("nan"), 0.05)
    assert within_band(0.055, 0.05, rel=0.1) and not within_band(0.056, 0.05, rel=0.1)
