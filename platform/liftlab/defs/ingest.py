"""Ingest layer: the experiment registry, and the synthetic world where a spec uses the demo.

A team's own data is not ingested: its tables are read where they are (``units/unit_metrics``);
declared files are loaded per experiment by the same asset. The synthetic world is generated
only when a spec has ``source: {kind: demo}`` and only when its settings (size, seed, faults,
generator) differ from the world already loaded — the daily schedule never regenerates it.
"""


import json

import dagster as dg
import polars as pl

from liftlab.db import replace_slice
from liftlab.defs.common import OWNER, io_retry, markdown_table
from liftlab.defs.partitions import experiment_partitions
from liftlab.defs.resources import PostgresResource, SyntheticWorldResource
from liftlab.specs import SpecError, load_specs
from liftlab.synth.tables import WORLD_TABLES


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


class WorldRunConfig(dg.Config):
    """Optional narrowing of a build to some experiments (``liftlab run --experiment``): the world
    is generated only if one of them uses it."""

    experiments: list[str] = []


@dg.multi_asset(
    specs=[
        dg.AssetSpec(table.split("."), description=text, group_name="ingest", kinds={"polars", "postgres"}, owners=[OWNER],
                     deps=[["raw", "experiment_specs"]], skippable=True)
        for table, text in WORLD_TABLES.items()
    ],
    retry_policy=io_retry,
)
def synthetic_world(context: dg.AssetExecutionContext, config: WorldRunConfig, postgres: PostgresResource,
                    world: SyntheticWorldResource):
    """Generate the synthetic SaaS world and COPY it into ``raw`` and ``truth`` in one transaction,
    chunk by chunk as it is generated (memory does not grow with the world's size) — when a spec
    uses the demo and the loaded world's settings differ. Otherwise nothing is materialized (and
    dbt, which only cleans the world, is skipped too)."""
    from liftlab.ingest.world import load_world_stream, loaded_settings, loaded_world_matches, uses_demo_world
    from liftlab.synth import WorldStream

    specs = [item for item in load_specs() if not config.experiments or item.spec.id in config.experiments]
    if not uses_demo_world(specs):
        context.log.info("no spec to build uses the demo world (source: {kind: demo}): nothing to generate")
        return
    with postgres.connect() as conn:
        loaded = loaded_settings(conn)
        settings = world.world_config((loaded or {}).get("config"))
        if not world.regenerate and loaded_world_matches(conn, settings, loaded):
            context.log.info(f"the demo world with seed {settings.seed} and {settings.n_users:,} users is loaded "
                             "already: not regenerated")
            return
        timings: dict[str, float] = {}
        reports = load_world_stream(conn, WorldStream(settings), run_id=context.run_id, timings=timings)
    events = reports["raw.events"].received
    speed = {
        "generate_seconds": round(timings["generate_s"], 3), "load_seconds": round(timings["load_s"], 3),
        "events_load_seconds": round(timings["events_load_s"], 3),
        "events_loaded_per_second": round(events / timings["events_load_s"]) if timings["events_load_s"] else None,
    }
    for table in WORLD_TABLES:
        extra = speed if table == "raw.events" else {}
        extra |= {"seed": settings.seed, "n_users": settings.n_users} if table == "raw.users" else {}
        yield dg.MaterializeResult(asset_key=table.split("."), metadata={
            "dagster/row_count": reports[table].accepted, **reports[table].as_metadata(), **extra})
