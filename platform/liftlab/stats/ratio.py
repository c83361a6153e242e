"""Ratio metrics (delta method) and arm-level moments on :class:`~liftlab.stats.moments.JointStats`.

A ratio metric is ``R = Σy / Σd`` over the units of an arm (e.g. revenue per session =
Σ revenue / Σ sessions, units = users).  Units are i.i.d., the sessions inside a unit are
not, so the variance comes from the first-order delta method on the unit-level pair
``(y, d)`` — Deng, Knoblich & Lu (2018) "Applying the Delta Method in Metric Analytics:
A Practical Guide with Novel Ideas", KDD '18, eq. (4)::

    var(R̂) = (1/n) · ( s_y²/μ_d² − 2 μ_y s_yd/μ_d³ + μ_y² s_d²/μ_d⁴ )

i.e. the variance of the linearised unit value ``ℓ = (y − R·d)/μ_d`` divided by ``n``; the
covariance term ``s_yd`` is essential (without it the variance is wrong by a factor that
can exceed 2).  A mean metric is the special case ``d ≡ 1`` (``s_d = s_yd = 0``), so the
same functions serve both.  All functions are vectorised over numpy arrays.
"""

from __future__ import annotations

import numpy as np

from .moments import centered

__all__ = ["arm_moments", "ratio_variance"]


def arm_moments(s: dict) -> dict[str, np.ndarray]:
    """Per arm: point estimate ``est`` (Σy/Σd), ``var`` of the estimate (delta method),
    ``var_x`` (var of the covariate mean), ``cov_lx`` (cov of the estimate with x̄) and the
    unit-level sample (co)variances ``s_ll``, ``s_xx``, ``s_lx`` (ddof = 1).

    ``s`` maps the stored column names (``n``, ``sum``, ``sum_sq``, ``sum_x`` …) to arrays.
    """
    n = np.asarray(s["n"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_d = s["sum_d"] / n
        est = s["sum"] / s["sum_d"]
        c_yy = centered(s["sum_sq"], s["sum"], s["sum"], n)
        c_dd = centered(s["sum_d_sq"], s["sum_d"], s["sum_d"], n)
        c_yd = centered(s["sum_yd"], s["sum"], s["sum_d"], n)
        c_xx = centered(s["sum_x_sq"], s["sum_x"], s["sum_x"], n)
        c_xy = centered(s["sum_xy"], s["sum"], s["sum_x"], n)
        c_xd = centered(s["sum_xd"], s["sum_x"], s["sum_d"], n)
        dof = np.where(n >= 2, n - 1.0, np.nan)
        s_ll = np.maximum(c_yy - 2 * est * c_yd + est * est * c_dd, 0.0) / (mu_d * mu_d) / dof
        s_xx = np.maximum(c_xx, 0.0) / dof
        s_lx = (c_xy - est * c_xd) / mu_d / dof
    return {
        "n": n, "est": est, "mean_x": s["sum_x"] / np.where(n > 0, n, np.nan),
        "s_ll": s_ll, "s_xx": s_xx, "s_lx": s_lx, "var": s_ll / n,
    }


def ratio_variance(n, sum_y, sum_y2, sum_d, sum_d2, sum_yd) -> np.ndarray:
    """Delta-method variance of ``Σy/Σd`` (Deng et al. 2018, eq. 4), vectorised."""
    z = np.zeros_like(np.asarray(n, dtype=np.float64))
    m = arm_moments({"n": n, "sum": sum_y, "sum_sq": sum_y2, "sum_d": sum_d, "sum_d_sq": sum_d2,
                     "sum_yd": sum_yd, "sum_x": z, "sum_x_sq": z, "sum_xy": z, "sum_xd": z})
    return m["var"]
