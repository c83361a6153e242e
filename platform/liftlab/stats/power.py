"""Power and minimum-detectable-effect planning for a two-sided two-sample test.

For an absolute effect ``δ`` estimated with standard error ``se`` (normal approximation,
``se² = σ0²/n0 + σ1²/n1``) the power of the two-sided level-α test is

    power = Φ(δ/se − z_{1−α/2}) + Φ(−δ/se − z_{1−α/2})

(both rejection tails, exactly as ``statsmodels.stats.power.NormalIndPower``; Chow, Shao &
Wang, *Sample Size Calculations in Clinical Research*, 2nd ed., §3.2).  The sample size per
arm for equal arms of standard deviation σ solves ``power(δ, σ·sqrt(2/n)) = 1 − β`` (closed
form ``2σ²(z_{1−α/2} + z_{1−β})²/δ²`` up to the far tail; solved exactly with Brent's
method), the MDE at the current sample solves ``power(MDE, se) = 1 − β`` for ``MDE``, and the
days still needed divide the missing units by the observed daily traffic per arm.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _st

__all__ = ["power_at", "sample_size_per_arm", "mde_at", "days_needed"]


def power_at(delta, se, alpha: float = 0.05) -> np.ndarray:
    """Power of the two-sided z test to detect ``delta`` when the estimate has SE ``se``."""
    z = _st.norm.ppf(1.0 - alpha / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.abs(np.asarray(delta, dtype=np.float64)) / np.asarray(se, dtype=np.float64)
    return _st.norm.cdf(d - z) + _st.norm.cdf(-d - z)


def sample_size_per_arm(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0) -> float:
    """Units in the baseline arm (the variant gets ``ratio`` times as many) for ``power`` at ``delta``.

    Equal to ``NormalIndPower().solve_power(effect_size=delta/sd, alpha=alpha, power=power, ratio=ratio)``.
    """
    if not (delta != 0 and sd > 0 and math.isfinite(delta) and math.isfinite(sd)):
        return math.nan
    za, zb = _st.norm.ppf(1 - alpha / 2), _st.norm.ppf(power)
    guess = (1 + 1 / ratio) * sd * sd * (za + zb) ** 2 / (delta * delta)

    def f(n):
        return float(power_at(delta, sd * math.sqrt(1 / n + 1 / (ratio * n)), alpha)) - power

    lo = max(guess * 0.5, 1e-9)
    while f(lo) > 0:
        lo /= 2
    return float(_opt.brentq(f, lo, guess * 2 + 1, xtol=1e-12, rtol=1e-14))


def mde_at(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute effect detected with ``power`` at standard error ``se``."""
    if not (se > 0 and math.isfinite(se)):
        return math.nan
    za, zb = _st.norm.ppf(1 - alpha / 2), _st.norm.ppf(power)
    guess = (za + zb) * se
    return float(_opt.brentq(lambda d: float(power_at(d, se, alpha)) - power, guess * 0.5, guess * 2, xtol=1e-14 * guess, rtol=1e-14))


def days_needed(n_required: float, n_now: float, days_elapsed: float) -> float:
    """Further days at the observed traffic (``n_now/days_elapsed`` units per day) to reach ``n_required``."""
    if not (math.isfinite(n_required) and days_elapsed > 0 and n_now > 0):
        return math.nan
    if n_now >= n_required:
        return 0.0
    return float(math.ceil((n_required - n_now) / (n_now / days_elapsed)))
