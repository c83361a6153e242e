"""Source layer: each experiment's unit table, from whatever source its spec declares.

``units/unit_metrics`` (one ``experiment`` partition per spec) brings the experiment's units
in through its source adapter (:mod:`liftlab.sources`): a declared file is checked and loaded
into ``raw.src_<id>``, a team's unit-level table is checked in place, and a warehouse or demo
experiment's catalogue metrics are compiled to SQL, run read-only where the data lives and
materialized in ``units.<id>``. A source that cannot be read as declared fails this experiment
only, with the file, key, table and column — nothing of it is written, its previous results
stay — and the other experiments go on.
"""


import dagster as dg

from liftlab.defs.common import OWNER, io_retry, spec_for_partition
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource


@dg.asset(
    key=["units", "unit_metrics"],
    partitions_def=experiment_partitions,
    deps=[["raw", "experiment_specs"], ["marts", "fct_user_daily"], ["staging", "stg_exposures"],
          ["staging", "stg_events"], ["staging", "stg_users"]],
    group_name="units",
    kinds={"sql", "postgres"},
    owners=[OWNER],
    retry_policy=io_retry,
    description="The experiment's units, one row each with its variant, exposure, dimensions and metrics: a "
    "declared file loaded into raw.src_<id>, a unit-level table checked in place, or the catalogue's metrics "
    "compiled to SQL over the assignments and fact tables (warehouse, demo), run read-only where the data lives "
    "and written to units.<id>. The compiled SQL is in the metadata.",
)
def unit_metrics(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.sources import SourceError, prepare

    loaded = spec_for_partition(context.partition_key)
    with postgres.connect() as conn:
        try:
            report = prepare(conn, loaded, run_id=context.run_id)
        except SourceError as exc:  # a retry cannot fix a declaration: fail once, say where
            raise dg.Failure(description=f"{loaded.spec.id}: {exc}", allow_retries=False) from None
    metadata: dict = {"source": loaded.spec.source.kind, "table": report.get("table", ""),
                      "dagster/row_count": int(report.get("units", report.get("rows", 0)))}
    if "units_by_variant" in report:
        metadata["units_by_variant"] = dg.MetadataValue.json(report["units_by_variant"])
    if report.get("window_incomplete"):
        metadata["window_incomplete"] = dg.MetadataValue.json(report["window_incomplete"])
    if "assignments" in report:
        metadata["assignments"] = dg.MetadataValue.json(report["assignments"])
    if report.get("statements"):
        metadata["compiled_sql"] = dg.MetadataValue.md("\n\n".join(f"```sql\n{s}\n```" for s in report["statements"]))
        metadata["seconds"] = dg.MetadataValue.json(report["seconds"])
    if "file" in report:
        metadata["file"] = dg.MetadataValue.path(report["file"])
    return dg.MaterializeResult(metadata=metadata)
