"""The statistics engine inside the asset graph: daily partitions, CUPED, ratio metric, power.

Reads the session's built world (20k users, ``tests.conftest.built``) in a copy of its own (some
tests rewrite day partitions) and checks the published tables against independent computations
on the unit tables.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from liftlab import db
from liftlab.experiment_stats import experiment_effects, metric_plan, unit_columns
from liftlab.specs import load_specs
from liftlab.stats.cuped import ratio_test
from liftlab.stats.moments import MOMENT_COLUMNS, JointStats, aggregate_joint
from liftlab.units import analysis_frame, quantile_rows
SPECS = {item.spec.id: item.spec for item in load_specs()}


@pytest.fixture(scope="module")
def info(built_copy):
    return built_copy


def _read(info, query, params=()):
    with db.connect(info) as conn:
        return db.read_frame(conn, query, params)


def test_cuped_on_the_primary_metric_reduces_variance_by_rho_squared(info):
    """aa_check's primary metric (sessions) with its own pre-period value: 1 − V_cuped/V ≈ ρ²."""
    row = _read(info, "select * from results.effects where experiment_id = 'aa_check' and metric = 'sessions' and method = 'cuped'")
    assert row.height == 1
    r = _read(info, "select corr(sessions, pre_sessions) as r from units.aa_check where n_variants = 1")["r"][0]
    rho2 = r * r
    vr = row["variance_reduction"][0]
    assert rho2 > 0.3  # a strong covariate in this world
    assert vr >= rho2 - 0.02 and abs(vr - rho2) <= 0.02, (vr, rho2)
    welch = _read(info, "select abs_se from results.effects where experiment_id = 'aa_check' and metric = 'sessions' and method = 'welch_t'")
    assert row["abs_se"][0] ** 2 == pytest.approx((1 - vr) * welch["abs_se"][0] ** 2, rel=1e-9)


def test_cuped_rows_only_where_a_pre_period_value_exists_and_only_for_randomized_designs(info):
    methods = _read(info, "select experiment_id, metric, method from results.effects")
    cuped = methods.filter(pl.col("method") == "cuped")
    assert set(cuped["experiment_id"]) == {"onboarding_adaptive", "aa_check", "winback_email"}  # randomized, catalogue
    for exp in cuped["experiment_id"].unique():
        plan = metric_plan(SPECS[exp])
        assert set(cuped.filter(pl.col("experiment_id") == exp)["metric"]) == {m for m, (_, x, _) in plan.items() if x}


def test_merged_daily_statistics_equal_a_single_pass_over_all_days(info):
    for exp in ("aa_check", "onboarding_adaptive", "hillstrom"):
        spec = SPECS[exp]
        with db.connect(info) as conn:
            units = analysis_frame(conn, spec, unit_columns(spec))
        single = aggregate_joint(units, ["variant"], metric_plan(spec)).sort("variant", "metric")
        daily = _read(info, "select * from results.daily_stats where experiment_id = %s", (exp,))
        if exp != "hillstrom":
            assert daily["day"].n_unique() > 1  # several exposure days really were merged
        summed = daily.group_by("variant", "metric").agg(pl.col("n").sum(), *[pl.col(c).sum() for c in MOMENT_COLUMNS]).sort("variant", "metric")
        stored = _read(info, "select * from results.sufficient_stats where experiment_id = %s order by variant, metric", (exp,))
        for frame in (summed, stored):
            assert frame["n"].to_list() == single["n"].to_list()
            for c in MOMENT_COLUMNS:
                np.testing.assert_allclose(frame[c].to_numpy(), single[c].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=c)
        # and the effects from the single pass equal the published ones
        with db.connect(info) as conn:
            quantiles = quantile_rows(conn, spec)
        mine = experiment_effects(single.with_columns(pl.lit(None, dtype=pl.Date).alias("day")), spec,
                                  quantile_rows=quantiles).sort("metric", "variant", "method")
        # cuped_multi rows come from unit-level covariates, not from these statistics (tested in
        # tests/stats/test_regression_adjustment.py)
        published = _read(info, "select * from results.effects where experiment_id = %s and method <> 'cuped_multi' "
                                "order by metric, variant, method", (exp,))
        assert mine.height == published.height
        for c in ("abs_effect", "abs_se", "p_value", "p_value_adj", "rel_ci_low", "cs_low", "chance_to_win", "abs_ci_high_adj"):
            a, b = mine[c].to_numpy().astype(float), published[c].cast(pl.Float64).to_numpy()
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{exp}.{c}")


