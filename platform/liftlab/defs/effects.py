"""Effect layer: daily sufficient statistics (polars), effects (Welch / delta method, CUPED,
confidence sequences, Bayesian summary, adjusted p values and CIs) and power, per experiment."""


import dagster as dg
import polars as pl

from liftlab.db import read_frame, replace_slice
from liftlab.defs.common import OWNER, markdown_table, spec_for_partition
from liftlab.defs.gates import srm_gate
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource

STATS_COLUMNS = ["experiment_id", "variant", "metric", "n", "sum", "sum_sq"]
MOMENTS = ["sum", "sum_sq", "sum_x", "sum_x_sq", "sum_xy", "sum_d", "sum_d_sq", "sum_yd", "sum_xd"]


@dg.asset(
    key=["results", "sufficient_stats"],
    partitions_def=experiment_partitions,
    deps=[srm_gate, ["marts", "fct_unit_metrics"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    description="Per experiment × variant × metric × exposure day: n, Σy, Σy², Σx, Σx², Σxy (x = the "
    "metric's pre-period value, for CUPED), Σd, Σd², Σyd, Σxd (d = ratio denominator), aggregated with "
    "polars + numpy.bincount (bit-identical reruns) into results.daily_stats; their sum over days "
    "(mergeable: the statistics of a union are the sum of the parts) into results.sufficient_stats.",
)
def sufficient_stats(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.experiment_stats import daily_statistics, merge_days, unit_columns
    from liftlab.units import analysis_frame

    spec = spec_for_partition(context.partition_key).spec
    with postgres.connect() as conn:
        units = analysis_frame(conn, spec, unit_columns(spec))
        daily = daily_statistics(units, spec).with_columns(
            pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id")
        )
        merged = merge_days(daily).with_columns(pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id"))
        with conn.transaction():
            replace_slice(conn, "results.daily_stats", daily.select("experiment_id", "variant", "metric", "day", "n", *MOMENTS, "run_id"),
                          where={"experiment_id": spec.id})
            replace_slice(conn, "results.sufficient_stats", merged.select("experiment_id", "variant", "metric", "n", *MOMENTS, "run_id"),
                          where={"experiment_id": spec.id})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": merged.height, "daily_rows": daily.height, "units": units.height,
            "preview": dg.MetadataValue.md(markdown_table(merged.select(STATS_COLUMNS))),
        }
    )


@dg.asset(
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
