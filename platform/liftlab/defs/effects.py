"""Effect layer: daily sufficient statistics (polars), effects (Welch / delta method, CUPED,
confidence sequences, Bayesian summary, adjusted p values and CIs) and power, per experiment."""


from datetime import date, timedelta

import dagster as dg
import polars as pl

from liftlab.db import Between, read_frame, replace_slice
from liftlab.defs.common import OWNER, inline_png, io_retry, markdown_table, partitioned_check, spec_for_partition
from liftlab.defs.gates import srm_gate
from liftlab.defs.partitions import day_partitions, experiment_partitions
from liftlab.defs.resources import PostgresResource

STATS_COLUMNS = ["experiment_id", "variant", "metric", "n", "sum", "sum_sq"]
MOMENTS = ["sum", "sum_sq", "sum_x", "sum_x_sq", "sum_xy", "sum_d", "sum_d_sq", "sum_yd", "sum_xd"]
#: Units per batch of the daily looks (their activity rows are read and reduced a batch at a time).
LOOK_BATCH_UNITS = 200_000
DAILY_COLUMNS = ["experiment_id", "variant", "metric", "day", "n", *MOMENTS, "run_id"]


class DailyStatsConfig(dg.Config):
    """Optional narrowing of a run to some experiments (``liftlab run --experiment``)."""

    experiments: list[str] = []  # empty → every experiment with exposure times


