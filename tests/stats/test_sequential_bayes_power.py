"""Confidence sequences, Bayesian summary and power: first principles, statsmodels, simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from statsmodels.stats.power import NormalIndPower

from liftlab.stats.bayes import bayes_summary, posterior
from liftlab.stats.power import days_needed, mde_at, power_at, sample_size_per_arm
from liftlab.stats.sequential import confidence_sequence, cs_halfwidth, sequential_rho


# ----------------------------------------------------------------------------- sequential
@pytest.mark.parametrize(("t", "alpha", "tau"), [(100, 0.05, 5000), (5000, 0.05, 5000), (10**6, 0.01, 1000), (37, 0.2, 50)])
def test_cs_boundary_is_where_the_normal_mixture_martingale_reaches_one_over_alpha(t, alpha, tau):
    """Robbins' normal mixture ∫ exp(λS − λ²t/2) dN(λ; 0, ρ⁻²…) computed by quadrature equals 1/α
    exactly at the CS boundary (Howard et al. 2021 §3; Waudby-Smith et al. 2023 Thm 2.2)."""
    rho = sequential_rho(alpha, tau)
    w = float(cs_halfwidth(1.0 / t, t, alpha, tau))  # σ = 1: estimator variance 1/t
    s = t * w  # S_t = Σ (X_i − μ)/σ at the boundary
    sd = rho  # mixing N(0, ρ²) over λ
    f = lambda lam: math.exp(lam * s - lam * lam * t / 2) * stats.norm.pdf(lam, 0, sd)  # noqa: E731
    # the integrand is a Gaussian bump at λ = S/(t + ρ⁻²) of width ~ t^(-1/2): integrate over ±40 widths
    peak, width = s / (t + 1 / sd**2), 1 / math.sqrt(t + 1 / sd**2)
    m, _ = integrate.quad(f, peak - 40 * width, peak + 40 * width, epsabs=0, epsrel=1e-12, limit=500)
    assert m == pytest.approx(1 / alpha, rel=1e-8)


def test_rho_and_width_at_the_tuning_point():
    a, tau = 0.05, 5000
    la = -2 * math.log(a)
    assert sequential_rho(a, tau) == pytest.approx(math.sqrt((la + math.log(la + 1)) / tau), rel=1e-15)
    # wider than the fixed-horizon interval at every N, and shrinking like sqrt(log N / N)
    n = np.array([10, 100, 1000, 5000, 10**5, 10**7])
    w = cs_halfwidth(1.0 / n, n, a, tau)
    assert np.all(w > stats.norm.ppf(0.975) / np.sqrt(n))
    assert np.all(np.diff(w) < 0)
    lo, hi = confidence_sequence(0.3, 0.01, 400)
    assert lo < 0.3 < hi and hi - 0.3 == pytest.approx(0.3 - lo)


def test_time_uniform_error_control_by_simulation():
    """4,000 A/A streams, looked at after every 50 units up to 20,000: the CS crosses 0 in ≤ α of
    them; the naive fixed-horizon interval does far more often."""
    r = np.random.default_rng(99)
    paths, looks, step = 4000, 400, 50
    inc = r.normal(0, 1, (paths, looks)) * math.sqrt(step)  # sums of 50 standard normal units
    s = np.cumsum(inc, axis=1)
    n = step * np.arange(1, looks + 1)
    mean = s / n
    w = cs_halfwidth(1.0 / n, n, 0.05)
    seq = np.mean(np.any(np.abs(mean) > w, axis=1))
    naive = np.mean(np.any(np.abs(mean) > 1.959964 / np.sqrt(n), axis=1))
    assert seq <= 0.05
    assert naive > 0.25


# ----------------------------------------------------------------------------- Bayes
def test_posterior_is_conjugate_normal():
    m, s = posterior(0.05, 0.02**2, prior_sd=0.3)
    prec = 1 / 0.02**2 + 1 / 0.09
    assert float(m) == pytest.approx(0.05 / 0.02**2 / prec, rel=1e-14)
    assert float(s) == pytest.approx(prec**-0.5, rel=1e-14)


@pytest.mark.parametrize(("est", "var", "good"), [(0.03, 0.01**2, 1), (-0.01, 0.02**2, 1), (0.02, 0.015**2, -1)])
def test_chance_to_win_and_expected_loss_equal_quadrature(est, var, good):
    out = bayes_summary(est, var, good, prior_sd=0.3)
    m, s = (float(v) for v in posterior(est, var, 0.3))
    g_mean = good * m
    p_win, _ = integrate.quad(lambda g: stats.norm.pdf(g, g_mean, s), 0, np.inf, epsabs=1e-14)
    loss, _ = integrate.quad(lambda g: -g * stats.norm.pdf(g, g_mean, s), -np.inf, 0, epsabs=1e-14)
    keep, _ = integrate.quad(lambda g: g * stats.norm.pdf(g, g_mean, s), 0, np.inf, epsabs=1e-14)
    assert float(out["chance_to_win"]) == pytest.approx(p_win, abs=1e-8)
    assert float(out["expected_loss"]) == pytest.approx(loss, abs=1e-8)
    assert float(out["expected_loss_baseline"]) == pytest.approx(keep, abs=1e-8)


def test_flat_prior_limit_matches_the_one_sided_p_value():
    p = float(bayes_summary(0.02, 0.01**2, 1, prior_sd=1e6)["chance_to_win"])
    assert p == pytest.approx(1 - stats.norm.sf(2.0), rel=1e-9)


# ----------------------------------------------------------------------------- power
@pytest.mark.parametrize(("delta", "sd", "alpha", "power"), [(0.1, 1.0, 0.05, 0.8), (0.02, 0.3, 0.01, 0.9), (5.0, 40.0, 0.05, 0.5)])
def test_sample_size_and_power_equal_statsmodels(delta, sd, alpha, power):
    ref = NormalIndPower()
    n = sample_size_per_arm(delta, sd, alpha, power)
    assert n == pytest.approx(ref.solve_power(effect_size=delta / sd, alpha=alpha, power=power, ratio=1.0), rel=1e-6)
    for nobs in (50.0, 1234.0, 10**5):
        se = sd * math.sqrt(2 / nobs)
        assert float(power_at(delta, se, alpha)) == pytest.approx(ref.power(delta / sd, nobs, alpha, ratio=1.0), rel=1e-10)
    assert float(power_at(delta, sd * math.sqrt(2 / n), alpha)) == pytest.approx(power, abs=1e-10)


def test_mde_and_days_needed():
    se = 0.013
    mde = mde_at(se, 0.05, 0.8)
    assert float(power_at(mde, se, 0.05)) == pytest.approx(0.8, abs=1e-10)
    assert mde == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * se, rel=1e-4)
    assert days_needed(10_000, 4_000, 7) == math.ceil(6_000 / (4_000 / 7))
    assert days_needed(1_000, 4_000, 7) == 0.0
    assert math.isnan(days_needed(float("nan"), 4_000, 7))


def test_power_by_simulation():
    """Empirical power of Welch over 3,000 simulated experiments equals the planned power."""
    r = np.random.default_rng(5)
    sd, delta = 2.0, 0.25
    n = math.ceil(sample_size_per_arm(delta, sd, 0.05, 0.8))
    a = r.normal(0, sd, (3000, n))
    b = r.normal(delta, sd, (3000, n))
    p = stats.ttest_ind(b, a, axis=1, equal_var=False).pvalue
    assert abs(np.mean(p < 0.05) - 0.8) < 3.5 * math.sqrt(0.16 / 3000)
