"""Ingest layer: experiment specs, the synthetic world and user-declared files into ``raw``."""


import json

import dagster as dg
import polars as pl

from liftlab.db import replace_slice
from liftlab.defs.common import OWNER, io_retry, markdown_table
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource, SyntheticWorldResource
from liftlab.specs import SpecError, load_specs


@dg.asset(
    key=["raw", "experiment_specs"],
    group_name="ingest",
    kinds={"yaml", "postgres"},
    owners=[OWNER],
    retry_policy=io_retry,
    description="The experiment registry: every spec in experiments/ validated and written to "
    "raw.experiment_specs; registers one 'experiment' partition per spec.",
)
def experiment_specs(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    try:
        loaded = load_specs()
    except SpecError as exc:  # a retry cannot fix a spec: fail once, naming file and key
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    frame = pl.DataFrame(
        {
            "experiment_id": [item.spec.id for item in loaded],
            "design": [item.spec.design for item in loaded],
            "baseline": [item.spec.baseline for item in loaded],
            "start_date": [item.spec.start_date for item in loaded],
            "end_date": [item.spec.end_date for item in loaded],
            "pre_start_date": [item.spec.pre_start_date for item in loaded],
            "source_kind": [item.spec.source.kind for item in loaded],
            "spec": [json.dumps(item.spec.model_dump(mode="json")) for item in loaded],
            "spec_file": [str(item.path) for item in loaded],
            "spec_sha256": [item.sha256 for item in loaded],
        },
        schema_overrides={"start_date": pl.Date, "end_date": pl.Date, "pre_start_date": pl.Date},
    )
    with postgres.connect() as conn:
        replace_slice(conn, "raw.experiment_specs", frame)
    new = [i for i in frame["experiment_id"] if not context.instance.has_dynamic_partition(experiment_partitions.name, i)]
    if new:
        context.instance.add_dynamic_partitions(experiment_partitions.name, new)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "new_partitions": new,
            "preview": dg.MetadataValue.md(markdown_table(frame.drop("spec", "spec_file", "spec_sha256"))),
        }
    )


WORLD_TABLES = {
    ("raw", "users"): "Synthetic users with their attributes (plan, company size, region, device, engagement).",
    ("raw", "events"): "Synthetic product events: sessions, AI calls, tasks, upgrades, payments, support tickets.",
    ("raw", "exposures"): "Experiment exposure log of the synthetic world (one row per exposure event).",
    ("truth", "effects"): "True average effects of every synthetic experiment (exact expectations of the DGP).",
    ("truth", "unit_effects"): "True per-unit effects (CATE) and types where the world defines them.",
    ("truth", "regional_pricing"): "True effect of the regional price change per region and day.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(list(key), description=text, group_name="ingest", kinds={"polars", "postgres"}, owners=[OWNER])
        for key, text in WORLD_TABLES.items()
    ],
    retry_policy=io_retry,
)
def synthetic_world(context: dg.AssetExecutionContext, postgres: PostgresResource, world: SyntheticWorldResource):
    """Generate the synthetic SaaS world and COPY it into ``raw`` and ``truth`` in one transaction,
    chunk by chunk as it is generated (memory does not grow with the world's size)."""
    from liftlab.ingest.world import load_world_stream
    from liftlab.synth import WorldStream

    timings: dict[str, float] = {}
    with postgres.connect() as conn:
        reports = load_world_stream(conn, WorldStream(world.world_config()), run_id=context.run_id, timings=timings)
    events = reports["raw.events"].received
    speed = {
        "generate_seconds": round(timings["generate_s"], 3), "load_seconds": round(timings["load_s"], 3),
        "events_load_seconds": round(timings["events_load_s"], 3),
        "events_loaded_per_second": round(events / timings["events_load_s"]) if timings["events_load_s"] else None,
    }
    for key in WORLD_TABLES:
        table = ".".join(key)
        extra = speed if table == "raw.events" else {}
        yield dg.MaterializeResult(asset_key=list(key), metadata={
            "dagster/row_count": reports[table].accepted, **reports[table].as_metadata(), **extra})


@dg.asset(
    key=["raw", "user_files"],
    deps=[experiment_specs],
    group_name="ingest",
    kinds={"csv", "parquet", "postgres"},
    owners=[OWNER],
    retry_policy=io_retry,
    description="Every user-level file declared by a spec (source.kind: file), checked against its "
    "declaration (checksum, columns, types, variants) and loaded into raw.src_<experiment_id>.",
)
def user_files(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from liftlab.ingest.files import FileSourceError, read_user_file, write_user_file

    loaded, errors = {}, []
    with postgres.connect() as conn:
        for item in load_specs():
            if item.spec.source.kind != "file":
                continue
            try:
                user_file = read_user_file(item.spec, item.path)
            except FileSourceError as exc:
                errors.append(str(exc))
                context.log.error(str(exc))
                continue
            loaded[user_file.table] = write_user_file(conn, user_file, item.spec.source, run_id=context.run_id)
    if errors:
        raise dg.Failure(description="; ".join(errors), metadata={"loaded": loaded}, allow_retries=False)
    return dg.MaterializeResult(metadata={"tables": loaded, "dagster/row_count": sum(loaded.values())})
