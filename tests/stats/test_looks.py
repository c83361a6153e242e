"""Daily looks (liftlab.stats.looks) against a brute-force recomputation of every look."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from liftlab.stats.looks import OutcomeRule, look_statistics, running_values
from liftlab.stats.moments import MOMENT_COLUMNS, JointStats

START = dt.date(2026, 9, 1)
RULES = {
    "sessions": OutcomeRule("sessions_daily"),
    "revenue": OutcomeRule("revenue_daily"),
    "converted": OutcomeRule("upgrades_daily", "any"),
    "active_days": OutcomeRule("sessions_daily", "count_days"),
}
PLAN = {
    "sessions": ("sessions", "pre_sessions", None),
    "converted": ("converted", None, None),
    "active_days": ("active_days", None, None),
    "revenue_per_session": ("revenue", "pre_sessions", "sessions"),
}


def _world(seed: int, n_units: int = 300, days: int = 10):
    rng = np.random.default_rng(seed)
    exposure = rng.integers(0, days + 2, n_units)  # some exposed after the last look
    units = pl.DataFrame({
        "unit_id": [f"u{i:04d}" for i in range(n_units)],
        "variant": rng.choice(["control", "b", "c"], n_units).tolist(),
        "day": [START + dt.timedelta(days=int(e)) for e in exposure],
        "pre_sessions": rng.poisson(3, n_units) + rng.random(n_units),
    })
    rows = []
    for i in range(n_units):
        active = np.flatnonzero(rng.random(days + 2) < 0.4)
        for d in active[active >= exposure[i]]:
            rows.append((f"u{i:04d}", START + dt.timedelta(days=int(d)), float(rng.poisson(2)),
                         float(rng.exponential(5) * (rng.random() < 0.3)), float(rng.random() < 0.05)))
    activity = pl.DataFrame(rows, schema=["unit_id", "day", "sessions_daily", "revenue_daily", "upgrades_daily"], orient="row")
    # shuffled: the function must not rely on the input order
    return units, activity.sample(fraction=1.0, shuffle=True, seed=seed)


def _brute_force(units, activity, look, caps):
    """Every unit's outcome over [exposure, look] recomputed from scratch, then moments per arm."""
    seen = units.filter(pl.col("day") <= look)
    upto = activity.filter(pl.col("day") <= look).group_by("unit_id").agg(
        pl.col("sessions_daily").sum().alias("sessions"), pl.col("revenue_daily").sum().alias("revenue"),
        (pl.col("upgrades_daily").sum() > 0).cast(pl.Float64).alias("converted"),
        (pl.col("sessions_daily") > 0).sum().cast(pl.Float64).alias("active_days"))
    frame = seen.join(upto, on="unit_id", how="left").fill_null(0.0)
    for outcome, cap in caps.items():
        frame = frame.with_columns(pl.col(outcome).clip(upper_bound=cap))
    out = {}
    for (variant,), part in frame.group_by("variant"):
        for metric, (y, x, d) in PLAN.items():
            out[(variant, metric)] = JointStats.from_values(
                part[y].to_numpy(), None if x is None else part[x].to_numpy(), None if d is None else part[d].to_numpy())
    return out


@pytest.mark.parametrize("seed,caps", [(1, {}), (2, {"sessions": 9.0, "revenue": 20.0}), (3, {})])
def test_every_look_equals_a_recomputation_from_scratch(seed, caps):
    units, activity = _world(seed)
    look_days = [START + dt.timedelta(days=i) for i in range(10)]
    stats = look_statistics(units, running_values(activity, RULES), PLAN, look_days, caps)
    assert stats.height == len(look_days) * 3 * len(PLAN)
    for look in (look_days[0], look_days[4], look_days[-1]):
        expected = _brute_force(units, activity, look, caps)
        got = stats.filter(pl.col("look_date") == look)
        for row in got.iter_rows(named=True):
            ref = expected.get((row["variant"], row["metric"]), JointStats.empty())
            assert row["n"] == ref.n
            for column in MOMENT_COLUMNS:
                assert row[column] == pytest.approx(getattr(ref, column), rel=1e-12, abs=1e-9), (look, row["metric"], column)


def test_the_result_does_not_depend_on_the_row_order():
    units, activity = _world(7)
    look_days = [START + dt.timedelta(days=i) for i in range(10)]
    a = look_statistics(units, running_values(activity, RULES), PLAN, look_days)
    b = look_statistics(units.reverse(), running_values(activity.reverse(), RULES), PLAN, look_days)
    assert a.equals(b)  # bit-identical


def test_unknown_outcome_kind_is_refused():
    with pytest.raises(ValueError, match="unknown outcome kind"):
        OutcomeRule("x", "median")


def test_batches_of_units_add_up_to_the_whole():
    from liftlab.stats.looks import add_sums, cumulate_looks, look_sums

    units, activity = _world(11)
    look_days = [START + dt.timedelta(days=i) for i in range(10)]
    arms = sorted(units["variant"].unique().to_list())
    whole = look_statistics(units, running_values(activity, RULES), PLAN, look_days)
    sums = {}
    for part in units.sort("unit_id").iter_slices(97):
        mine = activity.join(part.select("unit_id"), on="unit_id", how="semi")
        sums = add_sums(sums, look_sums(part, running_values(mine, RULES), PLAN, arms, look_days))
    batched = cumulate_looks(sums, arms, look_days)
    assert batched["n"].to_list() == whole["n"].to_list()
    for column in MOMENT_COLUMNS:
        np.testing.assert_allclose(batched[column].to_numpy(), whole[column].to_numpy(), rtol=1e-12, atol=1e-9)