def test_ratio_metric_revenue_per_session_end_to_end(info):
    units = _read(info, "select variant, revenue, sessions from units.onboarding_adaptive where n_variants = 1")
    arms = {v: JointStats.from_values(g["revenue"].to_numpy(), d=g["sessions"].cast(pl.Float64).to_numpy())
            for (v,), g in units.group_by("variant")}
    rows = _read(info, "select * from results.effects where experiment_id = 'onboarding_adaptive' and metric = 'revenue_per_session'")
    assert set(rows["method"]) == {"delta_method", "cuped"}
    assert set(rows["metric_kind"]) == {"ratio"}
    for row in rows.filter(pl.col("method") == "delta_method").iter_rows(named=True):
        ref = ratio_test(arms["control"], arms[row["variant"]], reference="t")
        assert row["mean_baseline"] == pytest.approx(arms["control"].sum / arms["control"].sum_d, rel=1e-12)
        assert row["abs_effect"] == pytest.approx(ref.abs_effect, rel=1e-9)
        assert row["abs_se"] == pytest.approx(ref.abs_se, rel=1e-9)
        assert row["p_value"] == pytest.approx(ref.p_value, rel=1e-9, abs=1e-15)


def test_published_columns_are_consistent(info):
    eff = _read(info, "select * from results.effects")
    ok = eff.filter(pl.col("abs_se").is_not_nan())
    assert (ok["cs_low"] <= ok["abs_effect"]).all() and (ok["abs_effect"] <= ok["cs_high"]).all()
    assert (ok["cs_high"] - ok["cs_low"] > ok["abs_ci_high"] - ok["abs_ci_low"]).all()  # the CS is wider
    assert (ok["abs_ci_high_adj"] - ok["abs_ci_low_adj"] >= ok["abs_ci_high"] - ok["abs_ci_low"] - 1e-12).all()
    # the adjusted p-values are statsmodels' over each family (an independent implementation):
    # Holm for the primary metric across arms and for each guardrail, BH over all secondary rows
    from statsmodels.stats.multitest import multipletests

    fam = ok.with_columns(pl.when(pl.col("metric_role") == "secondary").then(pl.lit("secondary"))
                          .otherwise(pl.col("metric")).alias("family"))
    checked = 0
    for (_, _, role, _), part in fam.group_by("experiment_id", "method", "metric_role", "family"):
        expected = multipletests(part["p_value"].to_numpy(), method="fdr_bh" if role == "secondary" else "holm")[1]
        np.testing.assert_allclose(part["p_value_adj"].to_numpy(), expected, rtol=1e-12, atol=1e-15)
        checked += part.height
    assert checked == ok.height and ok.filter(pl.col("metric_role") == "secondary").height > 5


def test_power_table(info):
    power = _read(info, "select * from results.power")
    assert set(power["experiment_id"]) == set(SPECS) - {"checkout_redesign"}  # halted: nothing downstream
    aa = power.filter(pl.col("experiment_id") == "aa_check", pl.col("method") == "welch_t").row(0, named=True)
    assert aa["mde_rel"] == 0.02 and math.isfinite(aa["n_required_per_arm"]) and aa["n_required_per_arm"] > 0
    assert 0 < aa["power_at_mde"] < 1 and aa["days_elapsed"] == 7 and aa["days_needed"] >= 0
    cup = power.filter(pl.col("experiment_id") == "aa_check", pl.col("method") == "cuped").row(0, named=True)
    assert cup["n_required_per_arm"] < aa["n_required_per_arm"]  # CUPED needs fewer units
    from liftlab.stats.power import power_at

    se = aa["sd_unit"] * math.sqrt(1 / aa["n_baseline"] + 1 / aa["n_variant"])
    assert aa["power_at_mde"] == pytest.approx(float(power_at(aa["mde_abs"], se, aa["alpha_per_arm"])), rel=1e-9)


