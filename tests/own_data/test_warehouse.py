"""A team's own Postgres, end to end: assignments and orders in a database liftlab did not create,
metrics declared once in a catalogue, the whole pipeline — and liftlab's per-arm means of a
count, a sum, an ``any`` and a ratio metric with a 7-day window equal an independent numpy
computation of the same draws to 1e-9, rows exactly on the windows' edges included. The team's
tables are left exactly as they were, and no demo world is ever created."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from liftlab import db
from tests.conftest import drop_database
from tests.own_data.helpers import (
    CATALOGUE, END, KEY, SPEC, START, create_team_database, draw, fingerprint, reference, team_pipeline,
)


@pytest.fixture(scope="module")
def team(server, tmp_path_factory):
    data = draw()
    team_db = create_team_database(server, data)
    before = fingerprint(team_db)
    with team_pipeline(server, tmp_path_factory.mktemp("team"), {KEY: SPEC}, CATALOGUE, team_db, "liftlab_own") as (
            liftlab_db, result):
        yield {"data": data, "ref": reference(data), "team": team_db, "db": liftlab_db, "result": result,
               "before": before, "after": fingerprint(team_db)}
    drop_database(team_db)


def _effects(info, method):
    with db.connect(info) as conn:
        return {(r[0], r[1]): r[2:] for r in conn.execute(
            "select metric, variant, n_baseline, n_variant, mean_baseline, mean_variant from results.effects "
            "where experiment_id = %s and method = %s", (KEY, method)).fetchall()}


def test_per_arm_means_equal_numpy_on_the_same_draws(team):
    units = {u: r for u, r in team["ref"]["units"].items() if r["analysed"]}
    arms = {arm: [r for r in units.values() if r["variant"] == arm] for arm in ("control", "treatment")}
    effects = _effects(team["db"], "welch_t")
    for metric in ("orders_7d", "revenue_7d", "purchased_7d"):
        n0, n1, m0, m1 = effects[(metric, "treatment")]
        assert (n0, n1) == (len(arms["control"]), len(arms["treatment"]))
        for mean, arm in ((m0, "control"), (m1, "treatment")):
            expected = np.mean([r[metric] for r in arms[arm]])
            assert mean == pytest.approx(expected, rel=1e-9, abs=1e-12), (metric, arm)
    n0, n1, m0, m1 = _effects(team["db"], "delta_method")[("aov_7d", "treatment")]
    for mean, arm in ((m0, "control"), (m1, "treatment")):
        rows = arms[arm]
        assert mean == pytest.approx(sum(r["revenue_7d"] for r in rows) / sum(r["orders_7d"] for r in rows), rel=1e-9)
    # the windows' edges were drawn on purpose: rows at first exposure count, at +7 days do not
    assert sum(r["orders_7d"] for r in units.values()) > 0 and team["ref"]["excluded"] == 2


def test_every_unit_and_its_pre_period_twin_match(team):
    with db.connect(team["db"]) as conn:
        rows = conn.execute(f"select unit_id, variant, orders_7d, revenue_7d, purchased_7d, pre_orders_7d, refunds, "
                            f"n_variants from units.{KEY}").fetchall()
    ref = team["ref"]["units"]
    assert {r[0] for r in rows} == set(ref)
    for unit, variant, orders, revenue, purchased, pre, refunds, n_variants in rows:
        expected = ref[unit]
        assert variant == expected["variant"] and (n_variants == 1) == expected["analysed"]
        assert (orders, purchased, pre, refunds) == (expected["orders_7d"], expected["purchased_7d"],
                                                     expected["pre_orders_7d"], expected["refunds"])
        assert revenue == pytest.approx(expected["revenue_7d"], rel=1e-12, abs=1e-9)


def test_the_team_database_is_only_read_and_no_demo_world_exists(team):
    assert team["after"] == team["before"]
    with db.connect(team["db"]) as conn:
        assert conn.execute("select to_regclass('raw.events'), to_regclass('raw.users'), to_regclass('marts.fct_user_daily')"
                            ).fetchone() == (None, None, None)
        decision = conn.execute("select decision from results.decisions where experiment_id = %s", (KEY,)).fetchone()
    assert decision is not None and team["result"].failed == {}


def test_slices_come_from_assignment_and_unit_table_columns(team):
    with db.connect(team["db"]) as conn:
        rows = conn.execute("select dimension, slice, estimated, n_baseline + n_variant from results.slice_effects "
                            "where experiment_id = %s and metric = 'orders_7d' and method = 'welch_t'", (KEY,)).fetchall()
    assert {r[0] for r in rows} == {"country", "plan"}
    analysed = sum(r["analysed"] for r in team["ref"]["units"].values())
    for dimension in ("country", "plan"):
        assert sum(r[3] for r in rows if r[0] == dimension) == analysed  # the slices of a dimension add up


def test_the_last_daily_look_equals_the_final_effects(team):
    """Windowed metrics enter the looks when their window completes, so the looks run past the end
    date until the last window closes — and the last look is the final analysis."""
    with db.connect(team["db"]) as conn:
        last, n_looks = conn.execute("select max(look_date), count(distinct look_date) from results.daily_looks "
                                     "where experiment_id = %s", (KEY,)).fetchone()
        rows = conn.execute(
            "select l.metric, l.variant, l.method, l.n_baseline = e.n_baseline and l.n_variant = e.n_variant, "
            "abs(l.abs_effect - e.abs_effect) <= 1e-9 * greatest(abs(e.abs_effect), 1e-12) "
            "from results.daily_looks l join results.effects e using (experiment_id, metric, variant, method) "
            "where l.experiment_id = %s and l.look_date = %s", (KEY, last)).fetchall()
    assert END < last <= END + dt.timedelta(days=7) and n_looks == (last - START).days + 1
    assert {r[0] for r in rows} == {"orders_7d", "revenue_7d", "purchased_7d", "aov_7d", "refunds"}  # not the quantile
    assert all(r[3] and r[4] for r in rows), rows


def test_a_quantile_metric_pools_the_rows_of_each_arm(team):
    """p90 of paid order amounts in the 7-day windows: the rows the SQL selects are the numpy
    reference's rows (same quantile, same clustered CI), and the effect row is the difference."""
    from liftlab.stats.quantile import quantile_effect, quantile_stats

    rows = team["ref"]["p90_rows"]
    arms = {}
    for arm in ("control", "treatment"):
        units = [(u, x) for u, (v, xs) in rows.items() if v == arm for x in xs]
        arms[arm] = quantile_stats(np.array([x for _, x in units]), np.array([u for u, _ in units]), 0.9)
    expected = quantile_effect(arms["control"], arms["treatment"])
    with db.connect(team["db"]) as conn:
        row = conn.execute("select mean_baseline, mean_variant, abs_effect, abs_se, p_value, metric_kind, n_variant "
                           "from results.effects where experiment_id = %s and metric = 'p90_amount_7d'", (KEY,)).fetchone()
    assert row[:5] == pytest.approx((expected.control_quantile, expected.treatment_quantile, expected.abs_effect,
                                     expected.abs_se, expected.p_value), rel=1e-12)
    assert row[5] == "quantile" and row[6] == arms["treatment"].n_units
