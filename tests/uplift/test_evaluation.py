"""Qini, AUUC, uplift at k, deciles and the bootstrap: a hand-computed example, a brute-force
definition, and causalml's own implementation on the same data."""

from __future__ import annotations

import numpy as np
import pytest

from liftlab.uplift import evaluation as ev

# Four units, already in score order: (score, treated, outcome).
SCORE = np.array([0.9, 0.7, 0.5, 0.1])
T = np.array([1, 0, 1, 0])
Y = np.array([1.0, 0.0, 0.0, 1.0])


def test_hand_computed_example():
    c = ev.curves(SCORE, T, Y)
    # Q(k) = Y_T − Y_C·N_T/N_C: k=1: 1 (no control yet), k=2: 1, k=3: 1, k=4: 1 − 1·2/2 = 0
    assert c.qini[0].tolist() == [1.0, 1.0, 1.0, 0.0]
    # G(k) = (Ȳ_T − Ȳ_C)·k: 1·1, (1 − 0)·2, (½ − 0)·3, (½ − ½)·4
    assert c.gain[0].tolist() == [1.0, 2.0, 1.5, 0.0]
    # qini = 1/(n+1) Σ_{k=0..n} [Q(k) − k/n·Q(n)] / n = (0 + 1 + 1 + 1 + 0) / 5 / 4
    assert ev.qini_coefficient(SCORE, T, Y) == pytest.approx(3 / 20)
    assert ev.auuc(SCORE, T, Y) == pytest.approx((0 + 1 + 2 + 1.5 + 0) / 5 / 4)
    assert ev.uplift_at(SCORE, T, Y, fractions=(0.5, 1.0)) == {0.5: 1.0, 1.0: 0.0}
    # the input order does not matter, only the scores
    perm = np.array([2, 0, 3, 1])
    assert ev.qini_coefficient(SCORE[perm], T[perm], Y[perm]) == pytest.approx(3 / 20)


def _brute_force(score, t, y):
    """The definitions, literally: one pass over k with sums over the top k."""
    order = np.argsort(-score, kind="stable")
    t, y = t[order], y[order]
    n = len(t)
    q, g = [0.0], [0.0]
    for k in range(1, n + 1):
        nt, nc = t[:k].sum(), k - t[:k].sum()
        yt, yc = (y[:k] * t[:k]).sum(), (y[:k] * (1 - t[:k])).sum()
        q.append(yt - (yc * nt / nc if nc else 0.0))
        g.append(((yt / nt if nt else 0.0) - (yc / nc if nc else 0.0)) * k)
    q, g = np.array(q), np.array(g)
    qini = (q - np.arange(n + 1) / n * q[-1]).sum() / (n + 1) / n
    return qini, g.sum() / (n + 1) / n


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.3 + 0.2 * t * (x > 0)).astype(float)
    score = x + 0.5 * rng.standard_normal(n)
    return score, t, y


def test_matches_brute_force_definition():
    score, t, y = _data(400, 1)
    qini, auuc = _brute_force(score, t, y)
    assert ev.qini_coefficient(score, t, y) == pytest.approx(qini, rel=1e-12)
    assert ev.auuc(score, t, y) == pytest.approx(auuc, rel=1e-12)


def test_matches_causalml_metrics():
    import pandas as pd
    from causalml.metrics import auuc_score, get_qini, qini_score

    score, t, y = _data(3000, 2)
    # causalml interpolates where a group is still empty; two top units (a control and a
    # treated unit, both y = 0) make every point defined under both conventions.
    score = np.concatenate([[10.0, 9.0], score])
    t = np.concatenate([[0, 1], t])
    y = np.concatenate([[0.0, 0.0], y])
    n = len(y)
    df = pd.DataFrame({"y": y, "w": t, "model": score})
    assert ev.qini_coefficient(score, t, y) * n == pytest.approx(qini_score(df, normalize=False)["model"], rel=1e-9)
    assert ev.auuc(score, t, y) * n == pytest.approx(auuc_score(df, normalize=False)["model"], rel=1e-9)
    ours = ev.curves(score, t, y).qini[0]
    theirs = get_qini(df, normalize=False)["model"].to_numpy()[1:]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_oracle_ranking_beats_a_noisy_one_and_random_is_near_zero():
    rng = np.random.default_rng(3)
    n = 20_000
    tau = np.where(rng.random(n) < 0.3, 0.4, np.where(rng.random(n) < 0.3, -0.3, 0.0))
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.3 + t * tau).astype(float)
    oracle = ev.qini_coefficient(tau, t, y)
    noisy = ev.qini_coefficient(tau + rng.normal(0, 0.4, n), t, y)
    random = ev.qini_coefficient(rng.random(n), t, y)
    assert oracle > noisy > 0
    assert abs(random) < 0.25 * noisy


