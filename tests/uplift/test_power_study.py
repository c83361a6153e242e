"""The uplift power study (liftlab.studies.uplift_power): its semi-synthetic Hillstrom data have
the heterogeneity asked for, and the whole loop — simulate, fit real learners, bootstrap —
finds a strong heterogeneity and reports its shares with the right binomial intervals.

The full study is ``python -m liftlab.studies.uplift_power`` (figures in the README); CI runs
LIFTLAB_POWER_SIMS=2 simulations with two learners and one repetition."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from liftlab.studies.uplift_power import PowerConfig, hillstrom_units, run_power, semi_synthetic, summarise, wilson
from liftlab.uplift_io import uplift_features


@pytest.fixture(scope="module")
def hillstrom():
    return hillstrom_units()


def test_semi_synthetic_keeps_the_units_and_draws_the_requested_heterogeneity(hillstrom):
    frame, spec = hillstrom
    features = list(uplift_features(spec))
    sims = semi_synthetic(frame, arm="Mens E-Mail", baseline=spec.baseline, outcome="visit", features=features,
                          levels=(0.0, 0.02), seed=7)
    real = frame.filter(pl.col("variant").is_in(["Mens E-Mail", spec.baseline])).sort("unit_id")
    for s, data in sims.items():
        # the real units, features and assignment; only the outcome is redrawn
        assert data["unit_id"].to_list() == real["unit_id"].to_list()
        assert data["variant"].to_list() == real["variant"].to_list()
        assert data.select(features).equals(real.select(features))
        tau = data["true_cate__visit"].to_numpy()
        t = (data["variant"] == "Mens E-Mail").to_numpy()
        y = data["visit"].to_numpy()
        real_y = real["visit"].to_numpy()
        real_ate = real_y[t].mean() - real_y[~t].mean()
        # the mean effect is the real one (clipping at 0 and 1 barely binds for visits) …
        assert tau.mean() == pytest.approx(real_ate, abs=0.002)
        # … its spread is the level asked for …
        assert tau.std() == pytest.approx(s, abs=0.0015)
        # … and the drawn outcomes match their probabilities: the control rate is the real one
        # (a logistic fit reproduces the mean) and the difference in means estimates the ATE
        n1, n0 = t.sum(), (~t).sum()
        se = np.sqrt(y[t].var() / n1 + y[~t].var() / n0)
        assert abs(y[~t].mean() - real_y[~t].mean()) < 4 * np.sqrt(y[~t].var() / n0)
        assert abs((y[t].mean() - y[~t].mean()) - tau[t].mean()) < 4 * se
    # common random numbers: every level uses the same uniforms, so an outcome can only switch
    # where the level moved the unit's probability
    a, b = sims[0.0]["visit"].to_numpy(), sims[0.02]["visit"].to_numpy()
    assert 0 < (a != b).mean() < 0.05


def test_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 16), (3, 16), (16, 16), (41, 200)]:
        assert wilson(k, n) == pytest.approx(proportion_confint(k, n, alpha=0.05, method="wilson"), abs=1e-3)


@pytest.mark.slow
def test_power_loop_finds_strong_heterogeneity(hillstrom):
    """At s = 0.06 (a CATE spread of six points on a 7.7-point mean effect) the oracle's realised
    Qini is ≈ 0.008 against a bootstrap sd of ≈ 0.0005, so the learners' best CI must clear 0
    in every simulation; at s = 0 the best Qini is noise, far below it."""
    frame, spec = hillstrom
    n_sims = int(os.environ.get("LIFTLAB_POWER_SIMS", "1"))
    cfg = PowerConfig(outcome="visit", levels=(0.0, 0.06), n_sims=n_sims, learners=("s_learner", "t_learner"),
                      n_folds=2, n_repeats=1, n_boot=100, workers=1)
    sims = run_power(cfg, frame, spec, log=lambda *_: None)
    assert sims.height == 2 * n_sims
    summary = summarise(sims)
    strong = summary.filter(pl.col("level") == 0.06).row(0, named=True)
    assert strong["best_ci_above_0"] == 1.0 and strong["oracle_ci_above_0"] == 1.0
    assert strong["expected_oracle_qini"] > 0.005
    assert 0.5 < strong["best_expected_share"] <= 1.0
    # with nothing to find the learners' Qinis are noise around 0, far below the strong level's
    null = summary.filter(pl.col("level") == 0.0).row(0, named=True)
    assert abs(null["best_qini"]) < 0.25 * strong["best_qini"]
    lo, hi = strong["best_ci_above_0_wilson"]
    assert lo < 1.0 == hi


def test_single_feature_reference_ranks_every_numeric_feature_both_ways(hillstrom):
    from liftlab.studies.uplift_power import single_feature_qinis
    from liftlab.uplift import evaluation as ev

    frame, spec = hillstrom
    features = list(uplift_features(spec))
    table = single_feature_qinis(frame, arm="Mens E-Mail", baseline=spec.baseline, outcome="visit",
                                 features=features, n_boot=50, seed=1)
    numeric = [f for f in features if frame[f].dtype.is_numeric()]
    assert sorted(table["feature"].unique().to_list()) == sorted(numeric)
    assert table.height == 2 * len(numeric)
    assert table["qini"].to_list() == sorted(table["qini"].to_list(), reverse=True)
    assert (table["ci_low"] <= table["qini"]).all() and (table["qini"] <= table["ci_high"]).all()
    # each row is the plain Qini of that ordering of the real units
    units = frame.filter(pl.col("variant").is_in(["Mens E-Mail", spec.baseline])).sort("unit_id")
    t = (units["variant"] == "Mens E-Mail").to_numpy().astype(float)
    row = table.filter((pl.col("feature") == "recency") & (pl.col("direction") == "low first")).row(0, named=True)
    assert row["qini"] == pytest.approx(ev.qini_coefficient(-units["recency"].cast(pl.Float64).to_numpy(), t,
                                                            units["visit"].cast(pl.Float64).to_numpy()))


def test_expected_oracle_share_is_undefined_for_a_constant_cate():
    """At s = 0 every ranking is as good as random: the share of the oracle is NaN, not a
    division by zero (or by rounding noise)."""
    from liftlab.uplift.analysis import expected_share

    rng = np.random.default_rng(3)
    assert np.isnan(expected_share(rng.random(1000), np.full(1000, 0.0766)))
    tau = rng.normal(0.07, 0.01, 1000)
    assert expected_share(tau, tau) == pytest.approx(1.0)
    assert expected_share(-tau, tau) == pytest.approx(-1.0, abs=0.05)