def _cohort_days(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """First and last day (inclusive) of the partition or partition range being materialized."""
    window = context.partition_time_window
    return window.start.date(), window.end.date() - timedelta(days=1)


def timestamped_specs_overlapping(first: date, last: date) -> list:
    """Specs whose units have exposure days (warehouse, demo) and whose window meets [first, last]."""
    from liftlab.sources import adapter
    from liftlab.specs import load_specs

    return [
        item.spec for item in load_specs()
        if adapter(item.spec).timestamped
        and (item.spec.start_date is None or item.spec.start_date <= last)
        and (item.spec.end_date is None or item.spec.end_date >= first)
    ]


@dg.asset(
    key=["results", "daily_stats"],
    partitions_def=day_partitions,
    # a backfill from the UI runs a week of days per run, several runs at once (run coordinator);
    # the pipeline and the daily chain run the whole range as one run (range tags)
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=7),
    deps=[dg.AssetDep(dg.AssetKey(["units", "unit_metrics"]), partition_mapping=dg.AllPartitionMapping()),
          ["raw", "experiment_specs"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    retry_policy=io_retry,
    description="Per UTC day: the joint sufficient statistics (n, Σy, Σy², Σx, Σx², Σxy, Σd, Σd², Σyd, Σxd) "
    "of the units first exposed that day, per experiment with exposure times (warehouse, demo) × variant × metric "
    "(results.daily_stats). Days are independent — a day's rows depend only on its own cohort (and on "
    "winsorization caps fixed from every unit's pre-period) — so they can run as separate runs, in "
    "parallel (a UI backfill runs a week per run), or as one run over a range, with bit-identical rows; the "
    "experiment's statistics are their sum.",
)
def daily_stats(context: dg.AssetExecutionContext, config: DailyStatsConfig, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab import pushdown
    from liftlab.experiment_stats import daily_statistics, unit_columns
    from liftlab.units import analysis_frame, experiment_caps, unit_table_exists

    first, last = _cohort_days(context)
    written: dict[str, int] = {}
    with postgres.connect() as conn:
        # one transaction per experiment, holding its lock only while its rows are replaced
        for spec in timestamped_specs_overlapping(first, last):
            if config.experiments and spec.id not in config.experiments:
                continue
            if not unit_table_exists(conn, spec):
                context.log.warning(f"{spec.id}: its units were never built (see its units/unit_metrics run): skipped")
                continue
            caps = experiment_caps(conn, spec)
            if pushdown.mode() == "pushdown":  # summed inside Postgres: only the statistics leave it
                daily, n_units = pushdown.daily_statistics(conn, spec, caps, (first, last))
            else:
                units = analysis_frame(conn, spec, unit_columns(spec), days=(first, last))
                daily, n_units = daily_statistics(units, spec, caps), units.height
            daily = daily.with_columns(pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id"))
            replace_slice(conn, "results.daily_stats", daily.select(DAILY_COLUMNS),
                          where={"experiment_id": spec.id, "day": Between(first, last)},
                          lock_key=f"results.daily_stats|{spec.id}")
            conn.commit()  # end the implicit transaction of the reads too: release the lock now
            written[spec.id] = n_units
    return dg.MaterializeResult(
        metadata={
            "aggregation": pushdown.mode(),
            "days": f"{first} … {last}" if first != last else str(first),
            "dagster/row_count": sum(written.values()),
            "units_by_experiment": dg.MetadataValue.json(written),
        }
    )


@dg.asset(
    retry_policy=io_retry,
    key=["results", "sufficient_stats"],
    partitions_def=experiment_partitions,
    deps=[srm_gate, dg.AssetDep(daily_stats, partition_mapping=dg.AllPartitionMapping()), ["units", "unit_metrics"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    description="The experiment's joint sufficient statistics per variant × metric: the sum of its daily "
    "cohorts in results.daily_stats (event stream; the sum is checked against the units of every "
    "exposure day, so a missing or stale day fails loudly), or aggregated from the declared file's rows "
    "(file and table sources, one partition with a null day). Sums use numpy.bincount in row order, so reruns are "
    "bit-identical.",
)
def sufficient_stats(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab import pushdown
    from liftlab.experiment_stats import daily_statistics, merge_days, unit_columns
    from liftlab.sources import adapter
    from liftlab.units import analysis_frame, experiment_caps

    spec = spec_for_partition(context.partition_key).spec
    timestamped = adapter(spec).timestamped
    with postgres.connect() as conn:
        if timestamped:
            daily = read_frame(
                conn,
                "select variant, metric, day, n, " + ", ".join(MOMENTS) + " from results.daily_stats "
                "where experiment_id = %s order by variant, metric, day",
                (spec.id,),
            )
            check_cohorts_complete(conn, spec, daily)
            units = int(daily.filter(pl.col("metric") == spec.primary_metric)["n"].sum()) if not daily.is_empty() else 0
        elif pushdown.mode() == "pushdown":
            daily, units = pushdown.daily_statistics(conn, spec, experiment_caps(conn, spec))
        else:
            frame = analysis_frame(conn, spec, unit_columns(spec))
            units = frame.height
            daily = daily_statistics(frame, spec)
        daily = daily.with_columns(pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id"))
        merged = merge_days(daily).with_columns(pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id"))
        with conn.transaction():
            if not timestamped:
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

    Catches a day partition that was never materialized, or one computed before the unit table
    was rebuilt, before a wrong total reaches the effects.
    """
    from liftlab.units import day_counts

    expected = day_counts(conn, spec)
    have = (daily.filter(pl.col("metric") == spec.primary_metric).group_by("day").agg(pl.col("n").sum().alias("stored"))
            if not daily.is_empty() else pl.DataFrame(schema={"day": pl.Date, "stored": pl.Int64}))
    if expected.is_empty():
        return
    if spec.metric_kind(spec.primary_metric) == "quantile":  # no sufficient statistics: compare any metric
        have = (daily.filter(pl.col("metric") == daily["metric"][0]).group_by("day").agg(pl.col("n").sum().alias("stored"))
                if not daily.is_empty() else have)
    cmp = expected.with_columns(pl.col("day").cast(pl.Date)).join(have.with_columns(pl.col("day").cast(pl.Date)), on="day", how="full", coalesce=True)
    bad = cmp.filter(pl.col("units").fill_null(0) != pl.col("stored").fill_null(0)).sort("day")
    if not bad.is_empty():
        days = ", ".join(f"{r['day']} ({r['stored'] or 0} of {r['units'] or 0} units)" for r in bad.head(5).iter_rows(named=True))
        raise dg.Failure(
            description=f"{spec.id}: results.daily_stats does not match the units of {bad.height} exposure day(s): {days}. "
            f"Materialize results/daily_stats for those days (partitions start on {day_partitions.start.date()}, "
            "LIFTLAB_FIRST_DAY) after the unit table is built.",
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
    "sequences (cs_low/cs_high); chance to beat control and expected loss; multi-covariate regression "
    "adjustment next to CUPED (method 'cuped_multi': pre-period twins of every metric, the spec's covariates and "
    "dimensions; mean metrics; reported, not decided on); p values and CIs adjusted "
    "by Holm (primary, across arms) and Benjamini–Hochberg (secondary metrics) next to the raw ones.",
)
def effects(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.experiment_stats import EFFECT_COLUMNS, experiment_effects
    from liftlab.units import quantile_rows

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        daily = read_frame(
            conn,
            "select variant, metric, day, n, " + ", ".join(MOMENTS) + " from results.daily_stats "
            "where experiment_id = %s order by variant, metric, day nulls last",
            (spec.id,),
        )
        built = conn.execute("select window_incomplete from units.builds where experiment_id = %s", (spec.id,)).fetchone()
        table = experiment_effects(daily, spec, built[0] if built else None, quantile_rows(conn, spec))
        table = pl.concat([table, multi_covariate_effects(conn, spec, table)], how="vertical_relaxed").with_columns(
            pl.lit(context.run_id).alias("run_id"))
        # cuped rows before welch_t / delta_method rows of the same metric and variant
        table = table.sort("metric", "variant", pl.col("method") != "cuped").select(EFFECT_COLUMNS)
        replace_slice(conn, "results.effects", table, where={"experiment_id": spec.id})
    preview = table.sort(pl.col("is_decision_estimate").not_(), "metric", "variant").select(
        "metric", "variant", "method", pl.col("is_decision_estimate").alias("decides"), "abs_effect", "rel_effect",
        "rel_ci_low", "rel_ci_high", "p_value_adj", "cs_low", "cs_high", "variance_reduction", "n_window_incomplete")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": table.height,
        "preview": dg.MetadataValue.md(
            ("_A design that was not randomized is decided on causal/estimates: these are confounded differences "
             "in means._\n\n" if spec.design != "randomized" else "")
            + f"`decides` marks the estimate the decision reads; intervals at {(1 - spec.alpha) * 100:.4g} % (adjusted ones at 1 − alpha_adj).\n\n"
            + markdown_table(preview, max_rows=60))})


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
    deps=[effects, ["units", "unit_metrics"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    check_specs=[partitioned_check(
        "last_look_equals_final_effects", asset=["results", "daily_looks"], partitions_def=experiment_partitions,
        description="The look on the last day reproduces results.effects (units per arm exactly, estimates and "
        "bounds to 1e-9): the day-by-day accumulation and the final statistics describe the same data.",
    )],
    description="The effect of every metric × arm as it stood at the end of each day of the experiment "
    "(units exposed by that day, outcomes accumulated up to it; a metric with a window counts a unit once its "
    "window is complete) with its CI and the always-valid confidence sequence: the cumulative-effect plot, and "
    "the day the sequential bound first excluded 0. Sources with exposure times only (a file has no days).",
)
def daily_looks(context: dg.AssetExecutionContext, postgres: PostgresResource):
    from liftlab.decide import preferred_method
    from liftlab.experiment_stats import (
        LOOK_COLUMNS, daily_look_statistics, look_days, look_effects, look_plan, windowed_look_statistics,
    )
    from liftlab.reports.plots import cumulative_effect_plot
    from liftlab.sources import adapter
    from liftlab.stats.looks import cumulate_looks
    from liftlab.units import analysis_frame, daily_activity, experiment_caps, window_done_days

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        daily_plan, windowed_plan, without = (look_plan(spec) if adapter(spec).timestamped else ({}, {}, []))
        plans = daily_plan | windowed_plan
        columns = [x for _, x, _ in plans.values() if x is not None]
        columns += [c for y, _, d in windowed_plan.values() for c in (y, d) if c is not None]
        units = analysis_frame(conn, spec, columns) if plans else None
        if units is None or units.is_empty():
            why = ("a source without exposure times has no days" if not adapter(spec).timestamped
                   else "no metric has daily looks" if not plans else "no units yet")
            conn.execute("delete from results.daily_looks where experiment_id = %s", (spec.id,))
            yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": f"no daily looks: {why}"})
            yield dg.AssetCheckResult(check_name="last_look_equals_final_effects", passed=True,
                                      description=f"not applicable: {why}")
            return
        caps = experiment_caps(conn, spec)
        if windowed_plan:
            units = units.join(window_done_days(conn, spec, list(windowed_plan)), on="unit_id", how="left")
        done_last = max((units[f"done__{m}"].filter(units[c].is_not_nan()).max() or spec.end_date
                         for m, (c, _, _) in windowed_plan.items()), default=None)
        days = look_days(spec, units["day"].min(), done_last)
        arms = sorted(units["variant"].unique().to_list())
        sums = {}
        if daily_plan:
            outcomes = list(dict.fromkeys(c for y, _, d in daily_plan.values() for c in (y, d) if c is not None))

            def batches():
                """Units in id order, LOOK_BATCH_UNITS at a time, with their daily activity: flat memory."""
                for part in units.sort("unit_id").iter_slices(LOOK_BATCH_UNITS):
                    yield part, daily_activity(conn, spec, outcomes, (part["unit_id"].min(), part["unit_id"].max()))

            sums |= daily_look_statistics(batches(), spec, arms, days, caps)
        if windowed_plan:
            sums |= windowed_look_statistics(units, spec, arms, days, caps)
        table = look_effects(cumulate_looks(sums, arms, days), spec).with_columns(
            pl.lit(context.run_id).alias("run_id")).select(LOOK_COLUMNS)
        replace_slice(conn, "results.daily_looks", table, where={"experiment_id": spec.id})
        final = read_frame(conn, "select metric, variant, method, n_baseline, n_variant, abs_effect, cs_low, cs_high "
                                 "from results.effects where experiment_id = %s and metric <> all(%s) "
                                 "and method <> 'cuped_multi'", (spec.id, without))  # no daily looks of cuped_multi
    last = table.filter(pl.col("look_date") == table["look_date"].max())
    check = _compare_last_look(last, final)
    method = preferred_method(table.filter(pl.col("metric") == spec.primary_metric)["method"])
    primary = table.filter(pl.col("metric") == spec.primary_metric, pl.col("method") == method)
    crossed = (primary.filter((pl.col("cs_low_adj") > 0) | (pl.col("cs_high_adj") < 0)).group_by("variant")
               .agg(pl.col("look_date").min().alias("first_look_excluding_0")).sort("variant"))
    metadata = {
        "dagster/row_count": table.height,
        "looks": table["look_date"].n_unique(),
        "sequential_bound_first_excluded_0": dg.MetadataValue.md(markdown_table(crossed) if not crossed.is_empty()
                                                                  else "_never: the always-valid interval contains 0 on every day_"),
    }
    if without:
        metadata["without_looks"] = ", ".join(without)
    if not primary.is_empty():
        png = cumulative_effect_plot(primary, spec.primary_metric, f"{spec.id}: {spec.primary_metric} by day ({method})",
                                     alpha=spec.alpha)
        metadata["cumulative_effect"] = inline_png(png, f"cumulative effect of {spec.primary_metric}")
    yield dg.MaterializeResult(metadata=metadata)
    yield check


def multi_covariate_effects(conn, spec, table: pl.DataFrame) -> pl.DataFrame:
    """The ``cuped_multi`` rows (:func:`liftlab.stats.regression_adjustment.experiment_multi_effects`)
    of ``table``'s experiment, read from its unit table; empty when they do not apply."""
    from liftlab.experiment_stats import metric_plan
    from liftlab.stats.regression_adjustment import covariate_plan, experiment_multi_effects
    from liftlab.units import analysis_frame, attribute_frame, experiment_caps

    pre, numeric, categorical = covariate_plan(spec)
    outcomes = [y for y, _, d in metric_plan(spec).values() if d is None]
    if spec.design != "randomized" or not spec.cuped or not outcomes or not (pre or numeric or categorical):
        return table.clear()
    units = analysis_frame(conn, spec, [*outcomes, *pre, *numeric])
    if categorical:
        units = units.join(attribute_frame(conn, spec, categorical).drop("variant"), on="unit_id", how="left")
    return experiment_multi_effects(units, spec, table, experiment_caps(conn, spec))


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


@dg.asset(
    retry_policy=io_retry,
    key=["results", "slice_effects"],
    partitions_def=experiment_partitions,
    deps=[sufficient_stats, ["units", "unit_metrics"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    description="Effects of every metric within each slice of the spec's dimensions (columns of the assignments or "
    "of a unit table, fixed at first exposure): the same statistics and methods as the whole experiment, one "
    "Benjamini–Hochberg family per metric × method across all slices and arms; a slice with fewer than "
    "slice_min_units units per arm is reported, not estimated.",
)
def slice_effects(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.experiment_stats import SLICE_COLUMNS, slice_effects as estimate_slices, unit_columns
    from liftlab.units import analysis_frame, attribute_frame, experiment_caps

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        if spec.dimensions:
            units = analysis_frame(conn, spec, unit_columns(spec)).join(
                attribute_frame(conn, spec, spec.dimensions).drop("variant"), on="unit_id", how="left")
            table = estimate_slices(units, spec, experiment_caps(conn, spec))
        else:
            table = pl.DataFrame()
        table = (table.with_columns(pl.lit(context.run_id).alias("run_id")).select(SLICE_COLUMNS) if table.height
                 else pl.DataFrame(schema={c: pl.Utf8 for c in SLICE_COLUMNS}).with_columns(
                     pl.col("estimated").cast(pl.Boolean)))
        replace_slice(conn, "results.slice_effects", table, where={"experiment_id": spec.id})
    if table.is_empty():
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": "the spec declares no dimensions"})
    primary = table.filter(pl.col("metric") == spec.primary_metric)
    preview = primary.select("dimension", "slice", "variant", "method", "estimated", "n_baseline", "n_variant",
                             "rel_effect", "rel_ci_low", "rel_ci_high", "p_value_adj")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": table.height, "dimensions": ", ".join(spec.dimensions),
        "slices_not_estimated": int((~table["estimated"]).sum()),
        "primary_metric_by_slice": dg.MetadataValue.md(markdown_table(preview, max_rows=60)),
    })
