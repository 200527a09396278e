"""KL-penalty controllers for online RL, and the checks the RLHF benchmark reports.

The adaptive controller is Ziegler et al. (2019), "Fine-Tuning Language Models from Human
Preferences", section 2.2, as in the old TRL/OpenAI `AdaptiveKLController`:

    error = clip(current_kl / kl_target - 1, -0.2, 0.2)
    beta  = beta * (1 + error * n_steps / horizon)

so beta grows when the policy drifts further from the reference than `kl_target` and
shrinks when it stays closer. The clip bounds one update to a factor of
(1 ± 0.2 · n_steps / horizon), so a single noisy KL estimate cannot swing beta.
TRL's GRPO/RLOO trainers read `trainer.beta` every step; the pipeline sets it from here.

Scale, measured on smollm2-135m (bench/rlhf_quality.py, variants): GRPO's advantages are
normalised to unit scale, while the KL term's gradient per token is about beta x |log ratio|
(~0.2 beta at a KL of 0.02, since |log ratio| ~ sqrt(2 KL)). Between beta 0.02 and 0.175 the
mean KL after 80 steps stayed at 0.0196 whatever the target, so beta binds only near 1.
Starting at 0.05, the controller cannot get there within 80 steps at horizon 8 or 2: while the
policy still equals its reference (KL 0 for the first steps) it lowers beta, the faster the
shorter the horizon. Started at 1.0 it held a 0.01 target (mean KL 0.0069) but the reward gain
fell from +0.040 to +0.010: a binding KL costs the gain on a short run. On such a budget set
the target where the policy must go to learn, or start beta near its binding value and accept
the smaller gain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ERROR_CLIP = 0.2


class AdaptiveKLController:
    """Moves beta towards the value that keeps the measured KL at `kl_target`.

    `horizon` is in the same unit as `n_steps` (optimizer steps, or samples if the caller
    counts samples): the larger it is, the slower beta moves. Beta stays positive: one
    update multiplies it by at least 1 - 0.2 * n_steps / horizon, which `update` keeps
    above zero by requiring n_steps < 5 * horizon.
    """

    def __init__(self, init_beta: float, kl_target: float, horizon: float) -> None:
        if not (init_beta > 0 and math.isfinite(init_beta)):
            raise ValueError(f"init_beta must be a positive number, got {init_beta}")
        if not (kl_target > 0 and math.isfinite(kl_target)):
            raise ValueError(f"kl_target must be a positive number, got {kl_target}")
        if not (horizon > 0 and math.isfinite(horizon)):
            raise ValueError(f"horizon must be a positive number, got {horizon}")
        self.beta = float(init_beta)
        self.kl_target = float(kl_target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Apply one update for `n_steps` steps spent at `current_kl`; return the new beta.

        A non-finite KL raises ValueError instead of poisoning beta: it means the policy
        diverged, which the trainer's own guard should report.
        """
        if not math.isfinite(current_kl):
            raise ValueError(f"current_kl must be finite, got {current_kl}")
        if n_steps < 0 or n_steps >= 5 * self.horizon:
            raise ValueError(f"n_steps must be in [0, 5 * horizon = {5 * self.horizon:g}), got {n_steps}")
        error = min(max(current_kl / self.kl_target - 1.0, -ERROR_CLIP), ERROR_CLIP)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta

    def state_dict(self) -> dict[str, float]:
        """What a checkpoint must keep so a resumed run continues with the same beta."""
        return {"beta": self.beta, "kl_target": self.kl_target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])
        self.kl_target = float(state["kl_target"])
        self.horizon = float(state["horizon"])


class FixedKLController:
    """Constant beta, with the same interface as `AdaptiveKLController` (dynamic KL off)."""

    def __init__(self, beta: float) -> None:
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"beta must be a non-negative number, got {beta}")
        self.beta = float(beta)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.beta

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])


def mean_kl_after_warmup(kls: Sequence[float], warmup: int) -> float:
    """Mean of the per-step KLs after dropping the first `warmup` steps.

    The controller needs some steps to find beta, so the benchmark judges only what
    follows. Raises ValueError when nothing is left after warm-up.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    rest = [float(k) for k in kls[warmup:]]
    if not rest:
        raise ValueError(f"no KL values after a warm-up of {warmup} steps ({len(kls)} steps in total)")
    return sum(rest) / len(rest)


def within_band(mean: float, target: float, rel: float = 0.5) -> bool:
    """True when `mean` is within ±rel·target of `target` (rel=0.5: the ±50% band of issue 6)."""
    if target <= 0 or rel < 0:
        raise ValueError(f"target must be > 0 and rel >= 0, got target={target}, rel={rel}")
    return math.isfinite(mean) and abs(mean - target) <= rel * target
