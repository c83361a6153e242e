"""Effect layer: sufficient statistics (polars) and Welch effects per experiment partition."""


import dagster as dg
import polars as pl

from liftlab.db import read_frame, replace_slice
from liftlab.defs.common import OWNER, markdown_table, spec_for_partition
from liftlab.defs.gates import srm_gate
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource
from liftlab.units import unit_frame

STATS_COLUMNS = ["experiment_id", "variant", "metric", "n", "sum", "sum_sq"]


@dg.asset(
    key=["results", "sufficient_stats"],
    partitions_def=experiment_partitions,
    deps=[srm_gate, ["marts", "fct_unit_metrics"]],
    group_name="effects",
    kinds={"polars", "postgres"},
    owners=[OWNER],
    description="Per experiment × variant × metric: n, Σy, Σy² aggregated with polars from the "
    "unit-level metrics; mergeable (statistics of a union are the sum of the parts).",
)
def sufficient_stats(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.stats.sufficient import aggregate

    spec = spec_for_partition(context.partition_key).spec
    metrics = list(spec.metric_roles())
    with postgres.connect() as conn:
        units = unit_frame(conn, spec, metrics)
        stats = aggregate(units, by=["variant"], metrics=metrics).with_columns(
            pl.lit(spec.id).alias("experiment_id"), pl.lit(context.run_id).alias("run_id")
        )
        replace_slice(
            conn, "results.sufficient_stats", stats.select(*STATS_COLUMNS, "run_id"), where={"experiment_id": spec.id}
        )
    return dg.MaterializeResult(
        metadata={"dagster/row_count": stats.height, "units": units.height, "preview": dg.MetadataValue.md(markdown_table(stats.select(STATS_COLUMNS)))}
    )


EFFECT_COLUMNS = [
    "experiment_id", "metric", "metric_role", "variant", "baseline", "n_baseline", "n_variant",
    "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low", "abs_ci_high",
    "rel_effect", "rel_ci_low", "rel_ci_high", "t_stat", "df", "p_value", "p_value_adj", "alpha", "method", "run_id",
]


@dg.asset(
    key=["results", "effects"],
    partitions_def=experiment_partitions,
    deps=[sufficient_stats],
    group_name="effects",
    kinds={"python", "postgres"},
    owners=[OWNER],
    description="Effect of every arm vs the baseline per metric: means, absolute difference with "
    "Welch t-test and CI, relative lift with delta-method CI, Holm-adjusted p across arms.",
)
def effects(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.stats.analysis import compare_arms  # scipy: imported when the asset runs

    spec = spec_for_partition(context.partition_key).spec
    roles = spec.metric_roles()
    with postgres.connect() as conn:
        stats = read_frame(
            conn,
            "select variant, metric, n, sum, sum_sq from results.sufficient_stats where experiment_id = %s",
            (spec.id,),
        )
        table = compare_arms(stats, baseline=spec.baseline, alpha=spec.alpha)
        method = "welch_t" if spec.design == "randomized" else "naive_welch_t"
        table = table.with_columns(
            pl.lit(spec.id).alias("experiment_id"),
            pl.col("metric").replace_strict(roles, default="secondary").alias("metric_role"),
            pl.col("p_value_holm").alias("p_value_adj"),
            pl.lit(spec.alpha).alias("alpha"),
            pl.lit(method).alias("method"),
            pl.lit(context.run_id).alias("run_id"),
        ).select(EFFECT_COLUMNS)
        replace_slice(conn, "results.effects", table, where={"experiment_id": spec.id})
    preview = table.select("metric", "variant", "mean_baseline", "mean_variant", "abs_effect", "rel_effect", "p_value", "p_value_adj")
    return dg.MaterializeResult(metadata={"dagster/row_count": table.height, "preview": dg.MetadataValue.md(markdown_table(preview))})
