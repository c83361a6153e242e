"""CUPED and ratio tests on two :class:`~liftlab.stats.moments.JointStats` (gbstats style).

Scalar, immutable front-ends of the vectorised kernels in :mod:`liftlab.stats.engine`:

* :func:`cuped_test` — CUPED (Deng, Xu, Kohavi & Walker 2013, WSDM '13) with the pooled
  ``θ = cov(ℓ, x)/var(x)`` over both arms; for a mean metric ``ℓ = y`` and the result equals
  Welch's test (scipy ``ttest_ind(equal_var=False)``) on the adjusted unit values
  ``y − θ(x − x̄)``; for a ratio metric ``ℓ`` is the delta-method linearisation
  ``(y − R d)/μ_d`` (Deng, Knoblich & Lu 2018), i.e. CUPED for ratio metrics.
* :func:`ratio_test` — the delta-method test of a difference of ratio metrics ``Σy/Σd``.

Each returns a :class:`StatResult` with the absolute and relative effect, CIs, p value, and
for CUPED ``theta``, the achieved ``variance_reduction = 1 − V_cuped/V_raw`` and the pooled
``rho2 = corr(ℓ, x)²`` (CUPED's theoretical reduction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .moments import MOMENT_COLUMNS, JointStats
from .welch import EffectResult
from .ratio import arm_moments

__all__ = ["StatResult", "cuped_test", "ratio_test"]


@dataclass(frozen=True, slots=True)
class StatResult(EffectResult):
    """An :class:`EffectResult` with the CUPED diagnostics (NaN for tests that have none)."""

    theta: float = float("nan")
    variance_reduction: float = float("nan")
    rho2: float = float("nan")


def _arrays(s: JointStats) -> dict[str, np.ndarray]:
    return {c: np.array([float(getattr(s, c))]) for c in ("n", *MOMENT_COLUMNS)}


def _result(res: dict, e0, e1, alpha: float, method: str, **extra) -> StatResult:
    f = {k: float(np.asarray(v).ravel()[0]) for k, v in res.items()}
    return StatResult(baseline_mean=float(e0[0]), variant_mean=float(e1[0]), alpha=alpha, method=method,
                      **f, **{k: float(np.asarray(v).ravel()[0]) for k, v in extra.items()})


def ratio_test(baseline: JointStats, variant: JointStats, alpha: float = 0.05, reference: str = "normal") -> StatResult:
    """Delta-method test of ``Σy/Σd`` (variant) minus ``Σy/Σd`` (baseline); z test by default."""
    from .engine import two_sample

    m0, m1 = arm_moments(_arrays(baseline)), arm_moments(_arrays(variant))
    res = two_sample(m0["est"], m1["est"], m0["var"], m1["var"], m0["n"], m1["n"], alpha, reference)
    return _result(res, m0["est"], m1["est"], alpha, "delta_method")


def cuped_adjust(m0: dict, m1: dict, pooled: dict):
    """CUPED with a pooled θ from per-arm moments (vectorised over metrics).

    θ = Σ(ℓ−ℓ̄)(x−x̄) / Σ(x−x̄)² over both arms pooled (Deng, Xu, Kohavi & Walker 2013), so the
    adjustment is the same in both arms; ρ² is the pooled squared correlation. Returns θ, ρ²,
    the adjusted arm estimates, their variances and the variance reduction vs the unadjusted.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(pooled["s_xx"] > 0, pooled["s_lx"] / pooled["s_xx"], 0.0)
        rho2 = pooled["s_lx"] ** 2 / (pooled["s_ll"] * pooled["s_xx"])
        xbar = pooled["mean_x"]
        e0 = m0["est"] - theta * (m0["mean_x"] - xbar)
        e1 = m1["est"] - theta * (m1["mean_x"] - xbar)
        v0 = np.maximum(m0["s_ll"] - 2 * theta * m0["s_lx"] + theta**2 * m0["s_xx"], 0.0) / m0["n"]
        v1 = np.maximum(m1["s_ll"] - 2 * theta * m1["s_lx"] + theta**2 * m1["s_xx"], 0.0) / m1["n"]
        vr = 1.0 - (v0 + v1) / (m0["var"] + m1["var"])
    return theta, rho2, e0, e1, v0, v1, vr


def cuped_test(baseline: JointStats, variant: JointStats, alpha: float = 0.05, reference: str = "t") -> StatResult:
    """CUPED with pooled θ (see module docstring); mean or ratio metric according to ``d``."""
    from .engine import two_sample

    a0, a1 = _arrays(baseline), _arrays(variant)
    m0, m1 = arm_moments(a0), arm_moments(a1)
    pooled = arm_moments({c: a0[c] + a1[c] for c in a0})
    theta, rho2, e0, e1, v0, v1, vr = cuped_adjust(m0, m1, pooled)
    res = two_sample(e0, e1, v0, v1, m0["n"], m1["n"], alpha, reference)
    return _result(res, e0, e1, alpha, "cuped", theta=theta, variance_reduction=vr, rho2=rho2)
