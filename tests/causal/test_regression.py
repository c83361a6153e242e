"""OLS covariances and regression adjustment against statsmodels and known answers."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from liftlab.causal.regression import ols, regression_adjustment


@pytest.fixture()
def data():
    rng = np.random.default_rng(11)
    n = 4000
    X = rng.normal(size=(n, 3))
    d = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    tau = 2.0 + 1.5 * X[:, 0]  # heterogeneous effect, linear in X
    y = 1 + X @ np.array([1.0, -0.5, 0.3]) + d * tau + rng.normal(size=n) * (1 + 0.5 * np.abs(X[:, 1]))
    return y, d, X, tau


def test_hc1_matches_statsmodels(data):
    y, d, X, _ = data
    Z = sm.add_constant(np.column_stack([d, X]))
    ours = ols(y, Z, cov_type="HC1")
    ref = sm.OLS(y, Z).fit(cov_type="HC1")
    np.testing.assert_allclose(ours.coef, ref.params, rtol=1e-10)
    np.testing.assert_allclose(ours.se, ref.bse, rtol=1e-8)


def test_weighted_cluster_matches_statsmodels(data):
    y, d, X, _ = data
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 25, len(y))
    w = rng.uniform(0.5, 2.0, len(y))
    Z = sm.add_constant(np.column_stack([d, X]))
    ours = ols(y, Z, weights=w, cov_type="cluster", clusters=groups)
    ref = sm.WLS(y, Z, weights=w).fit(cov_type="cluster", cov_kwds={"groups": groups})
    np.testing.assert_allclose(ours.coef, ref.params, rtol=1e-10)
    np.testing.assert_allclose(ours.se, ref.bse, rtol=1e-8)
    assert ours.n_clusters == 25


def test_regression_adjustment_ate_att_match_interacted_statsmodels(data):
    y, d, X, tau = data
    for estimand, centre in (("ATE", X.mean(0)), ("ATT", X[d == 1].mean(0))):
        Xc = X - centre
        ref = sm.OLS(y, np.column_stack([np.ones_like(d), d, Xc, Xc * d[:, None]])).fit(cov_type="HC1")
        est = regression_adjustment(y, d, X, estimand)
        assert est.estimate == pytest.approx(ref.params[1], rel=1e-10)
        assert est.se == pytest.approx(ref.bse[1], rel=1e-8)
        truth = tau.mean() if estimand == "ATE" else tau[d == 1].mean()
        assert est.covers(truth) or abs(est.estimate - truth) < 4 * est.se
    # the ATT differs from the ATE here (effects grow with X0, which drives treatment)
    assert regression_adjustment(y, d, X, "ATT").estimate > regression_adjustment(y, d, X, "ATE").estimate + 0.5
