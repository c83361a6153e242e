"""Welch t test and delta-method relative lift: scipy parity, golden values, A/A calibration."""

from __future__ import annotations

import math
import zlib
from dataclasses import FrozenInstanceError, fields

import numpy as np
import polars as pl
import pytest
from scipy import stats

from liftlab.stats.sufficient import SampleStats, aggregate
from liftlab.stats.welch import EffectResult, relative_test, welch_df, welch_test

TOL = 1e-8


def close(a: float, b: float, tol: float = TOL) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=1e-14)


def assert_matches_scipy(x0: np.ndarray, x1: np.ndarray, alpha: float = 0.05) -> EffectResult:
    res = welch_test(SampleStats.from_values(x0), SampleStats.from_values(x1), alpha=alpha)
    ref = stats.ttest_ind(x1, x0, equal_var=False)
    ci = ref.confidence_interval(confidence_level=1 - alpha)
    assert close(res.t_stat, float(ref.statistic)), (res.t_stat, ref.statistic)
    assert close(res.df, float(ref.df)), (res.df, ref.df)
    assert close(res.p_value, float(ref.pvalue)), (res.p_value, ref.pvalue)
    # CI bounds can sit near 0: compare on the scale of the half-width.
    half = (ci.high - ci.low) / 2
    assert abs(res.abs_ci_low - ci.low) <= TOL * max(half, abs(ci.low))
    assert abs(res.abs_ci_high - ci.high) <= TOL * max(half, abs(ci.high))
    assert close(res.abs_effect, x1.mean() - x0.mean(), 1e-9)
    return res


