"""Sensitivity next to every causal estimate: golden values from the papers, identities between
the formulas, and refutations that find nothing where there is nothing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from liftlab.causal import did, sensitivity
from liftlab.causal.studies import covariate_benchmarks, placebo_treatment, staggered_rollout


def test_robustness_value_reproduces_cinelli_hazlett_darfur():
    """Cinelli & Hazlett (2020) §5, Darfur: t = 4.18 on 783 df → RV = 13.9 %, RV_α=0.05 = 7.6 %
    (also sensemakr's print-out for the same model)."""
    assert sensitivity.robustness_value(4.18, 783) == pytest.approx(0.139, abs=5e-4)
    assert sensitivity.robustness_value(4.18, 783, alpha=0.05) == pytest.approx(0.076, abs=5e-4)
    assert sensitivity.robustness_value(1.0, 783, alpha=0.05) == 0.0  # not significant to begin with


def test_a_confounder_at_the_robustness_value_erases_the_estimate():
    """At R²_dz = R²_yz = RV the bias bound of eq. (4.4) equals the estimate (two formulas agree)."""
    for estimate, se, df in ((0.0973, 0.0233, 783), (-2.5, 0.8, 40), (0.31, 0.05, 12_000)):
        rv = sensitivity.robustness_value(estimate / se, df)
        assert float(sensitivity.adjusted_estimate(estimate, se, df, rv, rv)) == pytest.approx(0.0, abs=1e-9 * abs(estimate))
        assert abs(float(sensitivity.adjusted_estimate(estimate, se, df, rv / 2, rv / 2))) > 0


def test_e_value_reproduces_vanderweele_ding():
    """VanderWeele & Ding (2017): RR 3.9 (CI 1.8–8.7) → E-value 7.26, 3.00 for the lower bound;
    a protective RR uses its inverse."""
    assert sensitivity.e_value_rr(3.9) == pytest.approx(7.26, abs=5e-3)
    assert sensitivity.e_value_rr(1.8) == pytest.approx(3.0, abs=1e-12)
    assert sensitivity.e_value_rr(1 / 3.9) == pytest.approx(sensitivity.e_value_rr(3.9))
    point, bound = sensitivity.e_value_difference(0.5, 0.2, 0.8, 1.0)
    assert point == pytest.approx(sensitivity.e_value_rr(math.exp(0.91 * 0.5)))
    assert bound == pytest.approx(sensitivity.e_value_rr(math.exp(0.91 * 0.2)))
    assert sensitivity.e_value_difference(0.5, -0.1, 1.1, 1.0)[1] == 1.0  # the CI includes 0


def test_benchmarks_are_partial_r2_of_ols():
    """Partial R² from t statistics equals the R² of the residualised (Frisch–Waugh) regression."""
    rng = np.random.default_rng(1)
    n = 2_000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    d = (X["a"] + rng.normal(size=n) > 0).astype(int).to_numpy()
    y = 2 * X["b"].to_numpy() + 0.5 * X["a"].to_numpy() + d + rng.normal(size=n)
    got = {b["covariate"]: b for b in covariate_benchmarks(y, d, X, top=2)}

    def fwl(target, x, others):
        Z = np.column_stack([np.ones(n), *others])
        res = lambda v: v - Z @ np.linalg.lstsq(Z, v, rcond=None)[0]  # noqa: E731
        rt, rx = res(target), res(x)
        return np.corrcoef(rt, rx)[0, 1] ** 2

    a, b = X["a"].to_numpy(), X["b"].to_numpy()
    assert got["a"]["r2_dx"] == pytest.approx(fwl(d.astype(float), a, [b]), rel=1e-9)
    assert got["b"]["r2_yx"] == pytest.approx(fwl(y, b, [d, a]), rel=1e-9)


def test_placebo_treatment_covers_zero_at_the_nominal_rate():
    rng = np.random.default_rng(3)
    hits = []
    for seed in range(40):
        n = 1_500
        X = rng.normal(size=(n, 2))
        d = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
        y = X[:, 0] + 0.8 * d + rng.normal(size=n)
        hits.append(placebo_treatment(y, d, X, seed, 5, 0.05).diagnostics["passed"])
    assert np.mean(hits) >= 0.85  # 40 draws of a 95 % interval


def _panel(drift: float = 0.0, effect: float = 0.0, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    adopt = {"a": 6, "b": 6, "c": 10, "d": 10, "e": None, "f": None, "g": None}
    rows = []
    for k, (u, g) in enumerate(adopt.items()):
        for t in range(18):
            h = None if g is None else t - g
            post = h is not None and h >= 0
            rows.append({"unit": u, "time": t, "weight": 50.0 + 10 * k, "first_treat": np.nan if g is None else float(g),
                         "y": k + 0.2 * np.sin(t) + (effect + drift * (h + 1) if post else 0.0) + noise * rng.normal()})
    return pd.DataFrame(rows)


def test_trend_breakdown_recovers_the_drift_that_explains_the_effect():
    """No effect, only a post-adoption drift δ·(h + 1): the imputation ATT is δ·h̄, so the breakdown
    trend is exactly δ; the pre-period is flat, so its slope's interval covers 0."""
    sens = staggered_rollout(_panel(drift=0.03), bin_width=2).imputation.diagnostics["sensitivity"]
    assert sens["breakdown_trend_per_period"] == pytest.approx(0.03, rel=1e-9)
    noisy = staggered_rollout(_panel(drift=0.03, noise=0.02, seed=1), bin_width=2).imputation.diagnostics["sensitivity"]
    low, high = noisy["pretrend_slope_ci"]
    assert low <= 0 <= high and high - low < 0.03


def test_placebo_adoption_and_pretrend_test_on_parallel_trends():
    p = _panel(effect=0.5, noise=0.05, seed=2)
    placebo = did.placebo_adoption(p, 3)
    assert placebo.ci_low <= 0 <= placebo.ci_high and placebo.diagnostics["shift_periods"] == 3
    assert did.pretrend_test(p, bin_width=2)["p_value"] > 0.05
    # a pre-adoption trend of the adopters is caught by both
    q = p.copy()
    lead = (q["time"] - q["first_treat"]).clip(upper=0).fillna(0)
    q["y"] = q["y"] + 0.08 * lead
    assert did.pretrend_test(q, bin_width=2)["p_value"] < 0.01
    bad = did.placebo_adoption(q, 3)
    assert not (bad.ci_low <= 0 <= bad.ci_high)


def test_describe_says_how_strong_a_confounder_must_be():
    r = sensitivity.robustness(4.18, 783, 0.0973, 0.0516, 0.143, 0.4, alpha=0.05)
    text = sensitivity.describe({**r.as_dict(), "alpha": 0.05})
    assert "14% of the residual variance" in text and "8% to make it not significant at α = 0.05" in text
