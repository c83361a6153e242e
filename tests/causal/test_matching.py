"""Nearest-neighbour caliper matching and standardized mean differences."""

from __future__ import annotations

import numpy as np
import pytest

from liftlab.causal.balance import smd
from liftlab.causal.matching import match, matching_att, nearest_neighbours


def test_nearest_neighbours_equals_brute_force():
    rng = np.random.default_rng(0)
    q, pool = rng.normal(size=500), rng.normal(size=300)
    idx = nearest_neighbours(q, pool)
    brute = np.abs(q[:, None] - pool[None, :]).argmin(1)
    np.testing.assert_allclose(np.abs(pool[idx] - q), np.abs(pool[brute] - q))


def test_caliper_drops_unmatchable_treated():
    logit = np.array([0.0, 0.05, 10.0, 0.02, 0.04, -0.01])
    d = np.array([1, 1, 1, 0, 0, 0], bool)
    m = match(logit, d, caliper_sd=0.1)  # caliper = 0.1·sd ≈ 0.4: unit 2 (logit 10) has no match
    assert list(m["treated"]) == [0, 1]
    assert list(m["control"]) == [5, 4]  # nearest: |0 − (−0.01)| and |0.05 − 0.04|
    assert int(m["n_unmatched"]) == 1


def test_matching_recovers_att_and_balances():
    rng = np.random.default_rng(5)
    n = 20_000
    x = rng.normal(size=(n, 2))
    lin = -0.5 + 1.2 * x[:, 0]
    d = rng.random(n) < 1 / (1 + np.exp(-lin))
    tau = 1 + x[:, 0]
    y = 2 * x[:, 0] + x[:, 1] + d * tau + rng.normal(size=n)
    est, m = matching_att(y, d, lin, caliper_sd=0.1)
    assert abs(est.estimate - tau[m["treated"]].mean()) < 3.5 * est.se
    table = smd(x, d, m["counts"], names=["x0", "x1"])
    assert table.loc[0, "smd_before"] > 0.5
    assert table["smd_after"].abs().max() < 0.1


def test_smd_known_value():
    x = np.array([[1.0], [3.0], [0.0], [2.0]])
    d = np.array([1, 1, 0, 0], bool)
    # means 2 vs 1; population variances 1 and 1 → SMD = 1
    assert smd(x, d)["smd_before"][0] == pytest.approx(1.0)
    after = smd(x, d, np.array([1.0, 0.0, 0.0, 1.0]))  # keep x=1 (treated) and x=2 (control)
    assert after["smd_after"][0] == pytest.approx(-1.0)
