"""Targeting economics and segments on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from liftlab.uplift import policy, segments

SCORE = np.array([0.9, 0.7, 0.5, 0.1])
T = np.array([1, 0, 1, 0])
Y = np.array([1.0, 0.0, 0.0, 1.0])


def test_policy_table_by_hand():
    table = policy.policy_table(SCORE, T, Y, value=10.0, cost=1.0, step_pct=25)
    # gain G(m) for m = 0..4 units: 0, 1, 2, 1.5, 0 → profit = 10·G − 1·m
    assert table["n_targeted"].to_list() == [0, 1, 2, 3, 4]
    assert table["incremental_conversions"].to_list() == [0.0, 1.0, 2.0, 1.5, 0.0]
    assert table["profit"].to_list() == [0.0, 9.0, 18.0, 12.0, -4.0]
    assert table["roi"][2] == pytest.approx(18.0 / 2.0)
    assert np.isnan(table["roi"][0])


def test_compare_with_blanket_by_hand():
    summary = {r["policy"]: r for r in policy.compare_with_blanket(SCORE, T, Y, value=10.0, cost=1.0, n_boot=50).to_dicts()}
    assert summary["treat_none"]["profit"] == 0.0
    assert summary["treat_all"]["profit"] == -4.0  # n·(Ȳ_T − Ȳ_C)·V − c·n = 4·0·10 − 4
    assert summary["best_k"]["k_pct"] == 50.0 and summary["best_k"]["profit"] == 18.0
    # break-even: contact when 10·τ̂ > 1, i.e. τ̂ > 0.1 → the first three units
    assert summary["break_even"]["n_targeted"] == 3 and summary["break_even"]["profit"] == 12.0
    assert summary["break_even"]["profit_vs_all"] == 16.0


def test_blanket_profit_is_ate_times_value_minus_cost():
    rng = np.random.default_rng(0)
    n = 5000
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.2 + 0.05 * t).astype(float)
    table = policy.policy_table(rng.random(n), t, y, value=30.0, cost=0.5)
    ate = y[t == 1].mean() - y[t == 0].mean()
    assert table["profit"][-1] == pytest.approx(n * ate * 30.0 - 0.5 * n)
    summary = policy.compare_with_blanket(rng.random(n), t, y, value=30.0, cost=0.5, n_boot=100, seed=1)
    row = summary.filter(summary["policy"] == "treat_all").row(0, named=True)
    assert row["profit_ci_low"] < row["profit"] < row["profit_ci_high"]


def test_segment_rules_and_summary():
    tau = np.array([0.3, -0.2, 0.01, 0.0, 0.2, -0.01])
    p0 = np.array([0.2, 0.7, 0.8, 0.1, 0.6, 0.3])
    got = segments.assign(tau, p0, min_uplift=0.05).tolist()
    assert got == ["persuadable", "sleeping_dog", "sure_thing", "lost_cause", "persuadable", "lost_cause"]

    seg = np.array(["persuadable"] * 4 + ["lost_cause"] * 4)
    t = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=float)
    table = {r["segment"]: r for r in segments.summary(seg, t, y).to_dicts()}
    assert table["persuadable"]["realised_uplift"] == pytest.approx(1.0 - 0.5)
    assert table["lost_cause"]["realised_uplift"] == 0.0
    assert table["sleeping_dog"]["n"] == 0 and table["persuadable"]["share"] == 0.5
    agree = segments.agreement(seg, np.array(["persuadable"] * 3 + ["sure_thing"] + ["lost_cause"] * 4))
    assert agree["accuracy"] == pytest.approx(7 / 8) and agree["precision_persuadable"] == pytest.approx(0.75)


def test_bootstrap_profit_at_cut_points_matches_whole_curves():
    """The policy bootstrap reads profits at a few cut points with segment sums; the whole
    count-weighted curves give the same numbers."""
    from liftlab.uplift.evaluation import Curves, bootstrap_counts

    rng = np.random.default_rng(3)
    n = 400
    t = rng.integers(0, 2, n).astype(float)
    y = (rng.random(n) < 0.25).astype(float)
    w = next(bootstrap_counts(n, 25, seed=2))
    ms = np.array([0, n, 137, 1, 137, 399])
    fast = policy._profit_at(t, y, w, ms, value=20.0, cost=0.5)
    slow = policy._profit(Curves.build(t, y, w), ms, 20.0, 0.5)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-9)
    assert (fast[:, 0] == 0).all()


def test_shared_count_matrix_gives_the_same_draws():
    from liftlab.uplift.evaluation import bootstrap_count_matrix

    rng = np.random.default_rng(5)
    n = 300
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.3).astype(float)
    score = rng.standard_normal(n)
    own = policy.compare_with_blanket(score, t, y, value=10.0, cost=1.0, n_boot=60, seed=4)
    shared = policy.compare_with_blanket(score, t, y, value=10.0, cost=1.0, n_boot=60, seed=4,
                                         counts=bootstrap_count_matrix(n, 60, 4))
    assert own.equals(shared)
