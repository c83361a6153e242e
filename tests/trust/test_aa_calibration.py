"""A/A calibration math: the vectorised Welch p-values equal scipy's, the re-randomizations are
what they claim to be, a calibrated test passes and a miscalibrated one is caught."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from liftlab.gates.aa import band, calibrate, plot_histogram, rerandomized_p_values, welch_p_values
from liftlab.stats.sufficient import SampleStats
from liftlab.stats.welch import welch_test


def test_vectorised_welch_equals_scipy_and_the_platform_test():
    rng = np.random.default_rng(7)
    for n1, n0, scale in [(30, 45, 1.0), (500, 480, 3.0), (5_000, 12_000, 0.1)]:
        a, b = rng.gamma(2.0, scale, n1), rng.gamma(2.2, scale, n0)
        p = welch_p_values(np.array([n1]), np.array([a.sum()]), np.array([(a * a).sum()]),
                           np.array([n0]), np.array([b.sum()]), np.array([(b * b).sum()]))[0]
        assert p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
        platform = welch_test(SampleStats(n0, b.sum(), (b * b).sum()), SampleStats(n1, a.sum(), (a * a).sum()))
        assert p == pytest.approx(platform.p_value, rel=1e-9)


def test_degenerate_arms_give_nan():
    p = welch_p_values(np.array([1, 5]), np.array([1.0, 5.0]), np.array([1.0, 5.0]),
                       np.array([10, 5]), np.array([3.0, 5.0]), np.array([3.0, 5.0]))
    assert np.isnan(p).all()  # one unit in an arm; zero variance in both arms


def test_rerandomizations_are_independent_bernoulli_assignments():
    """Rebuild the first re-randomizations with the same generator and check them one by one."""
    rng = np.random.default_rng(8)
    y = rng.poisson(3.0, 2_000).astype(float)
    p = rerandomized_p_values(y, share=0.3, n_simulations=50, seed=11, chunk=50)
    z = np.random.default_rng(11).random((50, y.size)) < 0.3
    for i in range(5):
        ref = stats.ttest_ind(y[z[i]], y[~z[i]], equal_var=False).pvalue
        assert p[i] == pytest.approx(ref, rel=1e-8)
    assert abs(z.mean() - 0.3) < 0.01
    # chunking does not change the stream
    assert np.allclose(rerandomized_p_values(y, share=0.3, n_simulations=50, seed=11, chunk=7), p)


def test_band_formula():
    low, high = band(0.05, 1_000)
    assert high - 0.05 == pytest.approx(2 * np.sqrt(0.05 * 0.95 / 1_000))
    assert (low, high) == pytest.approx((0.036216, 0.063784), abs=1e-6)


def test_a_calibrated_test_passes():
    rng = np.random.default_rng(9)
    y = rng.negative_binomial(2, 0.2, 20_000).astype(float)  # skewed counts, large N: Welch is fine
    cal = calibrate(y, metric="sessions", n_simulations=2_000, seed=3)
    assert cal.within_band and cal.uniform and cal.passed
    assert cal.n_simulations == 2_000 and sum(cal.histogram()) == 2_000


def test_a_miscalibrated_test_is_caught():
    """One huge value among zeros: the Welch t is ≈ ±1 whatever the split, so it never rejects."""
    y = np.zeros(40)
    y[0] = 1_000.0
    cal = calibrate(y, metric="one_whale", n_simulations=1_000, seed=4)
    assert cal.false_positive_rate < cal.band_low and not cal.within_band
    assert not cal.uniform and cal.ks_p_value < 1e-6
    assert not cal.passed and "OUTSIDE" in cal.summary() and "NOT uniform" in cal.summary()


def test_histogram_png(tmp_path):
    rng = np.random.default_rng(10)
    cals = [calibrate(rng.normal(size=500), metric=m, n_simulations=1_000, seed=i) for i, m in enumerate("ab")]
    path = tmp_path / "aa.png"
    plot_histogram(cals, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_covariates_share_one_rerandomization_and_each_equals_scipy():
    """calibrate_columns: every column on the same assignments, a missing value leaving only its
    column; each p-value equals scipy's Welch test on that split."""
    from liftlab.gates.aa import calibrate_columns

    rng = np.random.default_rng(12)
    a = rng.poisson(3.0, 1_500).astype(float)
    b = rng.gamma(2.0, 5.0, 1_500)
    b[::7] = np.nan
    p = rerandomized_p_values(np.column_stack([a, b]), share=0.4, n_simulations=40, seed=5, chunk=9)
    z = np.random.default_rng(5).random((40, a.size)) < 0.4
    for i in range(6):
        assert p[i, 0] == pytest.approx(stats.ttest_ind(a[z[i]], a[~z[i]], equal_var=False).pvalue, rel=1e-8)
        ok = np.isfinite(b)
        ref = stats.ttest_ind(b[z[i] & ok], b[~z[i] & ok], equal_var=False).pvalue
        assert p[i, 1] == pytest.approx(ref, rel=1e-8)
    # one column without missing values: the single-column path on the same stream
    assert np.allclose(p[:, 0], rerandomized_p_values(a, share=0.4, n_simulations=40, seed=5))
    cals = calibrate_columns({"a": a, "b": b}, share=0.4, n_simulations=1_000, seed=5)
    assert [c.metric for c in cals] == ["a", "b"] and cals[1].n_units == int(np.isfinite(b).sum())
    assert all(c.passed for c in cals)
