"""Naive, IPW and AIPW on simulated data with a known answer (selection on observables)."""

from __future__ import annotations

import numpy as np
import pytest

from liftlab.causal.propensity import cross_fit_propensity, overlap_diagnostics
from liftlab.causal.weighting import aipw, aipw_cross_fit, ipw, naive_difference


def simulate(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    e = 1 / (1 + np.exp(-(-0.3 + 1.0 * X[:, 0] + 0.5 * X[:, 1])))
    d = (rng.random(n) < e).astype(float)
    tau = 1.0 + 0.8 * X[:, 0]
    mu0 = 2.0 + 1.5 * X[:, 0] + np.sin(X[:, 1]) + 0.5 * X[:, 2] ** 2
    y = mu0 + d * tau + rng.normal(size=n)
    return X, d, y, e, tau, mu0


def test_naive_is_biased_and_welch_se():
    X, d, y, e, tau, _ = simulate(20_000, 1)
    est = naive_difference(y, d)
    y1, y0 = y[d == 1], y[d == 0]
    assert est.se == pytest.approx(np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0)))
    assert est.estimate - tau.mean() > 10 * est.se


def test_ipw_with_true_propensity_recovers_ate_and_att():
    X, d, y, e, tau, _ = simulate(40_000, 2)
    ate, att = ipw(y, d, e, "ATE"), ipw(y, d, e, "ATT")
    assert abs(ate.estimate - tau.mean()) < 3 * ate.se
    assert abs(att.estimate - tau[d == 1].mean()) < 3 * att.se
    # Hajek with stabilized weights: the point estimate equals the unstabilized Hajek one
    ec = np.clip(e, 0.01, 0.99)
    w1, w0 = d / ec, (1 - d) / (1 - ec)
    plain = (w1 * y).sum() / w1.sum() - (w0 * y).sum() / w0.sum()
    assert ate.estimate == pytest.approx(plain, rel=1e-12)


def test_aipw_is_doubly_robust():
    X, d, y, e, tau, mu0 = simulate(40_000, 3)
    truth = tau.mean()
    # right outcome model, wrong (constant) propensity
    r1 = aipw(y, d, np.full_like(e, d.mean()), mu0 + tau, mu0, "ATE")
    # wrong (zero) outcome model, right propensity
    r2 = aipw(y, d, e, np.zeros_like(y), np.zeros_like(y), "ATE")
    for r in (r1, r2):
        assert abs(r.estimate - truth) < 3.5 * r.se, (r.estimate, truth, r.se)
    att = aipw(y, d, e, mu0 + tau, mu0, "ATT")
    assert abs(att.estimate - tau[d == 1].mean()) < 3.5 * att.se


def test_cross_fitted_aipw_and_propensity():
    X, d, y, e, tau, _ = simulate(8_000, 4)
    ehat = cross_fit_propensity(X, d, "logistic", n_folds=5, seed=0)
    assert np.corrcoef(ehat, e)[0, 1] > 0.98
    diag = overlap_diagnostics(ehat, d)
    assert 0 < diag["ess_treated"] <= diag["n_treated"]
    out = aipw_cross_fit(y, d, X, outcome_model="linear", seed=0)
    assert abs(out["ATE"].estimate - tau.mean()) < 3.5 * out["ATE"].se
    assert abs(out["ATT"].estimate - tau[d == 1].mean()) < 3.5 * out["ATT"].se
    naive = naive_difference(y, d).estimate
    assert abs(out["ATE"].estimate - tau.mean()) < 0.2 * abs(naive - tau.mean())