def test_day_partitions_in_parallel_runs_equal_one_run_over_the_range(info):
    """Scale-out: each day partition in its own run, two processes at once, writes exactly the
    rows the pipeline's single run over the whole range wrote (bit-identical sums)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tests.pipeline_helpers import run_day_partitions, table_fingerprint

    with db.connect(info) as conn:
        single = table_fingerprint(conn, "results.daily_stats")
        days = [str(day) for (day,) in conn.execute(
            "select distinct day from results.daily_stats where day is not null order by 1").fetchall()]
        conn.execute("delete from results.daily_stats where day is not null")
        conn.commit()
    assert len(days) >= 7
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        spans = list(pool.map(run_day_partitions, [info.url()] * 2, [days[0::2], days[1::2]]))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1  # the two processes really ran at the same time
    with db.connect(info) as conn:
        assert table_fingerprint(conn, "results.daily_stats") == single


def test_a_missing_day_partition_fails_the_analysis_with_the_day_named(info):
    import dagster as dg

    from liftlab.defs.resources import PostgresResource
    from liftlab.pipeline import definitions_with
    from tests.pipeline_helpers import run_day_partitions

    with db.connect(info) as conn:
        conn.execute("delete from results.daily_stats where experiment_id = 'aa_check' and day = '2026-09-03'")
        conn.commit()
    defs = definitions_with({"postgres": PostgresResource(database_url=info.url())})
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("experiment", ["aa_check"])
        result = defs.resolve_job_def("analyse_experiment").execute_in_process(
            instance=instance, partition_key="aa_check", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "results.daily_stats does not match the units of 1 exposure day(s): 2026-09-03 (0 of" in message
    run_day_partitions(info.url(), ["2026-09-03"])  # restore for the other tests


def test_daily_looks_grow_day_by_day_and_end_at_the_final_effects(info):
    looks = _read(info, "select * from results.daily_looks order by experiment_id, metric, variant, method, look_date")
    effects = _read(info, "select * from results.effects")
    event_specs = {i for i, s in SPECS.items() if s.source.kind == "demo"}
    analysed = set(effects["experiment_id"])
    assert set(looks["experiment_id"]) == event_specs & analysed and "hillstrom" not in set(looks["experiment_id"])
    for (exp, metric, variant, method), part in looks.group_by(["experiment_id", "metric", "variant", "method"]):
        spec = SPECS[exp]
        assert part["look_date"].to_list() == sorted(part["look_date"].to_list())
        assert part["look_date"].min() == spec.start_date and part["look_date"].max() == spec.end_date
        assert (part["n_variant"].diff().drop_nulls() >= 0).all()  # units only ever join
        final = effects.filter(pl.col("experiment_id") == exp, pl.col("metric") == metric, pl.col("variant") == variant,
                               pl.col("method") == method)
        last = part.filter(pl.col("look_date") == spec.end_date)
        assert final.height == 1 and last.height == 1, (exp, metric, variant, method)
        assert last["n_baseline"][0] == final["n_baseline"][0] and last["n_variant"][0] == final["n_variant"][0]
        for c in ("abs_effect", "abs_se", "cs_low", "cs_high", "rel_effect"):
            assert last[c][0] == pytest.approx(final[c][0], rel=1e-9, abs=1e-12), (exp, metric, variant, method, c)
    ok = looks.filter(pl.col("abs_se").is_not_nan())
    assert ((ok["cs_high"] - ok["cs_low"]) > (ok["abs_ci_high"] - ok["abs_ci_low"])).all()


def test_the_last_look_check_fails_when_a_look_disagrees_with_the_effects():
    from liftlab.defs.effects import _compare_last_look

    last = pl.DataFrame({"metric": ["m"], "variant": ["b"], "method": ["welch_t"], "n_baseline": [10], "n_variant": [11],
                         "abs_effect": [0.5], "cs_low": [-1.0], "cs_high": [2.0]})
    assert _compare_last_look(last, last).passed
    assert not _compare_last_look(last, last.with_columns(pl.col("abs_effect") * (1 + 1e-6))).passed
    assert not _compare_last_look(last, last.with_columns(pl.col("n_variant") + 1)).passed
    assert not _compare_last_look(last, last.with_columns(pl.lit("cuped").alias("method"))).passed
