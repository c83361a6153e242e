"""Multi-covariate regression adjustment (liftlab.stats.regression_adjustment, method cuped_multi)
against an independent implementation (statsmodels OLS on the unit rows), additivity of its
statistics, the singular-Gram guard, and a CI-sized coverage study.

Full size on demand: ``python -m liftlab.studies.regression_adjustment --sims 10000`` (coverage)
and ``--demo`` (variance reduction on the demo's primary metrics vs single CUPED).
"""

from __future__ import annotations

import math
import os

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from liftlab.stats.regression_adjustment import (
    HAS_PRE, GramStats, design_matrix, gram_statistics, multi_effects, regression_adjust,
)

FIELDS = ("n", "sum_y", "sum_yy", "sum_x", "sum_xx", "sum_xy")


def _units(n: int = 4_000, arms=("control", "a", "b"), p=(0.5, 0.3, 0.2), seed: int = 1) -> pl.DataFrame:
    """Units with two pre-period twins (missing for ~20 % new users), a categorical attribute,
    heteroskedastic arms and a heterogeneous effect."""
    rng = np.random.default_rng(seed)
    arm = rng.choice(list(arms), n, p=list(p))
    plan = rng.choice(["basic", "pro", "enterprise"], n, p=[0.5, 0.3, 0.2])
    g = rng.standard_normal(n)
    pre1 = rng.poisson(np.exp(1 + 0.6 * g)).astype(float)
    pre2 = rng.gamma(2, np.exp(0.3 * g))
    new = rng.random(n) < 0.2
    pre1[new], pre2[new] = np.nan, np.nan
    lift = np.select([arm == "a", arm == "b"], [0.3 + 0.2 * g, -0.1], 0.0)
    y = 5 + 2 * g + (plan == "pro") * 1.5 + (plan == "enterprise") * 3 + lift + rng.normal(0, 1 + (arm == "a"), n)
    return pl.DataFrame({"variant": arm, "plan": plan, "pre1": pre1, "pre2": pre2, "y": y, "g": g,
                         "day": rng.integers(0, 7, n)})


def _by_arm(keys: pl.DataFrame, stats: GramStats, order) -> GramStats:
    """(groups, outcomes) → (outcomes, arms in ``order``)."""
    idx = [keys["variant"].to_list().index(v) for v in order]
    return GramStats(*(np.swapaxes(np.asarray(getattr(stats, f))[idx], 0, 1) for f in FIELDS))


def _ols(frame: pl.DataFrame, X: np.ndarray, arms, cov_type: str = "nonrobust"):
    """statsmodels OLS of y on [1, arm dummies, centred covariates] (Lin 2013, pooled slopes)."""
    v = frame["variant"].to_numpy()
    design = np.column_stack([np.ones(frame.height), *[(v == a).astype(float) for a in arms], X - X.mean(axis=0)])
    return sm.OLS(frame["y"].to_numpy(), design).fit(cov_type=cov_type)


def test_effect_equals_ols_arm_coefficient_three_arms():
    frame = _units()
    X, names = design_matrix(frame, ["pre1", "pre2"], [], ["plan"])
    assert names == ["pre1", "pre2", HAS_PRE, "plan=enterprise", "plan=pro"]
    keys, stats = gram_statistics(frame, ["variant"], ["y"], X)
    res = regression_adjust(_by_arm(keys, stats, ["control", "a", "b"]), 0)
    fit = _ols(frame, X, ["a", "b"])
    np.testing.assert_allclose(res["abs_effect"][0], fit.params[1:3], rtol=0, atol=1e-9)
    np.testing.assert_allclose(res["theta"][0], fit.params[3:], rtol=1e-8, atol=1e-10)
    # per-arm residual variance ≈ heteroskedasticity-robust (HC2) OLS SE, not the pooled-σ one
    hc2 = _ols(frame, X, ["a", "b"], "HC2").bse[1:3]
    np.testing.assert_allclose(res["abs_se"][0], hc2, rtol=5e-3)
    assert res["k_used"][0] == X.shape[1]


