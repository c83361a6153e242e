"""Event-level quantile metrics (e.g. p90 page latency) with cluster-robust inference.

The metric pools all fact rows of all units of an arm and takes the ν-quantile of the
pooled values.  Units (the randomisation units) are i.i.d.; rows within a unit are not,
so the i.i.d. order-statistic interval is too narrow.  The method is the one of Deng,
Knoblich & Lu (2018) "Applying the Delta Method in Metric Analytics: A Practical Guide
with Novel Ideas", KDD '18 (arXiv:1803.06336), section on quantile metrics.  GrowthBook's
``gbstats`` (``QuantileClusteredStatistic``) uses an asymptotically equivalent variant: the
bounds at the i.i.d. ``ν ± z·√(ν(1−ν)/n*)`` and the resulting variance scaled by
``var(F̂)/(ν(1−ν)/n)``.  Here:

1. point estimate: the order statistic ``q̂ = x_(⌈nν⌉)`` of the ``n`` pooled rows (the
   inverse of the empirical CDF ``F̂``, numpy ``method="inverted_cdf"``);
2. ``F̂(q̂) = Σ_i S_i / Σ_i N_i`` with ``S_i`` the rows of unit ``i`` with value ``≤ q̂``
   and ``N_i`` its row count, a ratio of unit sums.  Its cluster-robust variance is the
   delta-method variance of a ratio (Deng et al. 2018, eq. 4; :mod:`liftlab.stats.ratio`),
   with ``K`` units and ``R = F̂(q̂)``::

       var(F̂) = K/(K−1) · Σ_i (S_i − R·N_i)² / n²

   — algebraically equal to ``gbstats``' ``get_cluster_variance`` (raw-moment form,
   ``K−1`` denominators).  With one row per unit it is ``R(1−R)/(n−1)``, the binomial
   variance of the i.i.d. case;
3. CI of the quantile by inverting the CI of the CDF (Woodruff 1952, "Confidence
   intervals for medians and other position measures", JASA 47; Deng et al. 2018):
   ``[L, U] = [x_(⌈n·p₋⌉), x_(⌈n·p₊⌉)]`` with ``p± = ν ± z·se(F̂)``,
   ``z = Φ⁻¹(1 − α/2)``;
4. standard error from the interval width, ``se(q̂) = (U − L)/(2z)`` (Woodruff 1952;
   Sitter & Wu (2001) "A note on Woodruff confidence intervals for quantiles", Stat. &
   Prob. Letters 52; ``gbstats`` ``QuantileStatistic.variance_init``, which in addition
   multiplies the variance by ``(n−1)/n``).  This avoids estimating the density at q̂.

The Woodruff ``se`` is slightly conservative in small samples (simulated
``se`` ≈ 7 % too large with 200 units, 3 % with 400, 2 % with 1,000 in a simulation of
clustered log-normal rows at ν = 0.9).

Two arms are independent, so the difference uses ``se = √(se₀² + se₁²)`` with the normal
reference, and the relative effect the delta method of :mod:`liftlab.stats.welch`.

Degenerate data never raise nor warn: no rows → all NaN; one unit → the estimate is kept,
``cdf_se``, bounds and ``se`` are NaN; ν too close to 0/1 for the sample — ``p₋ ≤ 0`` or
``p₊ ≥ 1``, or the same for the i.i.d. ``ν ± z·√(ν(1−ν)/n)`` (``gbstats``' guard
``n ≤ z²·ν/(1−ν)``, needed because q̂ is then the sample extreme, ``F̂(q̂) = 1`` and
``var(F̂) = 0``) → bounds and ``se`` NaN; ``U == L`` (e.g. all values equal) → ``se`` NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["QuantileStats", "QuantileEffect", "quantile_stats", "quantile_effect"]

_NAN = math.nan


@dataclass(frozen=True, slots=True)
class QuantileStats:
    """One arm's ν-quantile of pooled rows and its cluster-robust uncertainty.

    ``estimate`` = ``x_(⌈nν⌉)``; ``cdf_se`` = √var(F̂) (ratio-of-unit-sums delta method);
    ``lower``/``upper`` = order statistics at ``ν ∓ z_{1−α/2}·cdf_se`` (Woodruff CI);
    ``se`` = ``(upper − lower)/(2z)``.  ``n`` counts non-NaN rows, ``n_units`` the units
    having at least one of them.  See the module docstring for sources.
    """

    q: float
    n: int
    n_units: int
    estimate: float
    cdf_se: float
    lower: float
    upper: float
    se: float
    alpha: float


@dataclass(frozen=True, slots=True)
class QuantileEffect:
    """``treatment − control`` quantile (``abs_*``) and ``treatment/control − 1`` (``rel_*``).

    Normal reference: CI ``effect ± z_{1−α/2}·se``, two-sided ``p = 2·(1 − Φ(|z_stat|))``
    for the absolute difference.
    """

    q: float
    control_quantile: float
    treatment_quantile: float
    abs_effect: float
    abs_se: float
    abs_ci_low: float
    abs_ci_high: float
    z_stat: float
    p_value: float
    rel_effect: float
    rel_se: float
    rel_ci_low: float
    rel_ci_high: float
    alpha: float
    method: str = "quantile_woodruff_delta"


def _check(name: str, v: float) -> None:
    if not (0.0 < v < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {v!r}")


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def _order_stat(xs: np.ndarray, p: float) -> float:
    """``x_(⌈n·p⌉)`` of the sorted ``xs`` (1-based rank, tolerant to float error in n·p)."""
    k = min(max(math.ceil(xs.size * p - 1e-9), 1), xs.size)
    return float(xs[k - 1])


def quantile_stats(values, units, q: float, alpha: float = 0.05) -> QuantileStats:
    """ν-quantile of one arm's pooled rows with a CI valid under clustering in ``units``.

    ``values``: row values (NaN rows are dropped); ``units``: the unit id of each row
    (integers, strings — anything ``np.unique`` can sort), same length.  Vectorised:
    one sort of the values, ``np.unique`` for unit codes, ``np.bincount`` for ``S_i, N_i``.
    To get the naive i.i.d. interval pass ``units=np.arange(len(values))``.
    Raises only on bad arguments (``q``/``alpha`` outside (0, 1), length mismatch).
    """
    _check("q", q)
    _check("alpha", alpha)
    x = np.asarray(values, dtype=np.float64).ravel()
    u = np.asarray(units).ravel()
    if x.shape != u.shape:
        raise ValueError(f"values and units differ in length: {x.size} != {u.size}")
    keep = ~np.isnan(x)
    x, u = x[keep], u[keep]
    n = int(x.size)
    if n == 0:
        return QuantileStats(q, 0, 0, _NAN, _NAN, _NAN, _NAN, _NAN, alpha)

    codes = np.unique(u, return_inverse=True)[1].ravel()
    k = int(codes.max()) + 1
    xs = np.sort(x)
    est = _order_stat(xs, q)
    cdf_se = lower = upper = se = _NAN
    if k >= 2:
        n_i = np.bincount(codes, minlength=k).astype(np.float64)
        s_i = np.bincount(codes, weights=(x <= est).astype(np.float64), minlength=k)
        r = s_i.sum() / n
        cdf_se = math.sqrt(k / (k - 1) * float(np.sum((s_i - r * n_i) ** 2)) / (n * n))
        z = _z(alpha)
        p_lo, p_hi = q - z * cdf_se, q + z * cdf_se
        iid = z * math.sqrt(q * (1.0 - q) / n)  # gbstats' guard: F̂(q̂) may be 1 at the max
        if 0.0 < min(p_lo, q - iid) and max(p_hi, q + iid) < 1.0:
            lower, upper = _order_stat(xs, p_lo), _order_stat(xs, p_hi)
            if upper > lower:  # U == L: the sample cannot resolve the spread at q̂
                se = (upper - lower) / (2.0 * z)
    return QuantileStats(q, n, k, est, cdf_se, lower, upper, se, alpha)


def quantile_effect(control: QuantileStats, treatment: QuantileStats, alpha: float = 0.05) -> QuantileEffect:
    """Difference ``treatment − control`` of the arms' quantiles for independent arms.

    ``abs_se = √(se_c² + se_t²)``, CI ``d ± z·abs_se`` and the two-sided normal p value;
    relative ``r = q_t/q_c − 1`` with the delta-method variance
    ``se_t²/q_c² + q_t²·se_c²/q_c⁴`` (Deng et al. 2018; same as :mod:`liftlab.stats.welch`).
    Fields are NaN where an arm's ``se`` is NaN or ``q_c == 0``.  The arms' ``se`` do not
    depend on their ``alpha`` to first order, so any ``alpha`` may be used here.
    """
    _check("alpha", alpha)
    if control.q != treatment.q:
        raise ValueError(f"arms use different quantile levels: {control.q} != {treatment.q}")
    q0, q1 = control.estimate, treatment.estimate
    z = _z(alpha)
    d = q1 - q0
    se = math.sqrt(control.se**2 + treatment.se**2)
    if not se > 0.0:
        se = _NAN
    stat = d / se
    p = math.erfc(abs(stat) / math.sqrt(2.0)) if math.isfinite(stat) else _NAN
    rel = rel_se = _NAN
    if math.isfinite(q0) and math.isfinite(q1) and q0 != 0.0:
        rel = q1 / q0 - 1.0
        rel_se = math.sqrt(treatment.se**2 / q0**2 + q1**2 * control.se**2 / q0**4)
    return QuantileEffect(
        q=control.q, control_quantile=q0, treatment_quantile=q1,
        abs_effect=d, abs_se=se, abs_ci_low=d - z * se, abs_ci_high=d + z * se,
        z_stat=stat, p_value=p,
        rel_effect=rel, rel_se=rel_se, rel_ci_low=rel - z * rel_se, rel_ci_high=rel + z * rel_se,
        alpha=alpha,
    )
