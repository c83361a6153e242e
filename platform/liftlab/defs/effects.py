"""Effect layer: daily sufficient statistics (polars), effects (Welch / delta method, CUPED,
confidence sequences, Bayesian summary, adjusted p values and CIs) and power, per experiment."""


from datetime import date, timedelta

import dagster as dg
import polars as pl

from liftlab.db import Between, read_frame, replace_slice
from liftlab.defs.common import OWNER, io_retry, markdown_table, spec_for_partition
from liftlab.defs.gates import srm_gate
from liftlab.defs.partitions import day_partitions, experiment_partitions
from liftlab.defs.resources import PostgresResource

STATS_COLUMNS = ["experiment_id", "variant", "metric", "n", "sum", "sum_sq"]
MOMENTS = ["sum", "sum_sq", "sum_x", "sum_x_sq", "sum_xy", "sum_d", "sum_d_sq", "sum_yd", "sum_xd"]
#: Units per batch of the daily looks (their activity rows are read and reduced a batch at a time).
LOOK_BATCH_UNITS = 200_000
DAILY_COLUMNS = ["experiment_id", "variant", "metric", "day", "n", *MOMENTS, "run_id"]


def _cohort_days(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """First and last day (inclusive) of the partition or partition range being materialized."""
    window = context.partition_time_window
    return window.start.date(), window.end.date() - timedelta(days=1)


def event_specs_overlapping(first: date, last: date) -> list:
    """Specs on the event stream whose window [start_date, end_date] meets [first, last]."""
    from liftlab.specs import load_specs

    return [
        item.spec for item in load_specs()
        if item.spec.source.kind == "events"
        and (item.spec.start_date is None or item.spec.start_date <= last)
        and (item.spec.end_date is None or item.spec.end_date >= first)
    ]


@dg.asset(
    key=["results", "daily_stats"],
    partitions_def=day_partitions,
    # a backfill from the UI runs a week of days per run, several runs at once (run coordinator);
    # the pipeline and the daily chain run the whole range as one run (range tags)
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=7),
    deps=[["marts", "fct_unit_metrics"], ["marts", "fct_exposures"], ["raw", "experiment_specs"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    retry_policy=io_retry,
    description="Per UTC day: the joint sufficient statistics (n, Σy, Σy², Σx, Σx², Σxy, Σd, Σd², Σyd, Σxd) "
    "of the units first exposed that day, per experiment on the event stream × variant × metric "
    "(results.daily_stats). Days are independent — a day's rows depend only on its own cohort (and on "
    "winsorization caps fixed from every unit's pre-period) — so they can run as separate runs, in "
    "parallel (a UI backfill runs a week per run), or as one run over a range, with bit-identical rows; the "
    "experiment's statistics are their sum.",
)
def daily_stats(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.experiment_stats import daily_statistics, unit_columns, winsorize_caps
    from liftlab.units import analysis_frame

    first, last = _cohort_days(context)
    written: dict[str, int] = {}
    with postgres.connect() as conn:
        # one transaction per experiment, holding its lock only while its rows are replaced
        for spec in event_specs_overlapping(first, last):
            caps = {}
            if spec.winsorize:
                caps = winsorize_caps(analysis_frame(conn, spec, [spec.pre_period_column(m) for m in spec.winsorize]), spec)
            units = analysis_frame(conn, spec, unit_columns(spec), days=(first, last))
            daily = daily_statistics(units, spec, caps).with_columns(
                pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id")
            )
            replace_slice(conn, "results.daily_stats", daily.select(DAILY_COLUMNS),
                          where={"experiment_id": spec.id, "day": Between(first, last)},
                          lock_key=f"results.daily_stats|{spec.id}")
            conn.commit()  # end the implicit transaction of the reads too: release the lock now
            written[spec.id] = units.height
    return dg.MaterializeResult(
        metadata={
            "days": f"{first} … {last}" if first != last else str(first),
            "dagster/row_count": sum(written.values()),
            "units_by_experiment": dg.MetadataValue.json(written),
        }
    )


@dg.asset(
    retry_policy=io_retry,
    key=["results", "sufficient_stats"],
    partitions_def=experiment_partitions,
    deps=[srm_gate, dg.AssetDep(daily_stats, partition_mapping=dg.AllPartitionMapping()),
          ["marts", "fct_unit_metrics"], ["raw", "user_files"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    description="The experiment's joint sufficient statistics per variant × metric: the sum of its daily "
    "cohorts in results.daily_stats (event stream; the sum is checked against the units of every "
    "exposure day, so a missing or stale day fails loudly), or aggregated from the declared file's rows "
    "(file source, one partition with a null day). Sums use numpy.bincount in row order, so reruns are "
    "bit-identical.",
)
def sufficient_stats(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.experiment_stats import daily_statistics, merge_days, unit_columns
    from liftlab.units import analysis_frame

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        if spec.source.kind == "events":
            daily = read_frame(
                conn,
                "select variant, metric, day, n, " + ", ".join(MOMENTS) + " from results.daily_stats "
                "where experiment_id = %s order by variant, metric, day",
                (spec.id,),
            )
            check_cohorts_complete(conn, spec, daily)
            units = int(daily.filter(pl.col("metric") == spec.primary_metric)["n"].sum()) if not daily.is_empty() else 0
        else:
            frame = analysis_frame(conn, spec, unit_columns(spec))
            units = frame.height
            daily = daily_statistics(frame, spec)
        daily = daily.with_columns(pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id"))
        merged = merge_days(daily).with_columns(pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id"))
        with conn.transaction():
            if spec.source.kind != "events":
                replace_slice(conn, "results.daily_stats", daily.select(DAILY_COLUMNS), where={"experiment_id": spec.id},
                              lock_key=f"results.daily_stats|{spec.id}")
            replace_slice(conn, "results.sufficient_stats", merged.select("experiment_id", "variant", "metric", "n", *MOMENTS, "run_id"),
                          where={"experiment_id": spec.id})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": merged.height, "daily_rows": daily.height, "units": units,
            "preview": dg.MetadataValue.md(markdown_table(merged.select(STATS_COLUMNS))),
        }
    )


def check_cohorts_complete(conn, spec, daily: pl.DataFrame) -> None:
    """Fail unless results.daily_stats holds exactly the analysed units of every exposure day.

    Catches a day partition that was never materialized, or one computed before the marts were
    rebuilt, before a wrong total reaches the effects.
    """
    expected = read_frame(
        conn,
        "select m.exposure_date as day, count(*)::bigint as units from marts.fct_unit_metrics m "
        "join marts.fct_exposures e on e.experiment_id = m.experiment_id and e.user_id = m.user_id "
        "where m.experiment_id = %s and e.n_variants = 1 group by 1",
        (spec.id,),
    )
    have = (daily.filter(pl.col("metric") == spec.primary_metric).group_by("day").agg(pl.col("n").sum().alias("stored"))
            if not daily.is_empty() else pl.DataFrame(schema={"day": pl.Date, "stored": pl.Int64}))
    if expected.is_empty():
        return
    cmp = expected.with_columns(pl.col("day").cast(pl.Date)).join(have.with_columns(pl.col("day").cast(pl.Date)), on="day", how="full", coalesce=True)
    bad = cmp.filter(pl.col("units").fill_null(0) != pl.col("stored").fill_null(0)).sort("day")
    if not bad.is_empty():
        days = ", ".join(f"{r['day']} ({r['stored'] or 0} of {r['units'] or 0} units)" for r in bad.head(5).iter_rows(named=True))
        raise dg.Failure(
            description=f"{spec.id}: results.daily_stats does not match the units of {bad.height} exposure day(s): {days}. "
            f"Materialize results/daily_stats for those days (partitions start on {day_partitions.start.date()}, "
            "LIFTLAB_FIRST_DAY) after the marts are built.",
            allow_retries=False,  # the days must be materialized: a retry cannot fix it
        )


@dg.asset(
    retry_policy=io_retry,
    key=["results", "effects"],
    partitions_def=experiment_partitions,
    deps=[sufficient_stats],
    group_name="effects",
    kinds={"python", "postgres"},
    owners=[OWNER],
    description="Effect of every arm vs the baseline per metric and method, from the merged daily "
    "statistics: Welch t (means) or delta method (ratios), and CUPED (method 'cuped', pooled θ, with "
    "the variance reduction achieved); relative lifts with delta-method CIs; always-valid confidence "
    "sequences (cs_low/cs_high); chance to beat control and expected loss; p values and CIs adjusted "
    "by Holm (primary, across arms) and Benjamini–Hochberg (secondary metrics) next to the raw ones.",
)
def effects(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.experiment_stats import EFFECT_COLUMNS, experiment_effects

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        daily = read_frame(
            conn,
            "select variant, metric, day, n, " + ", ".join(MOMENTS) + " from results.daily_stats "
            "where experiment_id = %s order by variant, metric, day nulls last",
            (spec.id,),
        )
        table = experiment_effects(daily, spec).with_columns(pl.lit(context.run_id).alias("run_id"))
        # cuped rows before welch_t / delta_method rows of the same metric and variant
        table = table.sort("metric", "variant", pl.col("method") != "cuped").select(EFFECT_COLUMNS)
        replace_slice(conn, "results.effects", table, where={"experiment_id": spec.id})
    preview = table.select("metric", "variant", "method", "abs_effect", "rel_effect", "p_value", "p_value_adj", "cs_low", "cs_high", "variance_reduction")
    return dg.MaterializeResult(metadata={"dagster/row_count": table.height, "preview": dg.MetadataValue.md(markdown_table(preview))})


@dg.asset(
    retry_policy=io_retry,
    key=["results", "power"],
    partitions_def=experiment_partitions,
    deps=[effects],
    group_name="effects",
    kinds={"python", "postgres"},
    owners=[OWNER],
    description="Power planning for the primary metric: units per arm needed for the spec's MDE, "
    "power at the MDE and the MDE at the current sample, days still needed at the current traffic.",
)
def power(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.experiment_stats import power_table

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        eff = read_frame(conn, "select * from results.effects where experiment_id = %s and metric = %s order by variant, method",
                         (spec.id, spec.primary_metric))
        days = read_frame(conn, "select distinct day from results.daily_stats where experiment_id = %s order by day", (spec.id,))
        days = days.with_columns(pl.col("day").cast(pl.Date)) if not days.is_empty() else pl.DataFrame(schema={"day": pl.Date})
        table = power_table(eff, days, spec).with_columns(pl.lit(context.run_id).alias("run_id"))
        replace_slice(conn, "results.power", table, where={"experiment_id": spec.id})
    return dg.MaterializeResult(metadata={"dagster/row_count": table.height, "preview": dg.MetadataValue.md(markdown_table(table.drop("run_id")))})


@dg.asset(
    retry_policy=io_retry,
    key=["results", "daily_looks"],
    partitions_def=experiment_partitions,
    deps=[effects, ["marts", "fct_user_daily"], ["marts", "fct_exposures"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    check_specs=[dg.AssetCheckSpec(
        "last_look_equals_final_effects", asset=["results", "daily_looks"],
        description="The look on the last day reproduces results.effects (units per arm exactly, estimates and "
        "bounds to 1e-9): the day-by-day accumulation and the final statistics describe the same data.",
    )],
    description="The effect of every metric × arm as it stood at the end of each day of the experiment "
    "(units exposed by that day, outcomes accumulated up to it) with its 95 % CI and the always-valid "
    "confidence sequence: the cumulative-effect plot, and the day the sequential bound first excluded 0. "
    "Experiments on the event stream only (a file source has no days).",
)
def daily_looks(context: dg.AssetExecutionContext, postgres: PostgresResource):
    from liftlab.decide import preferred_method
    from liftlab.experiment_stats import (
        LOOK_COLUMNS, daily_look_statistics, look_days, look_effects, metric_plan, winsorize_caps,
    )
    from liftlab.reports.plots import cumulative_effect_plot, data_uri
    from liftlab.units import EVENT_OUTCOME_RULES, activity_frame, analysis_frame

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        plan = metric_plan(spec)
        units = (analysis_frame(conn, spec, [x for _, x, _ in plan.values() if x is not None])
                 if spec.source.kind == "events" else None)
        if units is None or units.is_empty():
            why = "a file source has no exposure days" if units is None else "no units yet"
            conn.execute("delete from results.daily_looks where experiment_id = %s", (spec.id,))
            yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": f"no daily looks: {why}"})
            yield dg.AssetCheckResult(check_name="last_look_equals_final_effects", passed=True,
                                      description=f"not applicable: {why}")
            return
        daily_cols = [EVENT_OUTCOME_RULES[c].daily_column for y, _, d in plan.values() for c in (y, d) if c is not None]
        last_activity = conn.execute(
            "select max(d.activity_date) from marts.fct_exposures e join marts.fct_user_daily d using (user_id) "
            "where e.experiment_id = %s", (spec.id,)).fetchone()[0] if spec.end_date is None else None
        days = look_days(spec, units["day"].min() if units.height else None, last_activity)

        def batches():
            """Units in user-id order, LOOK_BATCH_UNITS at a time, with their activity: flat memory."""
            for part in units.sort(pl.col("unit_id").cast(pl.Int64)).iter_slices(LOOK_BATCH_UNITS):
                ids = part["unit_id"].cast(pl.Int64)
                yield part, activity_frame(conn, spec, daily_cols, users=(int(ids.min()), int(ids.max())))

        stats = daily_look_statistics(batches(), spec, sorted(units["variant"].unique().to_list()), days,
                                      winsorize_caps(units, spec))
        table = look_effects(stats, spec).with_columns(pl.lit(context.run_id).alias("run_id")).select(LOOK_COLUMNS)
        replace_slice(conn, "results.daily_looks", table, where={"experiment_id": spec.id})
        final = read_frame(conn, "select metric, variant, method, n_baseline, n_variant, abs_effect, cs_low, cs_high "
                                 "from results.effects where experiment_id = %s", (spec.id,))
    last = table.filter(pl.col("look_date") == table["look_date"].max())
    check = _compare_last_look(last, final)
    method = preferred_method(table.filter(pl.col("metric") == spec.primary_metric)["method"])
    primary = table.filter(pl.col("metric") == spec.primary_metric, pl.col("method") == method)
    crossed = (primary.filter((pl.col("cs_low") > 0) | (pl.col("cs_high") < 0)).group_by("variant")
               .agg(pl.col("look_date").min().alias("first_look_excluding_0")).sort("variant"))
    png = cumulative_effect_plot(primary, spec.primary_metric, f"{spec.id}: {spec.primary_metric} by day ({method})")
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": table.height,
        "looks": table["look_date"].n_unique(),
        "sequential_bound_first_excluded_0": dg.MetadataValue.md(markdown_table(crossed) if not crossed.is_empty()
                                                                  else "_never: the always-valid interval contains 0 on every day_"),
        "cumulative_effect": dg.MetadataValue.md(f"![cumulative effect of {spec.primary_metric}]({data_uri(png)})"),
    })
    yield check


def _compare_last_look(last: pl.DataFrame, final: pl.DataFrame) -> dg.AssetCheckResult:
    """The last look against results.effects: same units, same estimates and bounds."""
    keys = ["metric", "variant", "method"]
    joined = last.join(final, on=keys, how="full", suffix="_final", coalesce=True)
    mismatched = joined.filter(
        pl.col("n_baseline").is_null() | pl.col("n_baseline_final").is_null()
        | (pl.col("n_baseline") != pl.col("n_baseline_final")) | (pl.col("n_variant") != pl.col("n_variant_final"))
        | ~_close("abs_effect") | ~_close("cs_low") | ~_close("cs_high")
    )
    worst = joined.select(((pl.col("abs_effect") - pl.col("abs_effect_final")).abs()
                           / pl.col("abs_effect_final").abs().clip(lower_bound=1e-12)).max()).item()
    return dg.AssetCheckResult(
        check_name="last_look_equals_final_effects", passed=mismatched.is_empty(),
        description="last look = results.effects" if mismatched.is_empty()
        else f"{mismatched.height} metric × arm × method row(s) differ: {mismatched.select(keys).head(5).to_dicts()}",
        metadata={"rows_compared": joined.height, "max_rel_diff_abs_effect": float(worst or 0.0)},
    )


def _close(column: str, rel: float = 1e-9) -> pl.Expr:
    a, b = pl.col(column), pl.col(f"{column}_final")
    return ((a - b).abs() <= rel * b.abs() + 1e-12) | (a.is_nan() & b.is_nan())
