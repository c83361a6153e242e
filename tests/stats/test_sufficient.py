"""SampleStats / aggregate: correctness, mergeability (hypothesis), precision bound."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftlab.stats.sufficient import SampleStats, aggregate, merge_aggregates

EPS = np.finfo(np.float64).eps

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
value_lists = st.lists(finite, min_size=0, max_size=40)


def _close_stats(a: SampleStats, b: SampleStats, scale_sum: float, scale_sq: float, rel: float = 1e-9) -> None:
    """Equal n; sums equal within `rel` relative to the magnitude of the summands."""
    assert a.n == b.n
    assert math.isclose(a.sum, b.sum, rel_tol=rel, abs_tol=rel * scale_sum + 1e-300)
    assert math.isclose(a.sum_sq, b.sum_sq, rel_tol=rel, abs_tol=rel * scale_sq + 1e-300)


# --------------------------------------------------------------------------- SampleStats
def test_from_values_moments_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.lognormal(3.0, 1.2, size=5_000)
    s = SampleStats.from_values(x)
    assert s.n == x.size
    assert s.mean == pytest.approx(x.mean(), rel=1e-12)
    assert s.variance == pytest.approx(x.var(ddof=1), rel=1e-10)
    assert s.std == pytest.approx(x.std(ddof=1), rel=1e-10)


def test_small_and_empty_samples_are_nan_not_errors():
    e = SampleStats.empty()
    assert (e.n, e.sum, e.sum_sq) == (0, 0.0, 0.0)
    assert math.isnan(e.mean) and math.isnan(e.variance) and math.isnan(e.std)
    one = SampleStats.from_values([3.0])
    assert one.mean == 3.0 and math.isnan(one.variance)
    assert SampleStats.from_values([np.nan, 2.0, 4.0]).n == 2  # NaN = missing


@pytest.mark.parametrize(("value", "n"), [(0.7, 7), (0.7, 777), (123456.789, 3), (123456.789, 1001), (3.3, 10)])
def test_constant_sample_variance_is_nonnegative_and_negligible(value, n):
    # For these inputs the naive float formula (Σx² − (Σx)²/n)/(n−1) is negative.
    x = np.full(n, value)
    naive = (np.sum(x * x) - np.sum(x) ** 2 / n) / (n - 1)
    assert naive < 0
    v = SampleStats.from_values(x).variance
    assert 0.0 <= v <= 8 * EPS * math.ceil(math.log2(n) + 1) * value**2


def test_negative_n_rejected():
    with pytest.raises(ValueError):
        SampleStats(-1, 0.0, 0.0)


def test_builtin_sum_and_identity():
    parts = [SampleStats.from_values([1.0, 2.0]), SampleStats.from_values([3.0]), SampleStats.empty()]
    assert sum(parts) == SampleStats(3, 6.0, 14.0)
    assert parts[0] + SampleStats.empty() == parts[0]


@pytest.mark.parametrize(
    ("loc", "scale", "n"),
    [(1e6, 1e5, 10_000), (1e6, 1e3, 10_000), (1e6, 10.0, 1_000), (1e9, 1e6, 5_000), (0.0, 1.0, 100_000)],
)
def test_variance_precision_bound_at_large_offsets(loc, scale, n):
    """Relative error of the power-sum variance stays within eps·log2(n)·(1+mean²/var).

    This is the documented bound (module docstring); for CV >= 1e-2 it is
    below 1e-9 whatever the offset, which is what the Welch parity tests at
    values ~1e6 rely on.
    """
    rng = np.random.default_rng(7)
    x = loc + scale * rng.standard_normal(n)
    s = SampleStats.from_values(x)
    ref = float(np.var(x, ddof=1))  # two-pass, accurate
    bound = 8 * EPS * math.ceil(math.log2(n)) * (1 + (x.mean() / x.std()) ** 2)
    assert abs(s.variance - ref) / ref <= bound
    if loc == 0.0 or scale / loc >= 1e-2:
        assert abs(s.variance - ref) / ref < 1e-9


@settings(max_examples=200, deadline=None)
@given(value_lists, value_lists, value_lists)
def test_addition_is_commutative_associative_and_equals_concatenation(a, b, c):
    sa, sb, sc = (SampleStats.from_values(np.array(v, dtype=float)) for v in (a, b, c))
    allv = np.array(a + b + c, dtype=float)
    scale_sum = float(np.sum(np.abs(allv))) if allv.size else 0.0
    scale_sq = float(np.sum(allv * allv)) if allv.size else 0.0

    assert sa + sb == sb + sa  # float addition is commutative: exact
    _close_stats((sa + sb) + sc, sa + (sb + sc), scale_sum, scale_sq)
    _close_stats(sa + sb + sc, SampleStats.from_values(allv), scale_sum, scale_sq)


# --------------------------------------------------------------------------- aggregate
def test_aggregate_long_format_types_nulls_and_order():
    df = pl.DataFrame(
        {
            "exp": ["e1", "e1", "e1", "e1", "e2"],
            "variant": ["a", "a", "b", "b", "a"],
            "rev": [1.0, None, 2.5, float("nan"), 4.0],
            "conv": [1, 0, 1, None, True],
            "flag": [True, False, None, True, True],
        }
    )
    out = aggregate(df, ["exp", "variant"], ["rev", "conv", "flag"])
    assert out.columns == ["exp", "variant", "metric", "n", "sum", "sum_sq"]
    assert out.schema["n"] == pl.Int64 and out.schema["sum"] == pl.Float64 and out.schema["sum_sq"] == pl.Float64
    assert out.select("exp", "variant", "metric").rows() == [
        ("e1", "a", "rev"), ("e1", "a", "conv"), ("e1", "a", "flag"),
        ("e1", "b", "rev"), ("e1", "b", "conv"), ("e1", "b", "flag"),
        ("e2", "a", "rev"), ("e2", "a", "conv"), ("e2", "a", "flag"),
    ]
    got = {(r[0], r[1], r[2]): r[3:] for r in out.rows()}
    assert got[("e1", "a", "rev")] == (1, 1.0, 1.0)  # null excluded
    assert got[("e1", "b", "rev")] == (1, 2.5, 6.25)  # NaN excluded
    assert got[("e1", "a", "conv")] == (2, 1.0, 1.0)
    assert got[("e1", "b", "conv")] == (1, 1.0, 1.0)  # n is per metric
    assert got[("e1", "b", "flag")] == (1, 1.0, 1.0)


def test_aggregate_all_null_group_gives_identity_and_lazy_and_global():
    df = pl.DataFrame({"g": ["x", "x", "y"], "m": [None, None, 2.0]}, schema={"g": pl.String, "m": pl.Float64})
    out = aggregate(df.lazy(), ["g"], ["m"])
    assert out.rows() == [("x", "m", 0, 0.0, 0.0), ("y", "m", 1, 2.0, 4.0)]
    glob = aggregate(df, [], ["m"])
    assert glob.rows() == [("m", 1, 2.0, 4.0)]


def test_aggregate_matches_numpy_per_group():
    rng = np.random.default_rng(3)
    n = 20_000
    df = pl.DataFrame(
        {"arm": rng.choice(["c", "t1", "t2"], n), "y": rng.gamma(2.0, 50.0, n), "z": rng.normal(1e6, 1e4, n)}
    )
    out = aggregate(df, ["arm"], ["y", "z"])
    for arm, metric, cnt, s, q in out.rows():
        x = df.filter(pl.col("arm") == arm)[metric].to_numpy()
        got = SampleStats(cnt, s, q)
        assert cnt == x.size
        assert got.mean == pytest.approx(x.mean(), rel=1e-12)
        assert got.variance == pytest.approx(x.var(ddof=1), rel=1e-9)


def test_aggregate_rejects_bad_arguments():
    df = pl.DataFrame({"g": [1], "m": [1.0]})
    with pytest.raises(ValueError):
        aggregate(df, ["g"], [])
    with pytest.raises(ValueError):
        aggregate(df, ["g"], ["g"])


rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["c", "t", "u"]),
        st.sampled_from([1, 2]),
        st.one_of(st.none(), finite),
        st.one_of(st.none(), st.integers(min_value=-1000, max_value=1000)),
    ),
    min_size=0,
    max_size=60,
)


def _frame(rows):
    return pl.DataFrame(
        rows, schema={"arm": pl.String, "day": pl.Int64, "x": pl.Float64, "k": pl.Int64}, orient="row"
    )


@settings(max_examples=150, deadline=None)
@given(rows_strategy, rows_strategy)
def test_aggregate_of_concat_equals_sum_of_aggregates(rows_a, rows_b):
    by, metrics = ["arm", "day"], ["x", "k"]
    a, b = _frame(rows_a), _frame(rows_b)
    whole = merge_aggregates([aggregate(pl.concat([a, b]), by, metrics)], by)
    merged = merge_aggregates([aggregate(a, by, metrics), aggregate(b, by, metrics)], by)
    assert whole.select(*by, "metric", "n").rows() == merged.select(*by, "metric", "n").rows()
    scale = sum(abs(r[2]) for r in rows_a + rows_b if r[2] is not None) + 1.0
    scale_sq = scale * scale
    for (s1, q1), (s2, q2) in zip(
        whole.select("sum", "sum_sq").rows(), merged.select("sum", "sum_sq").rows(), strict=True
    ):
        assert math.isclose(s1, s2, rel_tol=1e-9, abs_tol=1e-9 * scale)
        assert math.isclose(q1, q2, rel_tol=1e-9, abs_tol=1e-9 * scale_sq)