def test_bootstrap_counts_and_weighted_curves():
    counts = np.vstack(list(ev.bootstrap_counts(50, 30, seed=7, chunk=8)))
    assert counts.shape == (30, 50) and (counts.sum(axis=1) == 50).all()
    again = np.vstack(list(ev.bootstrap_counts(50, 30, seed=7, chunk=8)))
    assert (counts == again).all()  # seeded

    score, t, y = _data(300, 4)
    order = np.argsort(-score, kind="stable")
    # unit weights reproduce the point estimate exactly
    ones = ev.Curves.build(t[order].astype(float), y[order], np.ones((1, 300)))
    assert ones.qini_coefficient()[0] == pytest.approx(ev.qini_coefficient(score, t, y), rel=1e-12)
    # a resample by counts ≈ the same resample written out row by row (exact up to where
    # duplicated units are evaluated: at the end of their block of copies, O(1/n))
    draw = counts_one = np.bincount(np.random.default_rng(5).integers(0, 300, 300), minlength=300).astype(float)
    weighted = ev.Curves.build(t[order].astype(float), y[order], draw[order][None, :])
    rows = np.repeat(np.arange(300), counts_one.astype(int))
    qini_rows, auuc_rows = _brute_force(score[rows], t[rows], y[rows])
    assert weighted.qini_coefficient()[0] == pytest.approx(qini_rows, abs=0.01 * abs(qini_rows) + 2e-3)
    assert weighted.auuc()[0] == pytest.approx(auuc_rows, abs=0.01 * abs(auuc_rows) + 2e-3)

    boot = ev.bootstrap_scores(score, t, y, n_boot=200, seed=1)
    lo, hi = ev.percentile_ci(boot["qini"])
    assert lo < ev.qini_coefficient(score, t, y) < hi
    assert boot["qini"].std() > 0


def test_deciles_and_calibration():
    rng = np.random.default_rng(8)
    n = 40_000
    tau = rng.uniform(-0.1, 0.3, n)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.4 + t * tau).astype(float)
    table = ev.by_decile(tau, t, y)
    assert table["bin"].to_list() == list(range(1, 11)) and table["n"].sum() == n
    # bin 1 holds the highest predictions
    assert table["predicted_uplift"].to_list() == sorted(table["predicted_uplift"].to_list(), reverse=True)
    top = np.argsort(-tau, kind="stable")[: n // 10]
    hand = y[top][t[top] == 1].mean() - y[top][t[top] == 0].mean()
    assert table["realised_uplift"][0] == pytest.approx(hand)
    cal = ev.calibration(table)
    assert 0.7 < cal["slope"] < 1.3  # the true CATE is calibrated
    shrunk = ev.calibration(ev.by_decile(tau / 3, t, y))
    assert shrunk["slope"] > 2  # predictions 3× too small: slope ≈ 3


def test_paired_bootstrap_matches_weighted_curves_draw_by_draw():
    """bootstrap_many's fast areas against Curves.build (itself checked against the brute
    force and causalml above), one draw at a time; columns share the same draws."""
    rng = np.random.default_rng(21)
    n = 250
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.3).astype(float)
    scores = [rng.standard_normal(n), rng.standard_normal(n), np.round(rng.standard_normal(n), 1)]  # ties too
    boot = ev.bootstrap_many(scores, t, y, n_boot=40, seed=9)
    assert boot["qini"].shape == (40, 3) and boot["auuc"].shape == (40, 3)
    counts = np.vstack(list(ev.bootstrap_counts(n, 40, seed=9)))
    for j, s in enumerate(scores):
        order = np.argsort(-s, kind="stable")
        for b in range(40):
            c = ev.Curves.build(t[order].astype(float), y[order], counts[b][order][None, :])
            assert boot["qini"][b, j] == pytest.approx(c.qini_coefficient()[0], abs=1e-14)
            assert boot["auuc"][b, j] == pytest.approx(c.auuc()[0], abs=1e-14)
        single = ev.bootstrap_scores(s, t, y, n_boot=40, seed=9)
        np.testing.assert_array_equal(single["qini"], boot["qini"][:, j])


def test_simultaneous_band_by_hand():
    rng = np.random.default_rng(4)
    point = np.array([0.1, 0.2, 0.0, 0.05])
    draws = point + rng.standard_normal((300, 4)) * np.array([0.01, 0.03, 0.0, 0.02])
    lo, hi, crit = ev.simultaneous_band(point, draws)
    # the definition, with loops: studentized deviations, their maximum per draw, its quantile
    sds = []
    for j in range(4):
        col = [draws[b, j] for b in range(300)]
        mean = sum(col) / 300
        sds.append((sum((v - mean) ** 2 for v in col) / 299) ** 0.5)
    maxima = [max(abs(draws[b, j] - point[j]) / sds[j] for j in range(4) if sds[j] > 0) for b in range(300)]
    assert crit == pytest.approx(float(np.quantile(maxima, 0.95)), rel=1e-12)
    for j in range(4):
        assert lo[j] == pytest.approx(point[j] - crit * sds[j], abs=1e-15)
        assert hi[j] == pytest.approx(point[j] + crit * sds[j], abs=1e-15)
    assert lo[2] == hi[2] == 0.0  # no spread: the band is the point
    # wider than one marginal 95 % interval: c is above the normal 1.96 for 3 free statistics
    assert 2.0 < crit < 3.2


def test_simultaneous_band_protects_the_selected_ranking():
    """Under the null (scores unrelated to the effect) the best of six random rankings looks
    significant far more often by its own CI than by the simultaneous band, which stays
    near its 5 % family-wise level."""
    rng = np.random.default_rng(2026)
    sims, n, n_learners = 300, 600, 6
    marginal_hits = simultaneous_hits = 0
    for s in range(sims):
        t = rng.integers(0, 2, n)
        y = (rng.random(n) < 0.3 + 0.1 * t).astype(float)  # a constant effect: no ranking beats random
        scores = [rng.standard_normal(n) for _ in range(n_learners)]
        boot = ev.bootstrap_many(scores, t, y, n_boot=100, seed=s)
        point = np.array([ev.qini_coefficient(sc, t, y) for sc in scores])
        best = int(np.argmax(point))
        marginal_hits += ev.percentile_ci(boot["qini"][:, best])[0] > 0
        lo, _, _ = ev.simultaneous_band(point, boot["qini"])
        simultaneous_hits += lo[best] > 0
    assert simultaneous_hits / sims <= 0.08
    assert marginal_hits > 2 * max(simultaneous_hits, 1)