def test_effect_equals_ols_two_arms_unequal_allocation():
    frame = _units(n=3_000, arms=("control", "t"), p=(0.7, 0.3), seed=9)
    X, _ = design_matrix(frame, ["pre1", "pre2"], ["g"], ["plan"])
    keys, stats = gram_statistics(frame, ["variant"], ["y"], X)
    res = regression_adjust(_by_arm(keys, stats, ["control", "t"]), 0)
    fit = _ols(frame, X, ["t"])
    assert abs(res["abs_effect"][0, 0] - fit.params[1]) < 1e-9
    # the adjusted arm means differ by the effect; the baseline's is ȳ0 − θᵀ(x̄0 − x̄)
    assert abs(res["mean_variant"][0, 0] - res["mean_baseline"][0, 0] - fit.params[1]) < 1e-9


def test_statistics_of_two_halves_add_to_the_whole():
    frame = _units(seed=3)
    X, _ = design_matrix(frame, ["pre1", "pre2"], [], ["plan"])
    half = frame.height // 2
    _, whole = gram_statistics(frame, ["variant"], ["y"], X)
    _, first = gram_statistics(frame[:half], ["variant"], ["y"], X[:half])
    _, second = gram_statistics(frame[half:], ["variant"], ["y"], X[half:])
    total = first + second
    for f in FIELDS:
        np.testing.assert_allclose(getattr(total, f), getattr(whole, f), rtol=1e-12, atol=1e-9)
    order = ["control", "a", "b"]
    keys = pl.DataFrame({"variant": sorted(order)})
    a = regression_adjust(_by_arm(keys, total, order))
    b = regression_adjust(_by_arm(keys, whole, order))
    for k in ("abs_effect", "abs_se", "p_value", "rel_effect", "rel_se"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-10)


def test_daily_partitions_sum_to_the_experiment():
    """multi_effects over variant × day partitions = over variants (the days add)."""
    frame = _units(seed=4)
    kw = dict(pre=["pre1", "pre2"], categorical=["plan"], own_twin={"y": "pre1"})
    by_day = multi_effects(frame, ["y"], "control", by=["variant", "day"], **kw)
    whole = multi_effects(frame, ["y"], "control", **kw)
    for c in ("abs_effect", "abs_se", "rel_effect", "p_value", "cs_low", "variance_reduction", "theta"):
        np.testing.assert_allclose(by_day[c].to_numpy(), whole[c].to_numpy(), rtol=1e-9)
    assert set(whole["method"]) == {"cuped_multi"} and whole.height == 2


def test_singular_gram_is_guarded():
    """A duplicated column, a full set of one-hot levels and a constant indicator: the same
    effect as without them (the redundant directions are dropped), finite SEs."""
    frame = _units(seed=5).with_columns(pl.col("pre1").fill_nan(0.0), pl.col("pre2").fill_nan(0.0))
    X, _ = design_matrix(frame, [], ["pre1", "pre2"], ["plan"])
    onehot_all = np.column_stack([(frame["plan"] == lv).to_numpy().astype(float) for lv in ("basic", "pro", "enterprise")])
    Xs = np.column_stack([X, X[:, :1] * 2.0, onehot_all, np.ones(frame.height)])
    order = ["control", "a", "b"]
    keys, plain = gram_statistics(frame, ["variant"], ["y"], X)
    _, singular = gram_statistics(frame, ["variant"], ["y"], Xs)
    a = regression_adjust(_by_arm(keys, plain, order))
    b = regression_adjust(_by_arm(keys, singular, order))
    np.testing.assert_allclose(b["abs_effect"], a["abs_effect"], rtol=0, atol=1e-9)
    assert np.isfinite(b["abs_se"]).all()
    assert b["k_used"][0] == a["k_used"][0] == X.shape[1]


def test_new_users_keep_the_attribute_adjustment():
    """Units without pre-period data stay in the analysis (single CUPED's joint statistics drop
    a unit whose covariate is missing) and get their own intercept."""
    frame = _units(seed=6)
    X, names = design_matrix(frame, ["pre1", "pre2"], [], ["plan"])
    new = frame["pre1"].is_nan().to_numpy()
    assert X[new, names.index(HAS_PRE)].max() == 0 and X[~new, names.index(HAS_PRE)].mean() > 0.9
    out = multi_effects(frame, ["y"], "control", pre=["pre1", "pre2"], categorical=["plan"])
    assert int(out["n_baseline"][0] + out["n_variant"][0]) == int((frame["variant"] != "b").sum())


