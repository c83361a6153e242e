"""The second materialization of every asset, shared by the idempotency and secrets tests.

The session fixture ``built`` (tests/conftest.py) materializes the whole graph once.
``asset_by_asset`` then materializes every asset of the real definitions once more, *alone*
(one run per asset, with its checks, in dependency order), on a copy of that database, with
``DATABASE_URL`` carrying a password and the demo world forced to regenerate, and records per
asset which tables it wrote and their fingerprints afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from liftlab import db
from tests.pipeline_helpers import FAST_UPLIFT_ENV, TEST_WORLD, catalogue_tables, table_fingerprint
from tests.reliability.helpers import with_secret

#: Experiment partitions materialized asset by asset (a randomized demo experiment, the user file
#: and the observational launch, whose causal estimates are rewritten). Day partitions run as one
#: run over the whole range. The halted checkout_redesign is left out: materialized alone, its
#: effects would bypass the blocking gate (see docs/reliability.md).
PARTITIONS = ("aa_check", "hillstrom", "ai_assistant_optin")
#: Assets in no job, materialized on demand (their first materialization happens here).
ON_DEMAND = {("results", "calibration")}
#: ... and the table they write.
ON_DEMAND_TABLES = {"results.calibration"}


@dataclass
class AssetPass:
    name: str
    keys: list[dg.AssetKey]
    partition: str | None
    success: bool
    written: dict[str, tuple[int, str]] = field(default_factory=dict)  # table → fingerprint after the run
    counts: dict[str, int] = field(default_factory=dict)  # every table's row count after the run
    run_id: str = ""


def _next_xid(conn: psycopg.Connection) -> int:
    xid = int(conn.execute("select pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()[0])
    assert xid < 2**32, "xid epoch > 0: the 32-bit xmin comparison below would be wrong"
    return xid


def _written_since(conn: psycopg.Connection, tables: list[str], xid: int) -> tuple[list[str], dict[str, int]]:
    """Tables holding a row version created at or after ``xid`` (inserted, updated, or in a
    relation dbt created anew), and every table's row count."""
    written, counts = [], {}
    for table in tables:
        ident = sql.Identifier(*table.split("."))
        total, new = conn.execute(
            sql.SQL("select count(*), count(*) filter (where xmin::text::bigint >= %s) from {}").format(ident), (xid,)
        ).fetchone()
        counts[table] = total
        if new:
            written.append(table)
    return written, counts


@pytest.fixture()
def fresh_db(server, request):
    """A migrated scratch database of its own for one test, dropped afterwards."""
    from tests.conftest import create_scratch_database, drop_database

    info = create_scratch_database(server, prefix=f"liftlab_{request.module.__name__.rsplit('_', 1)[-1]}", world_tables=True)
    yield info
    drop_database(info)


@pytest.fixture()
def experiments_dir(tmp_path, monkeypatch):
    """An empty experiments folder the definitions read instead of experiments/."""
    folder = tmp_path / "experiments"
    folder.mkdir()
    monkeypatch.setenv("LIFTLAB_EXPERIMENTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def asset_by_asset(built):
    from tests.conftest import drop_database

    copy = built.copy(prefix="liftlab_idempotency")
    yield materialize_asset_by_asset(copy, built.reports)
    drop_database(copy)


def materialize_asset_by_asset(info: db.ConnInfo, reports) -> dict:
    """Every asset of the real definitions once, alone, in dependency order (see the module doc)."""
    from liftlab.defs.resources import PostgresResource, SyntheticWorldResource
    from liftlab.pipeline import day_range_tags, definitions_with

    secret_url = with_secret(info).url()
    passes: list[AssetPass] = []
    with pytest.MonkeyPatch.context() as mp:
        # the build's reports folder: plots are rewritten where the build wrote them (their paths are
        # stored in the tables, as a rerun on the same machine writes them)
        for key, value in {**FAST_UPLIFT_ENV, "DATABASE_URL": secret_url, "LIFTLAB_CALIBRATION_SIMS": "100",
                           "LIFTLAB_CALIBRATION_USERS": "2000", "LIFTLAB_REPORTS_DIR": str(reports)}.items():
            mp.setenv(key, value)
        defs = definitions_with({"postgres": PostgresResource(),
                                 "world": SyntheticWorldResource(**TEST_WORLD, regenerate=True)})
        graph = defs.resolve_asset_graph()
        order = {key: i for i, key in enumerate(graph.toposorted_asset_keys)}
        nodes = sorted((n for n in graph.assets_defs if n.is_executable and n.keys), key=lambda n: max(order[k] for k in n.keys))
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("experiment", list(PARTITIONS))
        with db.connect(info) as conn:
            tables = catalogue_tables(conn, include_history=True)
        for node in nodes:
            keys = sorted(node.keys, key=lambda k: k.to_user_string())
            repeats = 2 if any(tuple(k.path) in ON_DEMAND for k in keys) else 1
            # experiment partitions one by one; day partitions as one run over the whole range, as
            # the pipeline does (single-run backfill)
            by_day = isinstance(node.partitions_def, dg.TimeWindowPartitionsDefinition)
            for partition in (PARTITIONS if node.partitions_def and not by_day else (None,)):
                for _ in range(repeats):
                    with db.connect(info, autocommit=True) as conn:
                        since = _next_xid(conn)
                    job = defs.resolve_implicit_job_def_def_for_assets(keys)
                    result = job.execute_in_process(instance=instance, asset_selection=keys, partition_key=partition,
                                                    tags=day_range_tags() if by_day else None, raise_on_error=False)
                    with db.connect(info) as conn:
                        written, counts = _written_since(conn, tables, since)
                        prints = {t: table_fingerprint(conn, t) for t in written}
                    passes.append(AssetPass(node.node_def.name, keys, partition, result.success, prints, counts,
                                            result.run_id))
    # what the dbt subprocesses got (LiftlabDbtResource.environment_for exports it)
    dbt_password = os.environ.get("LIFTLAB_PGPASSWORD")
    return {"passes": passes, "instance": instance, "info": info, "secret_url": secret_url, "dbt_password": dbt_password}
