"""The vectorised engine: equal to the scalar tests, to scipy and statsmodels; adjusted p and CIs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from liftlab.stats.analysis import compare_arms
from liftlab.stats.cuped import cuped_test, ratio_test
from liftlab.stats.engine import adjust, analyze
from liftlab.stats.moments import JointStats, aggregate_joint
from liftlab.stats.winsorize import pre_period_cap, winsorize


def _frame(seed=1, n=30_000, arms=("control", "a", "b", "c")):
    r = np.random.default_rng(seed)
    v = r.choice(arms, n)
    lift = {a: 0.02 * i for i, a in enumerate(arms)}
    x = r.gamma(2, 2, n)
    y = 0.6 * x + r.normal(0, 2, n) + np.array([lift[a] for a in v])
    s = r.poisson(3, n).astype(float)
    return pl.DataFrame({"variant": v, "day": r.integers(0, 7, n), "y": y, "x": x, "s": s, "rev": y.clip(0) * s})


METRICS = {"y": ("y", "x", None), "rps": ("rev", "x", "s"), "s": ("s", None, None)}


def test_welch_rows_equal_compare_arms_and_cuped_rows_equal_cuped_test():
    df = _frame()
    st = aggregate_joint(df, ["variant"], METRICS)
    out = analyze(st, "control", kinds={"rps": "ratio"}, cuped=["y", "rps"])
    legacy = compare_arms(st.select("variant", "metric", "n", "sum", "sum_sq").filter(pl.col("metric") != "rps"), "control")
    welch = out.filter(pl.col("method") == "welch_t").sort("metric", "variant")
    legacy = legacy.sort("metric", "variant")
    for c in ("abs_effect", "abs_se", "abs_ci_low", "abs_ci_high", "rel_effect", "rel_ci_low", "rel_ci_high", "t_stat", "df", "p_value"):
        np.testing.assert_allclose(welch[c].to_numpy(), legacy[c].to_numpy(), rtol=1e-12, atol=1e-15)
    stats_of = {(r["variant"], r["metric"]): JointStats(**{k: r[k] for k in r if k not in ("variant", "metric")}) for r in st.to_dicts()}
    for row in out.filter(pl.col("method").is_in(["cuped", "delta_method"])).iter_rows(named=True):
        base, var = stats_of[("control", row["metric"])], stats_of[(row["variant"], row["metric"])]
        ref = cuped_test(base, var) if row["method"] == "cuped" else ratio_test(base, var, reference="t")
        for c in ("abs_effect", "abs_se", "p_value", "rel_effect", "rel_se", "abs_ci_low"):
            assert row[c] == pytest.approx(getattr(ref, c), rel=1e-12, abs=1e-15), (row["metric"], c)
    assert set(out["method"]) == {"welch_t", "cuped", "delta_method"}
    assert out.filter(pl.col("metric") == "s", pl.col("method") == "cuped").height == 0


def test_daily_partitions_give_the_same_effects_as_a_single_pass():
    df = _frame(2)
    daily = aggregate_joint(df, ["variant", "day"], METRICS).drop("day")
    single = aggregate_joint(df, ["variant"], METRICS)
    a = analyze(daily, "control", kinds={"rps": "ratio"}, cuped=["y", "rps"]).sort("metric", "variant", "method")
    b = analyze(single, "control", kinds={"rps": "ratio"}, cuped=["y", "rps"]).sort("metric", "variant", "method")
    for c, t in a.schema.items():
        if t == pl.Float64:
            np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=c)


def test_adjusted_p_values_and_cis():
    df = _frame(3)
    st = aggregate_joint(df.with_columns((pl.col("y") * 2).alias("y2"), (pl.col("x") + pl.col("s")).alias("z")), ["variant"],
                         {"y": ("y", None, None), "s": ("s", None, None), "y2": ("y2", None, None), "z": ("z", None, None)})
    roles = {"y": "primary", "s": "secondary", "y2": "secondary", "z": "guardrail"}
    out = adjust(analyze(st, "control"), roles).sort("metric", "variant")
    prim = out.filter(pl.col("metric") == "y")
    np.testing.assert_allclose(prim["p_value_adj"].to_numpy(), multipletests(prim["p_value"].to_numpy(), method="holm")[1], rtol=1e-12)
    sec = out.filter(pl.col("metric_role") == "secondary")
    np.testing.assert_allclose(sec["p_value_adj"].to_numpy(), multipletests(sec["p_value"].to_numpy(), method="fdr_bh")[1], rtol=1e-12)
    # Bonferroni CI of the primary family (3 arms) = scipy's Welch CI at confidence 1 − α/3
    y = df["y"].to_numpy()
    v = df["variant"].to_numpy()
    for row in prim.iter_rows(named=True):
        ci = stats.ttest_ind(y[v == row["variant"]], y[v == "control"], equal_var=False).confidence_interval(1 - 0.05 / 3)
        assert row["alpha_adj"] == pytest.approx(0.05 / 3)
        assert row["abs_ci_low_adj"] == pytest.approx(ci.low, rel=1e-8)
        assert row["abs_ci_high_adj"] == pytest.approx(ci.high, rel=1e-8)
    # FCR-adjusted level for the secondary family: R·α/m (Benjamini & Yekutieli 2005)
    r = int(np.sum(multipletests(sec["p_value"].to_numpy(), alpha=0.05, method="fdr_bh")[0]))
    assert sec["alpha_adj"].unique().to_list() == [pytest.approx(0.05 * max(r, 1) / sec.height)]
    assert (out["abs_ci_high_adj"] - out["abs_ci_low_adj"] >= out["abs_ci_high"] - out["abs_ci_low"] - 1e-12).all()


def test_sequences_split_alpha_over_each_family():
    """The adjusted sequences are the gbstats-formula sequence at the family's Bonferroni level:
    α/3 for a 3-arm primary metric and for each guardrail across its arms."""
    from liftlab.stats.sequential import confidence_sequence

    st = aggregate_joint(_frame(5), ["variant"], {"y": ("y", "x", None), "s": ("s", None, None)})
    out = adjust(analyze(st, "control", cuped=["y"], tau=2_000), {"y": "primary", "s": "guardrail"}, tau=2_000)
    assert set(out["alpha_adj"].round(12).to_list()) == {round(0.05 / 3, 12)}
    n = (out["n_baseline"] + out["n_variant"]).cast(pl.Float64).to_numpy()
    lo, hi = confidence_sequence(out["abs_effect"].to_numpy(), out["abs_se"].to_numpy() ** 2, n, 0.05 / 3, 2_000)
    np.testing.assert_allclose(out["cs_low_adj"].to_numpy(), lo, rtol=1e-13)
    np.testing.assert_allclose(out["cs_high_adj"].to_numpy(), hi, rtol=1e-13)
    rlo, _ = confidence_sequence(out["rel_effect"].to_numpy(), out["rel_se"].to_numpy() ** 2, n, 0.05 / 3, 2_000)
    np.testing.assert_allclose(out["rel_cs_low_adj"].to_numpy(), rlo, rtol=1e-13)
    assert ((out["cs_high_adj"] - out["cs_low_adj"]) > (out["cs_high"] - out["cs_low"])).all()


def test_families_adjusted_at_once_equal_one_by_one():
    """adjust_in_groups (a million simulated families in one sort) = holm / benjamini_hochberg and
    their CI levels family by family, NaN p values (untestable arms) included."""
    from liftlab.stats.multiple_testing import (
        adjust_in_groups, benjamini_hochberg, bonferroni_alpha, fcr_alpha, holm,
    )

    r = np.random.default_rng(8)
    n = 4_000
    groups = r.integers(0, 600, n)
    p = r.uniform(0, 1, n) ** 3
    p[r.uniform(size=n) < 0.05] = np.nan
    p[r.uniform(size=n) < 0.1] = 0.01  # ties
    is_holm = groups % 2 == 0
    adj, level = adjust_in_groups(p, groups, is_holm, 0.05)
    for g in np.unique(groups):
        i = groups == g
        ref = holm(p[i]) if g % 2 == 0 else benjamini_hochberg(p[i])
        ref_level = bonferroni_alpha(int(np.sum(~np.isnan(p[i]))), 0.05) if g % 2 == 0 else fcr_alpha(p[i], 0.05)
        np.testing.assert_allclose(adj[i], ref, rtol=0, atol=1e-15)
        np.testing.assert_allclose(level[i], ref_level, rtol=1e-15)


def test_non_randomized_name_and_errors():
    st = aggregate_joint(_frame(4, arms=("control", "t")), ["variant"], {"y": ("y", "x", None)})
    out = analyze(st, "control", base_method="naive_welch_t")
    assert out["method"].to_list() == ["naive_welch_t"]
    with pytest.raises(ValueError):
        analyze(st, "nope")


def test_winsorize_cap_from_pre_period():
    r = np.random.default_rng(8)
    pre = r.lognormal(2, 1.5, 10_000)
    cap = pre_period_cap(pre, 0.99, scale=2.0)
    assert cap == pytest.approx(2 * np.quantile(pre, 0.99), rel=1e-15)
    y = r.lognormal(2.7, 1.5, 10_000)
    w = winsorize(y, cap)
    assert w.max() == pytest.approx(cap) and np.all(w[y < cap] == y[y < cap])
    assert np.var(w) < np.var(y)
    with pytest.raises(ValueError):
        pre_period_cap(pre, 1.5)


def test_slice_effects_use_bh_across_all_slices_and_merge_to_the_total():
    import datetime as dt

    from liftlab.experiment_stats import slice_effects
    from liftlab.specs import ExperimentSpec

    spec = ExperimentSpec(
        id="seg", hypothesis="h", variants=[{"name": "control", "allocation": 0.5}, {"name": "t", "allocation": 0.5}],
        baseline="control", start_date=dt.date(2026, 9, 1), end_date=dt.date(2026, 9, 28), primary_metric="sessions",
        source={"kind": "demo"}, dimensions=["plan", "device"], slice_min_units=200,
    )
    r = np.random.default_rng(21)
    n = 40_000
    plan = r.choice(["trial", "basic", "pro", "rare"], n, p=[0.33, 0.33, 0.333, 0.007])
    device = r.choice(["desktop", "mobile"], n)
    v = r.choice(["control", "t"], n)
    pre = r.poisson(10, n).astype(float)
    y = r.poisson(0.8 * pre + 2 + 0.6 * ((v == "t") & (plan == "pro"))).astype(float)  # effect only in 'pro'
    units = pl.DataFrame({"unit_id": np.arange(n).astype(str), "variant": v, "day": np.zeros(n, int),
                          "sessions": y, "pre_sessions": pre, "plan": plan, "device": device})
    out = slice_effects(units, spec, caps={})
    assert out.height == 2 * 6  # welch_t + cuped for 6 slices (4 plans, 2 devices)
    rare = out.filter(pl.col("slice") == "rare")
    assert (~rare["estimated"]).all() and rare["p_value"].is_null().all() and (rare["n_baseline"] < 200).all()
    estimated = out.filter(pl.col("estimated"))
    for _, part in estimated.group_by("method"):  # one BH family per metric × method, the small slice left out
        np.testing.assert_allclose(part["p_value_adj"].to_numpy(), multipletests(part["p_value"].to_numpy(), method="fdr_bh")[1], rtol=1e-12)
    by_plan = out.filter(pl.col("dimension") == "plan", pl.col("method") == "welch_t")
    assert by_plan["n_baseline"].sum() == int(np.sum(v == "control"))  # the slices of a dimension add up
    best = out.filter(pl.col("method") == "cuped", pl.col("estimated")).sort("p_value").row(0, named=True)
    assert (best["dimension"], best["slice"]) == ("plan", "pro") and best["p_value_adj"] < 0.05
