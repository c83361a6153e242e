"""Welch's unequal-variance t test and delta-method relative lift on sufficient statistics.

Absolute effect
---------------
For arms with means ``m0`` (baseline), ``m1`` (variant), sample variances
``s0², s1²`` and sizes ``n0, n1``::

    d   = m1 − m0
    se  = sqrt(s0²/n0 + s1²/n1)
    t   = d / se
    df  = (s0²/n0 + s1²/n1)² / ((s0²/n0)²/(n0−1) + (s1²/n1)²/(n1−1))

— Welch, B. L. (1947) "The generalization of 'Student's' problem when several
different population variances are involved", Biometrika 34(1/2) 28–35; the
degrees of freedom are the Welch–Satterthwaite approximation, Satterthwaite,
F. E. (1946) "An approximate distribution of estimates of variance
components", Biometrics Bulletin 2(6) 110–114.  The p value is two-sided and
the confidence interval is ``d ± t_{1−α/2, df} · se``; both match
``scipy.stats.ttest_ind(equal_var=False)`` and its ``confidence_interval()``.

Relative effect
---------------
``r = m1/m0 − 1``.  Its standard error comes from the first-order delta method
for a ratio of independent means (Casella & Berger, *Statistical Inference*,
2nd ed., §5.5.4; Deng, Knoblich & Lu (2018) "Applying the Delta Method in
Metric Analytics: A Practical Guide with Novel Ideas", KDD '18)::

    var(r) = s1²/(n1·m0²) + m1²·s0²/(n0·m0⁴)

which is exactly GrowthBook's ``gbstats`` frequentist relative variance
(``variance_of_ratios`` with zero covariance).  Like ``gbstats``'
``TwoSidedTTest`` the relative interval and p value use the Student t
reference distribution with the Welch–Satterthwaite ``df`` above.  With df
in the thousands this differs from the normal (z) interval by ~1e-3
relative (1 % at df = 100), but the public GrowthBook test vector (see
``tests/stats/test_welch.py``: p = 0.06191) is reproduced to its printed
precision only with the t quantile — the z version gives 0.06186.
:func:`relative_test` exposes ``reference="normal"`` for the pure z version.

Degenerate inputs (``n < 2`` in an arm, zero variance in both arms, baseline
mean 0 for the relative effect, non-finite sums) produce NaN in the affected
fields; these functions never raise on data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats as _st

from .sufficient import SampleStats

__all__ = ["EffectResult", "welch_test", "relative_test", "welch_df"]

_NAN = math.nan


@dataclass(frozen=True, slots=True)
class EffectResult:
    """Result of comparing a variant arm against the baseline arm for one metric.

    ``abs_*`` fields describe ``variant_mean − baseline_mean``; ``rel_*`` fields
    describe ``variant_mean / baseline_mean − 1``.  ``t_stat``, ``df`` and
    ``p_value`` are those of the absolute (Welch) test; ``method`` names it.
    """

    baseline_mean: float
    variant_mean: float
    abs_effect: float
    abs_se: float
    abs_ci_low: float
    abs_ci_high: float
    rel_effect: float
    rel_se: float
    rel_ci_low: float
    rel_ci_high: float
    t_stat: float
    df: float
    p_value: float
    alpha: float
    method: str


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _moments(s: SampleStats) -> tuple[int, float, float]:
    """(n, mean, variance) with NaN variance for n < 2."""
    return s.n, s.mean, s.variance


def welch_df(var0: float, n0: int, var1: float, n1: int) -> float:
    """Welch–Satterthwaite degrees of freedom (Satterthwaite 1946; Welch 1947).

    NaN when either arm has ``n < 2`` or both variances are zero.
    """
    if n0 < 2 or n1 < 2 or not (math.isfinite(var0) and math.isfinite(var1)):
        return _NAN
    a = var0 / n0
    b = var1 / n1
    denom = a * a / (n0 - 1) + b * b / (n1 - 1)
    if not denom > 0.0:
        return _NAN
    return (a + b) ** 2 / denom


def _two_sided_p(stat: float, df: float, reference: str) -> float:
    if not (math.isfinite(stat) and (reference == "normal" or math.isfinite(df))):
        return _NAN
    if reference == "normal":
        p = 2.0 * float(_st.norm.sf(abs(stat)))
    else:
        p = 2.0 * float(_st.t.sf(abs(stat), df))
    return min(max(p, 0.0), 1.0)


def _quantile(alpha: float, df: float, reference: str) -> float:
    if reference == "normal":
        return float(_st.norm.ppf(1.0 - alpha / 2.0))
    if not math.isfinite(df):
        return _NAN
    return float(_st.t.ppf(1.0 - alpha / 2.0, df))


def _relative(
    m0: float, v0: float, n0: int, m1: float, v1: float, n1: int
) -> tuple[float, float]:
    """Relative lift ``m1/m0 − 1`` and its delta-method standard error.

    ``var = v1/(n1·m0²) + m1²·v0/(n0·m0⁴)`` (Deng et al. 2018; gbstats).
    """
    if not (math.isfinite(m0) and math.isfinite(m1)) or m0 == 0.0:
        return _NAN, _NAN
    rel = m1 / m0 - 1.0
    if n0 < 2 or n1 < 2 or not (math.isfinite(v0) and math.isfinite(v1)):
        return rel, _NAN
    var = v1 / (n1 * m0 * m0) + (m1 * m1) * v0 / (n0 * m0**4)
    return rel, math.sqrt(var)


def welch_test(baseline: SampleStats, variant: SampleStats, alpha: float = 0.05) -> EffectResult:
    """Welch's two-sided t test of ``variant − baseline`` plus the relative lift.

    The absolute test is Welch (1947) with Welch–Satterthwaite df (Satterthwaite
    1946), CI ``d ± t_{1−α/2,df}·se``, equal to
    ``scipy.stats.ttest_ind(variant, baseline, equal_var=False)``.  The relative
    lift uses the delta-method SE of Deng et al. (2018) / GrowthBook ``gbstats``
    with the same t quantile (see module docstring).  Never raises on
    degenerate data; affected fields are NaN.
    """
    _check_alpha(alpha)
    n0, m0, v0 = _moments(baseline)
    n1, m1, v1 = _moments(variant)

    abs_effect = m1 - m0 if (n0 > 0 and n1 > 0) else _NAN
    if n0 >= 2 and n1 >= 2 and math.isfinite(v0) and math.isfinite(v1):
        abs_se = math.sqrt(v0 / n0 + v1 / n1)
    else:
        abs_se = _NAN
    df = welch_df(v0, n0, v1, n1)

    if abs_se > 0.0 and math.isfinite(df):
        t_stat = abs_effect / abs_se
        p_value = _two_sided_p(t_stat, df, "t")
        q = _quantile(alpha, df, "t")
        abs_lo, abs_hi = abs_effect - q * abs_se, abs_effect + q * abs_se
    else:
        t_stat = p_value = q = abs_lo = abs_hi = _NAN

    rel, rel_se = _relative(m0, v0, n0, m1, v1, n1)
    if math.isfinite(rel_se) and math.isfinite(q):
        rel_lo, rel_hi = rel - q * rel_se, rel + q * rel_se
    else:
        rel_lo = rel_hi = _NAN

    return EffectResult(
        baseline_mean=m0,
        variant_mean=m1,
        abs_effect=abs_effect,
        abs_se=abs_se,
        abs_ci_low=abs_lo,
        abs_ci_high=abs_hi,
        rel_effect=rel,
        rel_se=rel_se,
        rel_ci_low=rel_lo,
        rel_ci_high=rel_hi,
        t_stat=t_stat,
        df=df,
        p_value=p_value,
        alpha=alpha,
        method="welch_t",
    )


def relative_test(
    baseline: SampleStats,
    variant: SampleStats,
    reference: Literal["t", "normal"] = "t",
) -> float:
    """Two-sided p value of H0: ``variant_mean / baseline_mean − 1 = 0``.

    The statistic is ``r / se_delta(r)`` with the delta-method SE (Deng et al.
    2018), i.e. GrowthBook ``gbstats``' relative frequentist test.  With
    ``reference="t"`` (default, as ``gbstats``' ``TwoSidedTTest``) it is
    referred to Student t with Welch–Satterthwaite df; ``reference="normal"``
    uses the standard normal (the asymptotic z test).  NaN when undefined.
    """
    if reference not in ("t", "normal"):
        raise ValueError(f"reference must be 't' or 'normal', got {reference!r}")
    n0, m0, v0 = _moments(baseline)
    n1, m1, v1 = _moments(variant)
    rel, rel_se = _relative(m0, v0, n0, m1, v1, n1)
    if not (rel_se > 0.0):
        return _NAN
    df = welch_df(v0, n0, v1, n1)
    return _two_sided_p(rel / rel_se, df, reference)
