"""Helpers for tests that run the asset graph end to end."""

from __future__ import annotations

import dagster as dg
import psycopg
from psycopg import sql

from liftlab import db
from liftlab.defs.resources import PostgresResource, SyntheticWorldResource
from liftlab.pipeline import PipelineResult, run_pipeline

#: A world small enough for CI but large enough for the SRM gate to see a 10 % exposure loss.
TEST_WORLD = {"n_users": 20_000, "seed": 20261122, "checkout_exposure_loss": 0.10}

#: Pipeline tests fit the two uplift learners that need no causalml (class transformation on a
#: LightGBM classifier, and the single-feature rule) with a small bootstrap and one cross-fitting
#: repetition: the pipeline's wiring is the same for every learner, and causalml's import (13 s)
#: and fits are the uplift tests' business (tests/uplift/test_assets.py fits all six through the
#: asset; bench/uplift_acceptance.py repeats them).
FAST_UPLIFT_ENV = {"LIFTLAB_UPLIFT_LEARNERS": "class_transformation,single_feature_rule", "LIFTLAB_UPLIFT_BOOTSTRAP": "30",
                   "LIFTLAB_UPLIFT_REPEATS": "1"}

#: Columns that legitimately change between runs — and only those:
#: ``run_id`` names the Dagster run that wrote the row (every run has a new id);
#: ``computed_at``, ``decided_at``, ``checked_at``, ``loaded_at``, ``quarantined_at`` and
#: ``applied_at``, ``generated_at`` and ``built_at`` are ``default now()`` write times;
#: ``fit_seconds`` and ``seconds`` are wall-clock times (a measurement of the machine, not of
#: the data).
VOLATILE = {"run_id", "computed_at", "decided_at", "checked_at", "loaded_at", "quarantined_at", "applied_at",
            "fit_seconds", "generated_at", "built_at", "seconds"}

#: Append-only logs that gain rows on every run by design (one load-log line per load, one
#: decision per experiment per run): a rerun must add exactly one run's worth of identical
#: rows, which ``tests/reliability/test_idempotency.py`` checks run by run.
HISTORY_TABLES = {"raw.load_log", "results.decision_history"}

#: Schemas that are not liftlab's (everything else in the database is snapshotted).
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def catalogue_tables(conn: psycopg.Connection, include_history: bool = False) -> list[str]:
    """Every base table of the database outside the system schemas, from the catalogue (not a
    hand-picked list: a table added by a migration, a loader or dbt is covered automatically).
    Views are left out: they hold no data of their own."""
    rows = conn.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_schema <> all(%s) and table_schema not like 'pg\\_%%' "
        "order by 1",
        (list(SYSTEM_SCHEMAS),),
    ).fetchall()
    return [r[0] for r in rows if include_history or r[0] not in HISTORY_TABLES]


def run(info: db.ConnInfo, instance: dg.DagsterInstance | None = None, studies: bool = True, reports: bool = True,
        **world) -> PipelineResult:
    """The pipeline on the test world (``world`` overrides its settings, e.g. faults)."""
    resources = {
        "postgres": PostgresResource(database_url=info.url()),
        "world": SyntheticWorldResource(**{**TEST_WORLD, **world}),
    }
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, FAST_UPLIFT_ENV):
        return run_pipeline(instance or dg.DagsterInstance.ephemeral(), resources, log=lambda *_: None,
                            studies=studies, reports=reports)


def table_fingerprint(conn: psycopg.Connection, table: str, exclude=VOLATILE) -> tuple[int, str]:
    """Row count and the md5 of the table's ordered dump (rows as text, sorted) without its
    volatile columns: equal fingerprints mean byte-identical contents."""
    schema, name = table.split(".")
    columns = [
        r[0]
        for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
            "and column_name <> all(%s) order by ordinal_position",
            (schema, name, list(exclude)),
        ).fetchall()
    ]

    query = sql.SQL(
        "select count(*), coalesce(md5(string_agg(r, '|' order by r)), '') from "
        "(select row({})::text as r from {}) x"
    ).format(sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema, name))
    count, digest = conn.execute(query).fetchone()
    return int(count), digest


def snapshot(info: db.ConnInfo) -> dict[str, tuple[int, str]]:
    """Fingerprint of every table in the catalogue (except the append-only logs)."""
    with db.connect(info) as conn:
        return {t: table_fingerprint(conn, t) for t in catalogue_tables(conn)}


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


def clear_outputs(info: db.ConnInfo, run_ids: list[str]) -> dict[str, int]:
    """Delete every row the given runs wrote (tables with a ``run_id`` column): the Celery runs
    must write them again, or the comparison fails."""
    deleted = {}
    with db.connect(info) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.columns c join information_schema.tables t "
            "using (table_schema, table_name) where column_name = 'run_id' and table_type = 'BASE TABLE' "
            "and table_schema not in ('pg_catalog', 'information_schema') order by 1, 2"
        ).fetchall()
        for schema, name in tables:
            cursor = conn.execute(sql.SQL("delete from {} where run_id = any(%s)").format(sql.Identifier(schema, name)),
                                  (run_ids,))
            if cursor.rowcount:
                deleted[f"{schema}.{name}"] = cursor.rowcount
        conn.commit()
    return deleted


def assert_as_built(info, built) -> None:
    """Every table of ``info`` equals the in-process build's (volatile run ids and write times aside)."""
    after = snapshot(info)
    different = sorted(t for t in built.snapshot if after.get(t) != built.snapshot[t])
    assert not different, {t: (after.get(t), built.snapshot[t]) for t in different}
