"""CUPED and ratio metrics: golden against scipy / statsmodels / numpy, and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from liftlab.stats.cuped import cuped_test, ratio_test
from liftlab.stats.moments import JointStats
from liftlab.stats.welch import welch_test

TOL = 1e-8


def _data(seed, n0=4000, n1=4500, effect=0.1):
    r = np.random.default_rng(seed)
    x0, x1 = r.gamma(2, 3, n0), r.gamma(2, 3, n1)
    y0 = 0.7 * x0 + r.normal(0, 2, n0)
    y1 = 0.7 * x1 + r.normal(effect, 2.5, n1)
    return x0, y0, x1, y1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cuped_equals_welch_on_adjusted_values_and_ols_theta(seed):
    x0, y0, x1, y1 = _data(seed)
    res = cuped_test(JointStats.from_values(y0, x0), JointStats.from_values(y1, x1))
    x, y = np.concatenate([x0, x1]), np.concatenate([y0, y1])
    theta = sm.OLS(y, sm.add_constant(x)).fit().params[1]  # pooled θ = cov(y, x)/var(x) (Deng et al. 2013)
    assert res.theta == pytest.approx(theta, rel=TOL)
    a0, a1 = y0 - theta * (x0 - x.mean()), y1 - theta * (x1 - x.mean())
    ref = stats.ttest_ind(a1, a0, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.t_stat == pytest.approx(ref.statistic, rel=TOL)
    assert res.df == pytest.approx(ref.df, rel=TOL)
    assert res.p_value == pytest.approx(ref.pvalue, rel=TOL, abs=1e-15)
    assert res.abs_ci_low == pytest.approx(ci.low, rel=TOL)
    assert res.abs_ci_high == pytest.approx(ci.high, rel=TOL)
    assert res.baseline_mean == pytest.approx(a0.mean(), rel=TOL)
    # relative lift: delta method on the adjusted means
    v0, v1 = a0.var(ddof=1) / a0.size, a1.var(ddof=1) / a1.size
    m0, m1 = a0.mean(), a1.mean()
    assert res.rel_effect == pytest.approx(m1 / m0 - 1, rel=TOL)
    assert res.rel_se == pytest.approx(math.sqrt(v1 / m0**2 + m1**2 * v0 / m0**4), rel=TOL)
    rho2 = np.corrcoef(x, y)[0, 1] ** 2
    assert res.rho2 == pytest.approx(rho2, rel=1e-9)


def test_cuped_without_covariate_is_welch():
    x0, y0, x1, y1 = _data(5)
    c = cuped_test(JointStats.from_values(y0), JointStats.from_values(y1))
    w = welch_test(JointStats.from_values(y0).y, JointStats.from_values(y1).y)
    for f in ("abs_effect", "abs_se", "p_value", "abs_ci_low", "rel_ci_high", "df"):
        assert getattr(c, f) == pytest.approx(getattr(w, f), rel=1e-12)
    assert c.theta == 0.0


def test_cuped_variance_reduction_matches_theory_in_large_samples():
    # corr(x, y) = 0.8 by construction → theory: variance × (1 − 0.64)
    r = np.random.default_rng(7)
    n = 200_000
    x = r.normal(0, 1, (2, n))
    y = 0.8 * x + 0.6 * r.normal(0, 1, (2, n))
    res = cuped_test(JointStats.from_values(y[0], x[0]), JointStats.from_values(y[1], x[1]))
    assert res.variance_reduction == pytest.approx(0.64, abs=0.005)
    assert res.rho2 == pytest.approx(0.64, abs=0.005)


def _ratio_data(r, n, rate=3.0, value=2.0):
    sessions = r.poisson(rate, n).astype(float)
    revenue = r.gamma(np.maximum(sessions, 1e-9), value) * (sessions > 0)  # Σ of `sessions` Exp(value) payments
    return revenue, sessions


def test_ratio_delta_method_equals_numpy_gradient_form():
    r = np.random.default_rng(9)
    y0, d0 = _ratio_data(r, 5000)
    y1, d1 = _ratio_data(r, 5200, value=2.2)
    res = ratio_test(JointStats.from_values(y0, d=d0), JointStats.from_values(y1, d=d1))

    def var_ratio(y, d):  # g' Σ g / n with g = ∇(μy/μd) (Deng et al. 2018), Σ = sample covariance
        g = np.array([1 / d.mean(), -y.mean() / d.mean() ** 2])
        return g @ np.cov(np.vstack([y, d])) @ g / y.size

    r0, r1 = y0.sum() / d0.sum(), y1.sum() / d1.sum()
    se = math.sqrt(var_ratio(y0, d0) + var_ratio(y1, d1))
    assert res.abs_effect == pytest.approx(r1 - r0, rel=1e-12)
    assert res.abs_se == pytest.approx(se, rel=1e-10)
    z = (r1 - r0) / se
    assert res.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    # the covariance term matters: without it the SE is far off
    naive = math.sqrt(sum(np.var(y, ddof=1) / y.size / d.mean() ** 2 + (y.mean() / d.mean() ** 2) ** 2 * np.var(d, ddof=1) / d.size
                          for y, d in ((y0, d0), (y1, d1))))
    assert naive > 1.2 * se


def test_ratio_cuped_equals_linearised_adjustment():
    r = np.random.default_rng(12)
    arms = []
    for n, v in ((6000, 2.0), (6100, 2.1)):
        pre = r.poisson(3.0, n).astype(float)
        d = r.poisson(1 + 0.6 * pre).astype(float)
        y = r.gamma(np.maximum(d, 1e-9), v) * (d > 0)
        x = pre * 2.0 + r.normal(0, 1, n)
        arms.append((y, x, d))
    res = cuped_test(*(JointStats.from_values(y, x, d) for y, x, d in arms))
    Y, X, D = (np.concatenate([a[i] for a in arms]) for i in range(3))
    R, md = Y.sum() / D.sum(), D.mean()
    lin = (Y - R * D) / md
    theta = np.cov(lin, X)[0, 1] / np.var(X, ddof=1)
    assert res.theta == pytest.approx(theta, rel=1e-9)
    var = 0.0
    for y, x, d in arms:
        r_k = y.sum() / d.sum()
        z = (y - r_k * d) / d.mean() - theta * x
        var += np.var(z, ddof=1) / y.size
    assert res.abs_se == pytest.approx(math.sqrt(var), rel=1e-9)
    est = [y.sum() / d.sum() - theta * (x.mean() - X.mean()) for y, x, d in arms]
    assert res.abs_effect == pytest.approx(est[1] - est[0], rel=1e-9)
    assert 0 < res.variance_reduction < 1


def test_ratio_ci_coverage_by_simulation():
    """2,000 simulated A/B tests of revenue per session (true ratio known): 95 % CI covers it."""
    r = np.random.default_rng(2026)
    sims, n, rate, value = 2000, 800, 3.0, 2.0
    # unit-level: sessions ~ Poisson(rate·u), revenue | sessions ~ Gamma(sessions, value), u ~ Gamma(2, 1/2): correlated
    cover = []
    for arm_value in (value, value * 1.05):
        u = r.gamma(2.0, 0.5, (sims, n))
        d = r.poisson(rate * u).astype(float)
        y = r.gamma(np.maximum(d, 1e-12), arm_value) * (d > 0)
        cover.append((y, d))
    truth = value * 1.05 - value  # E[revenue]/E[sessions] = value per arm
    from liftlab.stats.engine import two_sample
    from liftlab.stats.ratio import arm_moments

    def moments(y, d):
        z = np.zeros(sims)
        return arm_moments({"n": np.full(sims, float(n)), "sum": y.sum(1), "sum_sq": (y * y).sum(1), "sum_d": d.sum(1),
                            "sum_d_sq": (d * d).sum(1), "sum_yd": (y * d).sum(1), "sum_x": z, "sum_x_sq": z, "sum_xy": z, "sum_xd": z})

    m0, m1 = moments(*cover[0]), moments(*cover[1])
    res = two_sample(m0["est"], m1["est"], m0["var"], m1["var"], m0["n"], m1["n"], 0.05, "normal")
    coverage = np.mean((res["abs_ci_low"] <= truth) & (truth <= res["abs_ci_high"]))
    assert 0.93 <= coverage <= 0.97, coverage  # ±4 binomial SE around 0.95
