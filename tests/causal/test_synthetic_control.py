"""Synthetic control: the simplex constraint, exact recovery, the placebo test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from liftlab.causal.synthetic_control import fit, placebo_test, project_simplex, simplex_weights


def test_projection_onto_simplex():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=7) * 3
        w = project_simplex(v)
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
        ref = minimize(lambda x: ((x - v) ** 2).sum(), np.full(7, 1 / 7), method="SLSQP",
                       bounds=[(0, None)] * 7, constraints={"type": "eq", "fun": lambda x: x.sum() - 1},
                       options={"ftol": 1e-14, "maxiter": 500})
        np.testing.assert_allclose(w, ref.x, atol=1e-5)


def test_weights_recover_convex_combination_and_stay_on_simplex():
    rng = np.random.default_rng(1)
    X0 = rng.normal(size=(30, 6))
    w_true = np.array([0.5, 0.3, 0.2, 0, 0, 0])
    w = simplex_weights(X0 @ w_true, X0)
    np.testing.assert_allclose(w, w_true, atol=1e-4)
    # outside the convex hull: still exactly on the simplex
    w2 = simplex_weights(X0 @ w_true + 5.0, X0)
    assert w2.min() >= 0 and w2.sum() == pytest.approx(1.0, abs=1e-12)


def test_placebo_ranks_the_treated_unit_first():
    rng = np.random.default_rng(2)
    T, J = 40, 8
    factors = rng.normal(size=(T, 2)).cumsum(0) * 0.1
    loadings = rng.uniform(0.5, 1.5, size=(J + 1, 2))
    Y = factors @ loadings.T + rng.normal(scale=0.05, size=(T, J + 1))
    pre = np.arange(T) < 25
    Y[~pre, 0] += 1.0  # the treated unit's effect
    wide = pd.DataFrame(Y, columns=["T"] + [f"d{j}" for j in range(J)])
    res = placebo_test(wide, "T", pre, [f"d{j}" for j in range(J)])
    assert res["rank"] == 1 and res["p_value"] == pytest.approx(1 / (J + 1))
    assert res["main"]["att"] == pytest.approx(1.0, abs=0.15)
    assert res["main"]["weights"].sum() == pytest.approx(1.0)
    single = fit(wide, "T", pre, [f"d{j}" for j in range(J)])
    assert single["rmspe_pre"] < 0.2
