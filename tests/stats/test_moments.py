"""JointStats / aggregate_joint / merge_joint: a monoid (hypothesis), bit-deterministic, d ≡ 1 defaults."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftlab.stats.moments import MOMENT_COLUMNS, JointStats, aggregate_joint, centered, merge_joint
from liftlab.stats.sufficient import SampleStats

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
rows = st.lists(st.tuples(finite, finite, st.floats(min_value=0.0, max_value=1e3)), min_size=0, max_size=30)


def _close(a: JointStats, b: JointStats, scale: float) -> None:
    assert a.n == b.n
    for name in MOMENT_COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9 * scale), (name, x, y)


def _stats(part):
    if not part:
        return JointStats.empty()
    y, x, d = map(np.array, zip(*part, strict=True))
    return JointStats.from_values(y, x, d)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(rows, min_size=1, max_size=6))
def test_statistics_of_a_union_are_the_sum_of_the_parts(parts):
    whole = _stats([r for p in parts for r in p])
    summed = sum((_stats(p) for p in parts), JointStats.empty())
    scale = max([1.0] + [abs(v) ** 2 for p in parts for r in p for v in r])
    _close(whole, summed, scale * 30 * 6)


@settings(max_examples=100, deadline=None)
@given(a=rows, b=rows, c=rows)
def test_monoid_laws(a, b, c):
    sa, sb, sc = _stats(a), _stats(b), _stats(c)
    assert sa + JointStats.empty() == sa
    assert sa + sb == sb + sa  # float addition is commutative: exact
    scale = max([1.0] + [abs(v) ** 2 for p in (a, b, c) for r in p for v in r])
    _close((sa + sb) + sc, sa + (sb + sc), scale * 100)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_frame_merge_of_partitions_equals_single_pass(data):
    n = data.draw(st.integers(min_value=1, max_value=200))
    seed = data.draw(st.integers(min_value=0, max_value=2**32 - 1))
    k = data.draw(st.integers(min_value=1, max_value=6))
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({
        "variant": rng.choice(["a", "b", "c"], n), "day": rng.integers(0, 7, n),
        "y": rng.lognormal(1, 1, n) * (rng.random(n) < 0.7), "x": rng.poisson(3, n).astype(float),
        "s": rng.poisson(4, n).astype(float),
    })
    metrics = {"y": ("y", "x", None), "ratio": ("y", "x", "s")}
    whole = aggregate_joint(frame, ["variant"], metrics)
    part_of = rng.integers(0, k, n)
    parts = [aggregate_joint(frame.filter(pl.Series(part_of == i)), ["variant"], metrics) for i in range(k)]
    merged = merge_joint([p for p in parts if p.height], by=["variant"])
    whole = whole.sort("variant", "metric")
    assert merged.select("variant", "metric", "n").equals(whole.select("variant", "metric", "n"))
    for c in MOMENT_COLUMNS:
        np.testing.assert_allclose(merged[c].to_numpy(), whole[c].to_numpy(), rtol=1e-9, atol=1e-9)


def test_daily_partitions_merge_to_the_single_pass_and_reruns_are_bit_identical():
    rng = np.random.default_rng(11)
    n = 50_000
    frame = pl.DataFrame({"variant": rng.choice(["c", "t"], n), "day": rng.integers(0, 28, n),
                          "y": rng.lognormal(2, 1.5, n), "x": rng.lognormal(2, 1.5, n)})
    metrics = {"m": ("y", "x", None)}
    daily = aggregate_joint(frame, ["variant", "day"], metrics)
    assert daily.equals(aggregate_joint(frame, ["variant", "day"], metrics))  # byte-identical rerun
    merged = merge_joint([daily.drop("day")], by=["variant"])
    single = aggregate_joint(frame, ["variant"], metrics)
    for c in MOMENT_COLUMNS:
        np.testing.assert_allclose(merged[c].to_numpy(), single[c].to_numpy(), rtol=1e-12)
    assert merged["n"].to_list() == single["n"].to_list()


def test_mean_metric_defaults_and_legacy_view():
    s = JointStats.from_values([1.0, 2.0, 4.0])
    assert (s.sum_d, s.sum_d_sq, s.sum_yd, s.sum_x) == (3.0, 3.0, 7.0, 0.0)
    assert s.y == SampleStats.from_values([1.0, 2.0, 4.0])
    assert JointStats(3, 7.0, 21.0) == s
    with pytest.raises(ValueError):
        JointStats(-1, 0.0, 0.0)


def test_centered_falls_back_to_exact_arithmetic_under_cancellation():
    from fractions import Fraction

    # constant values around a huge offset: the float formula cancels, the fallback is exact
    x = np.full(1001, 123456.789)
    sab, sa = float(np.sum(x * x)), float(np.sum(x))
    exact = float(Fraction(sab) - Fraction(sa) ** 2 / x.size)
    assert float(centered(sab, sa, sa, x.size)) == exact
    assert (sab - sa * sa / x.size) != exact  # the float formula alone would be wrong here
    rng = np.random.default_rng(3)
    y = rng.normal(5, 2, 1000)
    assert float(centered(np.sum(y * y), np.sum(y), np.sum(y), y.size)) == pytest.approx(np.var(y) * y.size, rel=1e-12)


def test_a_group_has_the_same_bits_alone_inside_a_larger_frame_and_in_any_key_order():
    """What makes day partitions mergeable bit for bit: a group's sums depend only on its rows."""
    rng = np.random.default_rng(3)
    n = 20_000
    frame = pl.DataFrame({
        "variant": rng.choice(["a", "b", "c"], n), "day": rng.integers(0, 9, n),
        "y": rng.exponential(3.3, n), "x": rng.normal(1.7, 2.0, n), "d": rng.poisson(4, n).astype(float),
    }).with_columns(pl.when(pl.int_range(pl.len()) % 97 == 0).then(None).otherwise(pl.col("y")).alias("y"))
    metrics = {"m": ("y", "x", None), "r": ("y", "x", "d")}
    whole = aggregate_joint(frame, ["variant", "day"], metrics)  # unsorted input: sorted stably inside
    grouped = aggregate_joint(frame.sort("variant", "day", maintain_order=True), ["variant", "day"], metrics)
    assert whole.equals(grouped)
    one_day = aggregate_joint(frame.filter(pl.col("day") == 4), ["variant", "day"], metrics)
    assert one_day.equals(whole.filter(pl.col("day") == 4))
    # and the values are the sums they claim to be (nulls excluded per metric)
    part = frame.filter((pl.col("variant") == "b") & (pl.col("day") == 4)).drop_nulls("y")
    ref = JointStats.from_values(part["y"].to_numpy(), part["x"].to_numpy(), part["d"].to_numpy())
    row = whole.filter((pl.col("variant") == "b") & (pl.col("day") == 4) & (pl.col("metric") == "r")).row(0, named=True)
    _close(JointStats(**{k: row[k] for k in ("n", *MOMENT_COLUMNS)}), ref, scale=1.0)