def test_one_covariate_is_close_to_engine_cuped():
    """With only the own twin, cuped_multi ≈ the engine's CUPED (θ within arms vs over arms:
    an O(1/n) difference)."""
    from liftlab.stats.cuped import cuped_test
    from liftlab.stats.moments import JointStats

    frame = _units(n=20_000, arms=("control", "t"), p=(0.5, 0.5), seed=7).with_columns(pl.col("pre1").fill_nan(0.0))
    X, _ = design_matrix(frame, [], ["pre1"], [])
    keys, stats = gram_statistics(frame, ["variant"], ["y"], X)
    res = regression_adjust(_by_arm(keys, stats, ["control", "t"]))
    parts = {v: frame.filter(pl.col("variant") == v) for v in ("control", "t")}
    ref = cuped_test(*(JointStats.from_values(parts[v]["y"], parts[v]["pre1"]) for v in ("control", "t")))
    assert abs(res["abs_effect"][0, 0] - ref.abs_effect) < 0.02 * ref.abs_se
    assert abs(res["abs_se"][0, 0] / ref.abs_se - 1) < 1e-3


SIMS = int(os.environ.get("LIFTLAB_STUDY_SIMS", "1500"))


@pytest.mark.slow
def test_coverage_ci_size():
    """cuped_multi's 95 % CI covers the true effect (heterogeneous, heteroskedastic, 20 % new
    users) within 3 MC standard errors of 95 %, with a larger variance reduction than CUPED."""
    from liftlab.studies.regression_adjustment import coverage

    rows = {r.method: r for r in coverage(SIMS, n_per_arm=1_000, seed=11)}
    band = 3 * math.sqrt(0.05 * 0.95 / SIMS)
    multi, single = rows["cuped_multi"], rows["cuped"]
    assert abs(multi.coverage - 0.95) <= band, multi
    assert multi.mean_variance_reduction > single.mean_variance_reduction + 0.1, (multi, single)
    assert multi.mean_abs_se < single.mean_abs_se


@pytest.fixture(scope="module")
def demo_world():
    from liftlab.synth import WorldConfig, generate_world

    return generate_world(WorldConfig(n_users=4_000, seed=3))


@pytest.mark.parametrize("experiment", ["checkout_redesign", "onboarding_adaptive"])
def test_pipeline_rows_sit_next_to_cuped_and_are_not_decided_on(demo_world, experiment):
    """The effects asset's cuped_multi rows: the same columns, units and families as the other
    methods, mean metrics only, never the decision estimate; the other rows are unchanged."""
    from liftlab.experiment_stats import daily_statistics, experiment_effects, metric_plan
    from liftlab.specs import load_specs
    from liftlab.stats.regression_adjustment import covariate_plan, experiment_multi_effects
    from liftlab.studies.regression_adjustment import demo_units

    spec = next(item.spec for item in load_specs() if item.spec.id == experiment)
    units = demo_units(demo_world, experiment, spec.pre_period_days)
    table = experiment_effects(daily_statistics(units, spec), spec)
    multi = experiment_multi_effects(units, spec, table)
    assert multi.columns == table.columns and not multi["is_decision_estimate"].any()
    means = {m for m, (_, _, d) in metric_plan(spec).items() if d is None}
    assert set(multi["metric"]) == means and set(multi["method"]) == {"cuped_multi"}
    cuped = table.filter(pl.col("method") == "cuped").select("metric", "variant", "n_baseline", "n_variant", "metric_role")
    joined = multi.join(cuped, on=["metric", "variant"], suffix="_c")
    assert joined.height == multi.height
    assert (joined["n_baseline"] == joined["n_baseline_c"]).all() and (joined["metric_role"] == joined["metric_role_c"]).all()
    assert multi["p_value_adj"].is_not_null().all() and (multi["p_value_adj"] >= multi["p_value"] - 1e-15).all()
    pre, _, categorical = covariate_plan(spec)
    assert spec.pre_period_column(spec.primary_metric) in pre and categorical == list(spec.dimensions)
