"""Helpers for tests that run the asset graph end to end."""

from __future__ import annotations

import dagster as dg
import psycopg

from liftlab import db
from liftlab.defs.resources import PostgresResource, SyntheticWorldResource
from liftlab.pipeline import PipelineResult, run_pipeline

#: A world small enough for CI but large enough for the SRM gate to see a 10 % exposure loss.
TEST_WORLD = {"n_users": 20_000, "seed": 20261122, "checkout_exposure_loss": 0.10}

#: Pipeline tests fit two uplift learners with a small bootstrap and one cross-fitting
#: repetition; the uplift tests and bench/uplift_acceptance.py exercise all six, repeated.
FAST_UPLIFT_ENV = {"LIFTLAB_UPLIFT_LEARNERS": "t_learner,s_learner", "LIFTLAB_UPLIFT_BOOTSTRAP": "30",
                   "LIFTLAB_UPLIFT_REPEATS": "1"}

#: Columns that legitimately change between runs (ids and clocks).
VOLATILE = {"run_id", "computed_at", "decided_at", "checked_at", "loaded_at", "quarantined_at"}

SNAPSHOT_TABLES = [
    "raw.experiment_specs", "raw.users", "raw.events", "raw.exposures", "raw.src_hillstrom",
    "marts.fct_user_daily", "marts.fct_exposures", "marts.fct_unit_metrics",
    "gates.check_results", "results.sufficient_stats", "results.effects", "results.decisions",
    "truth.effects", "truth.unit_effects", "truth.regional_pricing",
]


def run(info: db.ConnInfo, instance: dg.DagsterInstance | None = None, **world) -> PipelineResult:
    resources = {
        "postgres": PostgresResource(database_url=info.url()),
        "world": SyntheticWorldResource(**{**TEST_WORLD, **world}),
    }
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, FAST_UPLIFT_ENV):
        return run_pipeline(instance or dg.DagsterInstance.ephemeral(), resources, log=lambda *_: None)


def table_fingerprint(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """Row count and an order-independent checksum of a table without its volatile columns."""
    schema, name = table.split(".")
    columns = [
        r[0]
        for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
            "and column_name <> all(%s) order by ordinal_position",
            (schema, name, list(VOLATILE)),
        ).fetchall()
    ]
    from psycopg import sql

    query = sql.SQL(
        "select count(*), coalesce(md5(string_agg(r, '|' order by r)), '') from "
        "(select row({})::text as r from {}) x"
    ).format(sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema, name))
    count, digest = conn.execute(query).fetchone()
    return int(count), digest


def snapshot(info: db.ConnInfo) -> dict[str, tuple[int, str]]:
    with db.connect(info) as conn:
        return {t: table_fingerprint(conn, t) for t in SNAPSHOT_TABLES}


def run_day_partitions(url: str, days: list[str]) -> tuple[float, float]:
    """Materialize ``results/daily_stats`` one day partition per run (in this process); returns
    the wall-clock start and end, so a caller running several of these can show they overlapped."""
    import time

    from liftlab.pipeline import definitions_with

    started = time.time()
    job = definitions_with({"postgres": PostgresResource(database_url=url)}).resolve_job_def("daily_stats")
    with dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            job.execute_in_process(instance=instance, partition_key=day)
    return started, time.time()
