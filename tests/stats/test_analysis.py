"""compare_arms: frame-level Welch comparisons with Holm across arms."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from liftlab.stats.analysis import RESULT_COLUMNS, compare_arms
from liftlab.stats.multiple_testing import holm
from liftlab.stats.sufficient import SampleStats, aggregate
from liftlab.stats.welch import welch_test


@pytest.fixture(scope="module")
def units() -> pl.DataFrame:
    rng = np.random.default_rng(123)
    n = 30_000
    exp = rng.choice(["exp_a", "exp_b"], n)
    arm = rng.choice(["control", "t1", "t2"], n, p=[0.5, 0.25, 0.25])
    lift = np.where(arm == "t1", 1.0, np.where(arm == "t2", 0.05, 0.0))
    rev = rng.gamma(2.0, 5.0, n) + lift
    conv = (rng.random(n) < 0.1 + lift / 20).astype(float)
    conv[rng.random(n) < 0.01] = np.nan  # missing values → per-metric n
    return pl.DataFrame({"experiment_id": exp, "variant": arm, "revenue": rev, "converted": conv}).with_columns(
        pl.col("converted").fill_nan(None)
    )


def test_shape_columns_and_values(units):
    agg = aggregate(units, ["experiment_id", "variant"], ["revenue", "converted"])
    out = compare_arms(agg, baseline="control")
    assert out.columns == ["experiment_id", *RESULT_COLUMNS]
    assert dict(out.schema) == {"experiment_id": pl.String, **RESULT_COLUMNS}
    assert out.height == 2 * 2 * 2  # experiments × metrics × non-baseline arms
    assert set(out["variant"]) == {"t1", "t2"} and set(out["baseline"]) == {"control"}
    assert out.select("experiment_id", "metric", "variant").rows() == sorted(
        out.select("experiment_id", "metric", "variant").rows()
    )

    for row in out.iter_rows(named=True):
        sel = units.filter(pl.col("experiment_id") == row["experiment_id"])
        x0 = sel.filter(pl.col("variant") == "control")[row["metric"]].drop_nulls().to_numpy()
        x1 = sel.filter(pl.col("variant") == row["variant"])[row["metric"]].drop_nulls().to_numpy()
        assert (row["n_baseline"], row["n_variant"]) == (x0.size, x1.size)
        ref = stats.ttest_ind(x1, x0, equal_var=False)
        ci = ref.confidence_interval()
        assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
        assert row["t_stat"] == pytest.approx(ref.statistic, rel=1e-8)
        assert row["df"] == pytest.approx(ref.df, rel=1e-8)
        assert row["abs_ci_low"] == pytest.approx(ci.low, rel=1e-8)
        assert row["abs_ci_high"] == pytest.approx(ci.high, rel=1e-8)
        assert row["mean_baseline"] == pytest.approx(x0.mean(), rel=1e-12)
        assert row["rel_effect"] == pytest.approx(x1.mean() / x0.mean() - 1, rel=1e-9)
        assert row["method"] == "welch_t"

    # Holm within (experiment, metric) across the two arms.
    for _, grp in out.group_by(["experiment_id", "metric"]):
        np.testing.assert_allclose(grp["p_value_holm"].to_numpy(), holm(grp["p_value"].to_numpy()), atol=1e-15)
    # The real lift in t1 revenue is detected in both experiments.
    assert out.filter((pl.col("variant") == "t1") & (pl.col("metric") == "revenue"))["p_value_holm"].max() < 1e-6


def test_duplicate_partitions_are_merged(units):
    half = units.height // 2
    parts = [aggregate(units[:half], ["variant"], ["revenue"]), aggregate(units[half:], ["variant"], ["revenue"])]
    stacked = pl.concat(parts)  # same (variant, metric) twice: e.g. two daily partitions
    whole = aggregate(units, ["variant"], ["revenue"])
    a = compare_arms(stacked, "control")
    b = compare_arms(whole, "control")
    assert a.columns == b.columns and a.height == b.height == 2
    for col in ("p_value", "abs_effect", "abs_ci_low", "rel_ci_high"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9)


def test_custom_variant_col_alpha_and_explicit_keys():
    rng = np.random.default_rng(8)
    rows = []
    for arm, mu in [("A", 1.0), ("B", 1.2)]:
        s = SampleStats.from_values(rng.normal(mu, 1.0, 500))
        rows.append({"arm": arm, "metric": "m", "n": s.n, "sum": s.sum, "sum_sq": s.sum_sq, "note": "x"})
    frame = pl.DataFrame(rows)
    out = compare_arms(frame, baseline="A", variant_col="arm", alpha=0.1, keys=[])
    assert out.columns == list(RESULT_COLUMNS)
    r = welch_test(
        SampleStats(rows[0]["n"], rows[0]["sum"], rows[0]["sum_sq"]),
        SampleStats(rows[1]["n"], rows[1]["sum"], rows[1]["sum_sq"]),
        alpha=0.1,
    )
    assert out["abs_ci_low"][0] == r.abs_ci_low and out["p_value_holm"][0] == r.p_value  # single arm: Holm = raw


def test_missing_baseline_in_one_group_gives_nan_row_and_typo_raises():
    frame = pl.DataFrame(
        {
            "variant": ["c", "t", "t"],
            "metric": ["m1", "m1", "m2"],
            "n": [100, 100, 100],
            "sum": [50.0, 60.0, 10.0],
            "sum_sq": [40.0, 50.0, 5.0],
        }
    )
    out = compare_arms(frame, "c")
    assert out.height == 2
    m2 = out.filter(pl.col("metric") == "m2").row(0, named=True)
    assert m2["n_baseline"] == 0 and math.isnan(m2["p_value"]) and math.isnan(m2["p_value_holm"])
    assert math.isfinite(out.filter(pl.col("metric") == "m1")["p_value"][0])
    with pytest.raises(ValueError, match="baseline"):
        compare_arms(frame, "control")
    with pytest.raises(ValueError, match="missing"):
        compare_arms(frame.drop("sum_sq"), "c")


def test_only_baseline_gives_empty_frame_with_schema():
    frame = pl.DataFrame({"experiment_id": ["e"], "variant": ["c"], "metric": ["m"], "n": [3], "sum": [3.0], "sum_sq": [5.0]})
    out = compare_arms(frame, "c")
    assert out.height == 0
    assert out.columns == ["experiment_id", *RESULT_COLUMNS]


def test_hillstrom_compare_arms(hillstrom):
    agg = aggregate(hillstrom, ["segment"], ["conversion", "visit", "spend"]).rename({"segment": "variant"})
    out = compare_arms(agg, "No E-Mail")
    mens = {r["metric"]: r for r in out.filter(pl.col("variant") == "Mens E-Mail").iter_rows(named=True)}
    assert abs(mens["conversion"]["abs_effect"] - 0.006805) <= 1e-6
    assert abs(mens["visit"]["abs_effect"] - 0.076590) <= 1e-6
    assert abs(mens["spend"]["abs_effect"] - 0.7698) <= 1e-4
    assert out.height == 6