SHAPES = {
    "balanced_normal": lambda r: (r.normal(0, 1, 200), r.normal(0.2, 1, 200)),
    "tiny_n": lambda r: (r.normal(0, 1, 2), r.normal(1, 2, 3)),
    "very_unequal_n_and_var": lambda r: (r.normal(5, 0.1, 12), r.normal(5.05, 20, 50_000)),
    "unequal_other_way": lambda r: (r.normal(5, 30, 40_000), r.normal(4, 0.5, 7)),
    "large_values_1e6": lambda r: (r.normal(1e6, 1e5, 3_000), r.normal(1.01e6, 2e5, 800)),
    "large_values_1e6_small_cv": lambda r: (r.normal(1e6, 1e3, 5_000), r.normal(1e6 + 30, 1e3, 5_000)),
    "skewed_revenue": lambda r: (r.lognormal(2, 1.5, 5_000) * (r.random(5_000) < 0.1), r.lognormal(2.1, 1.5, 5_000) * (r.random(5_000) < 0.11)),
    "bernoulli": lambda r: ((r.random(10_000) < 0.05).astype(float), (r.random(9_000) < 0.057).astype(float)),
    "negative_means": lambda r: (r.normal(-50, 5, 300), r.normal(-49, 9, 350)),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
def test_welch_equals_scipy(shape, alpha):
    rng = np.random.default_rng(zlib.crc32(shape.encode()))
    x0, x1 = SHAPES[shape](rng)
    res = assert_matches_scipy(x0, x1, alpha)
    assert res.method == "welch_t" and res.alpha == alpha


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_one_arm_with_zero_variance_still_matches_scipy():
    rng = np.random.default_rng(11)
    assert_matches_scipy(np.full(30, 2.0), rng.normal(2.5, 1.0, 40))


def test_swapping_arms_negates_effect_keeps_p():
    rng = np.random.default_rng(5)
    a, b = SampleStats.from_values(rng.normal(0, 1, 100)), SampleStats.from_values(rng.normal(0.3, 2, 70))
    r1, r2 = welch_test(a, b), welch_test(b, a)
    assert r1.abs_effect == pytest.approx(-r2.abs_effect)
    assert r1.p_value == pytest.approx(r2.p_value, rel=1e-12)
    assert r1.df == pytest.approx(r2.df, rel=1e-12)


def test_result_is_frozen_and_has_documented_fields():
    r = welch_test(SampleStats.from_values([1.0, 2.0, 3.0]), SampleStats.from_values([2.0, 3.0, 5.0]))
    with pytest.raises(FrozenInstanceError):
        r.p_value = 0.0  # type: ignore[misc]
    assert [f.name for f in fields(EffectResult)] == [
        "baseline_mean", "variant_mean", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high",
        "rel_effect", "rel_se", "rel_ci_low", "rel_ci_high", "t_stat", "df", "p_value", "alpha", "method",
    ]


# --------------------------------------------------------------------------- golden: GrowthBook
# GrowthBook gbstats public test vector (frequentist TwoSidedTTest, relative difference).
GB_CONTROL = SampleStats(n=3407, sum=1396.87, sum_sq=52377.9767)
GB_VARIANT = SampleStats(n=3461, sum=2422.7, sum_sq=134698.29)


def test_growthbook_golden_relative_lift():
    r = welch_test(GB_CONTROL, GB_VARIANT)
    half_ulp = 0.5e-5  # printed to 5 decimals
    assert abs(r.rel_effect - 0.70732) <= half_ulp
    assert abs(r.rel_ci_low - (-0.03526)) <= half_ulp
    assert abs(r.rel_ci_high - 1.44989) <= half_ulp
    assert abs(relative_test(GB_CONTROL, GB_VARIANT) - 0.06191) <= half_ulp
    # delta-method variance, spelled out: s1²/(n1·m0²) + m1²·s0²/(n0·m0⁴)
    m0, m1 = GB_CONTROL.mean, GB_VARIANT.mean
    v = GB_VARIANT.variance / (3461 * m0**2) + m1**2 * GB_CONTROL.variance / (3407 * m0**4)
    assert r.rel_se == pytest.approx(math.sqrt(v), rel=1e-14)


def test_relative_test_normal_reference_is_the_z_test():
    rel_se = welch_test(GB_CONTROL, GB_VARIANT).rel_se
    z = (GB_VARIANT.mean / GB_CONTROL.mean - 1) / rel_se
    assert relative_test(GB_CONTROL, GB_VARIANT, reference="normal") == pytest.approx(
        2 * stats.norm.sf(z), rel=1e-12
    )
    # The golden p (0.06191) needs the t reference; z gives 0.06186.
    assert abs(relative_test(GB_CONTROL, GB_VARIANT, reference="normal") - 0.06191) > 0.5e-5
    with pytest.raises(ValueError):
        relative_test(GB_CONTROL, GB_VARIANT, reference="chi2")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- degenerate inputs
def _all_nan(r: EffectResult, names: list[str]) -> bool:
    return all(math.isnan(getattr(r, n)) for n in names)


INFER = ["t_stat", "df", "p_value", "abs_ci_low", "abs_ci_high", "rel_ci_low", "rel_ci_high"]


@pytest.mark.parametrize(
    ("base", "var"),
    [
        (SampleStats.empty(), SampleStats.from_values([1.0, 2.0])),
        (SampleStats.from_values([1.0]), SampleStats.from_values([1.0, 2.0, 3.0])),
        (SampleStats.from_values([1.0, 2.0]), SampleStats.empty()),
        (SampleStats.from_values([2.0, 2.0, 2.0]), SampleStats.from_values([3.0, 3.0])),  # zero var both
        (SampleStats.from_values([2.0, 2.0, 2.0]), SampleStats.from_values([2.0, 2.0])),
        (SampleStats(10, math.inf, math.inf), SampleStats.from_values([1.0, 2.0])),
    ],
)
def test_degenerate_inputs_give_nan_never_raise(base, var):
    r = welch_test(base, var)
    assert _all_nan(r, INFER)
    assert math.isnan(relative_test(base, var))


def test_zero_baseline_mean_nans_only_relative_fields():
    base = SampleStats.from_values([-1.0, 1.0, 0.0, 0.0])
    r = welch_test(base, SampleStats.from_values([0.5, 1.5, 1.0]))
    assert _all_nan(r, ["rel_effect", "rel_se", "rel_ci_low", "rel_ci_high"])
    assert math.isfinite(r.p_value) and math.isfinite(r.abs_ci_low)
    assert math.isnan(relative_test(base, SampleStats.from_values([0.5, 1.5, 1.0])))


def test_bad_alpha_is_a_programming_error():
    with pytest.raises(ValueError):
        welch_test(GB_CONTROL, GB_VARIANT, alpha=1.5)


def test_welch_df_limits():
    # One arm with zero variance: df collapses to the other arm's n - 1.
    assert welch_df(0.0, 10, 4.0, 25) == pytest.approx(24.0)
    assert math.isnan(welch_df(0.0, 10, 0.0, 25))
    assert math.isnan(welch_df(1.0, 1, 1.0, 25))


# --------------------------------------------------------------------------- Hillstrom (real data)
HILLSTROM_EFFECTS = {"conversion": (0.006805, 1e-6), "visit": (0.076590, 1e-6), "spend": (0.7698, 1e-4)}


@pytest.mark.parametrize("metric", list(HILLSTROM_EFFECTS))
def test_hillstrom_mens_vs_no_email(hillstrom, metric):
    agg = aggregate(hillstrom, ["segment"], list(HILLSTROM_EFFECTS))
    row = {
        (seg, m): SampleStats(n, s, q) for seg, m, n, s, q in agg.iter_rows()
    }
    res = welch_test(row[("No E-Mail", metric)], row[("Mens E-Mail", metric)])
    expected, tol = HILLSTROM_EFFECTS[metric]
    assert abs(res.abs_effect - expected) <= tol

    x0 = hillstrom.filter(pl.col("segment") == "No E-Mail")[metric].cast(pl.Float64).to_numpy()
    x1 = hillstrom.filter(pl.col("segment") == "Mens E-Mail")[metric].cast(pl.Float64).to_numpy()
    ref = stats.ttest_ind(x1, x0, equal_var=False)
    ci = ref.confidence_interval()
    assert close(res.p_value, float(ref.pvalue))
    assert close(res.t_stat, float(ref.statistic))
    assert close(res.df, float(ref.df))
    assert close(res.abs_ci_low, float(ci.low))
    assert close(res.abs_ci_high, float(ci.high))


# --------------------------------------------------------------------------- A/A calibration
def test_aa_false_positive_rate_is_nominal():
    """2,000 simulated A/A tests: Welch's rejection rate at α=0.05 is α ± 2·SE.

    Arms deliberately differ in size and variance (where the pooled t test
    would be miscalibrated).  The same runs check that the relative-lift CI
    (delta method) covers 0 at the nominal rate.  Seeded, so deterministic;
    a mis-specified df, quantile or SE would move the rate well outside the
    band: on these very draws Welch rejects 4.75 %, a z (normal) reference
    6.1 % and the pooled-variance Student t 22 %, against a band of
    5 % ± 0.97 %.
    """
    alpha, sims = 0.05, 2_000
    n0, n1 = 25, 75
    rng = np.random.default_rng(20240601)
    x0 = rng.normal(10.0, 3.0, size=(sims, n0))
    x1 = rng.normal(10.0, 1.0, size=(sims, n1))
    s0 = [SampleStats(n0, float(a), float(b)) for a, b in zip(x0.sum(1), (x0 * x0).sum(1), strict=True)]
    s1 = [SampleStats(n1, float(a), float(b)) for a, b in zip(x1.sum(1), (x1 * x1).sum(1), strict=True)]
    results = [welch_test(a, b, alpha=alpha) for a, b in zip(s0, s1, strict=True)]

    band = 2 * math.sqrt(alpha * (1 - alpha) / sims)
    fpr = np.mean([r.p_value < alpha for r in results])
    assert abs(fpr - alpha) <= band, fpr
    # The CI and the p value are the same test: CI excludes 0 iff p < alpha.
    assert all((r.p_value < alpha) == (r.abs_ci_low > 0 or r.abs_ci_high < 0) for r in results)
    rel_miss = np.mean([r.rel_ci_low > 0 or r.rel_ci_high < 0 for r in results])
    assert abs(rel_miss - alpha) <= band, rel_miss
