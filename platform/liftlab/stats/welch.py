"""Welch's unequal-variance t test and delta-method relative lift on sufficient statistics.

Thin scalar front-ends of :func:`liftlab.stats.engine.two_sample`, the platform's single
implementation of the Welch / delta-method two-sample comparison (issue 17: one formula, so the
gates, the studies, :func:`liftlab.stats.analysis.compare_arms` and the engine cannot drift
apart).  This module only turns :class:`~liftlab.stats.sufficient.SampleStats` into the arm
estimates and estimate variances that ``two_sample`` takes and packs its output into
:class:`EffectResult`.

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
The sample variances come from :attr:`SampleStats.variance` (exact rational arithmetic on
the stored sums, so the ``Σx² − (Σx)²/n`` subtraction itself loses nothing).

Relative effect
---------------
``r = m1/m0 − 1``.  Its standard error comes from the first-order delta method
for a ratio of independent means (Casella & Berger, *Statistical Inference*,
2nd ed., §5.5.4; Deng, Knoblich & Lu (2018) "Applying the Delta Method in
Metric Analytics: A Practical Guide with Novel Ideas", KDD '18)::

    var(r) = s1²/(n1·m0²) + m1²·s0²/(n0·m0⁴)

which is exactly GrowthBook's ``gbstats`` frequentist relative variance
(``frequentist_variance(relative=True)``).  Like ``gbstats``' ``TwoSidedTTest`` the relative
interval and p value use the Student t reference distribution with the Welch–Satterthwaite
``df`` of the *absolute* variances above (verified against gbstats itself to 1e-9 by
``tests/test_bench.py``).  With df in the thousands this differs from the normal (z) interval
by ~1e-3 relative (1 % at df = 100), but the public GrowthBook test vector (see
``tests/stats/test_welch.py``: p = 0.06191) is reproduced to its printed
precision only with the t quantile — the z version gives 0.06186.
:func:`relative_test` exposes ``reference="normal"`` for the pure z version.

Degenerate inputs (``n < 2`` in an arm, zero variance in both arms, baseline
mean 0 for the relative effect, non-finite sums) produce NaN in the affected
fields; these functions never raise on data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _st

from .sufficient import SampleStats

# ``engine`` imports ``cuped``, which imports :class:`EffectResult` from here: ``two_sample`` is
# imported inside the functions (as ``liftlab.stats.cuped`` does) to keep the import graph acyclic.

__all__ = ["EffectResult", "welch_test", "relative_test", "welch_df", "welch_arrays"]

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


_FIELDS = ("abs_effect", "abs_se", "abs_ci_low", "abs_ci_high", "rel_effect", "rel_se", "rel_ci_low",
           "rel_ci_high", "t_stat", "df", "p_value")


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def welch_arrays(
    baselines: Sequence[SampleStats], variants: Sequence[SampleStats], alpha: float = 0.05, reference: str = "t"
) -> dict[str, np.ndarray]:
    """Welch / delta-method comparison of ``variants[i]`` against ``baselines[i]``, vectorised.

    The arm estimates are the means, their variances ``s²/n`` (``s²`` from
    :attr:`SampleStats.variance`, NaN for ``n < 2``); everything else is
    :func:`liftlab.stats.engine.two_sample`.  Returns ``two_sample``'s arrays plus
    ``baseline_mean``, ``variant_mean``, ``n_baseline`` and ``n_variant``.  Relative fields are
    NaN where a mean is not finite (``two_sample`` would give ``m1/∞ − 1 = −1``).
    """
    from .engine import two_sample

    n0 = np.array([s.n for s in baselines], dtype=np.float64)
    n1 = np.array([s.n for s in variants], dtype=np.float64)
    m0 = np.array([s.mean for s in baselines], dtype=np.float64)
    m1 = np.array([s.mean for s in variants], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        v0 = np.array([s.variance for s in baselines], dtype=np.float64) / n0
        v1 = np.array([s.variance for s in variants], dtype=np.float64) / n1
    res = two_sample(m0, m1, v0, v1, n0, n1, alpha, reference)
    finite = np.isfinite(m0) & np.isfinite(m1)
    for k in ("rel_effect", "rel_se", "rel_ci_low", "rel_ci_high"):
        res[k] = np.where(finite, res[k], np.nan)
    return {**res, "baseline_mean": m0, "variant_mean": m1, "n_baseline": n0, "n_variant": n1}


def welch_df(var0: float, n0: int, var1: float, n1: int) -> float:
    """Welch–Satterthwaite degrees of freedom (Satterthwaite 1946; Welch 1947) of two samples
    with sample variances ``var0``, ``var1`` and sizes ``n0``, ``n1`` — ``two_sample``'s ``df``.

    NaN when either arm has ``n < 2`` or both variances are zero.
    """
    from .engine import two_sample

    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.array([var0 / n0 if n0 > 0 else _NAN])
        b = np.array([var1 / n1 if n1 > 0 else _NAN])
    res = two_sample(np.zeros(1), np.zeros(1), a, b, np.array([float(n0)]), np.array([float(n1)]), 0.05, "t")
    return float(res["df"][0])


def welch_test(baseline: SampleStats, variant: SampleStats, alpha: float = 0.05) -> EffectResult:
    """Welch's two-sided t test of ``variant − baseline`` plus the relative lift.

    The absolute test is Welch (1947) with Welch–Satterthwaite df (Satterthwaite
    1946), CI ``d ± t_{1−α/2,df}·se``, equal to
    ``scipy.stats.ttest_ind(variant, baseline, equal_var=False)``.  The relative
    lift uses the delta-method SE of Deng et al. (2018) / GrowthBook ``gbstats``
    with the same t quantile (see module docstring).  Computed by
    :func:`liftlab.stats.engine.two_sample`.  Never raises on degenerate data;
    affected fields are NaN.
    """
    _check_alpha(alpha)
    res = welch_arrays([baseline], [variant], alpha)
    return EffectResult(
        baseline_mean=float(res["baseline_mean"][0]),
        variant_mean=float(res["variant_mean"][0]),
        **{k: float(res[k][0]) for k in _FIELDS},
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
    2018), i.e. GrowthBook ``gbstats``' relative frequentist test
    (``TwoSidedTTest`` with ``difference_type="relative"``).  With ``reference="t"``
    (default, as ``gbstats``) it is referred to Student t with the Welch–Satterthwaite df of
    :func:`liftlab.stats.engine.two_sample`; ``reference="normal"`` uses the standard normal
    (the asymptotic z test).  ``r``, its SE and df all come from ``two_sample``.  NaN when
    undefined.
    """
    if reference not in ("t", "normal"):
        raise ValueError(f"reference must be 't' or 'normal', got {reference!r}")
    res = welch_arrays([baseline], [variant], 0.05, reference)
    rel, rel_se, df = float(res["rel_effect"][0]), float(res["rel_se"][0]), float(res["df"][0])
    if not (rel_se > 0.0 and math.isfinite(rel)):
        return _NAN
    z = abs(rel / rel_se)
    if reference == "normal":
        p = 2.0 * float(_st.norm.sf(z))
    elif math.isfinite(df):
        p = 2.0 * float(_st.t.sf(z, df))
    else:
        return _NAN
    return min(max(p, 0.0), 1.0)
