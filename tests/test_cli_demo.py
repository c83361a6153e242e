"""`liftlab demo` as a user runs it: a fresh embedded Postgres, or DATABASE_URL's server.

Each run is a subprocess with its own LIFTLAB_HOME and DAGSTER_HOME, so it starts from
nothing, exactly like a fresh clone: the embedded server is initialised, Dagster's storage is
created in Postgres, every asset is materialized and the decision table printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from liftlab import db
from tests.conftest import drop_database
from tests.pipeline_helpers import FAST_UPLIFT_ENV

EXPERIMENTS = ["onboarding_adaptive", "aa_check", "checkout_redesign", "winback_email",
               "ai_assistant_optin", "regional_pricing", "hillstrom"]


def run_demo(tmp_path: Path, database_url: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME", "DAGSTER_PG_URL")}
    env.update(
        LIFTLAB_HOME=str(tmp_path / "home"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        LIFTLAB_WORLD_USERS="20000",
        LIFTLAB_CHECKOUT_EXPOSURE_LOSS="0.10",
        **FAST_UPLIFT_ENV,
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    liftlab = Path(sys.executable).with_name("liftlab")
    return subprocess.run([str(liftlab), "demo"], env=env, capture_output=True, text=True, timeout=900)


def decision_lines(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in EXPERIMENTS and len(parts) > 1:
            found[parts[0]] = parts[1]
    return found


def dagster_runs(info: db.ConnInfo) -> int:
    with psycopg.connect(info.url(dbname="dagster")) as conn:
        return conn.execute("select count(*) from runs").fetchone()[0]


def test_demo_on_a_fresh_embedded_postgres(tmp_path, monkeypatch):
    result = run_demo(tmp_path, None)
    assert result.returncode == 0, result.stderr[-4000:]
    found = decision_lines(result.stdout)
    assert set(found) == set(EXPERIMENTS), result.stdout
    assert found["checkout_redesign"] == "HALTED"
    assert found["aa_check"] != "SHIP"
    assert "(embedded)" in result.stdout
    assert (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()
    # Dagster's runs were stored in Postgres (dagster-postgres), not in local files.
    monkeypatch.setenv("LIFTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    info = db.start_embedded()
    try:
        assert dagster_runs(info) >= 3
    finally:
        db.stop_embedded()


def test_demo_with_database_url(tmp_path, external_server):
    from tests.conftest import create_scratch_database

    info = create_scratch_database(external_server, prefix="liftlab_demo")
    try:
        db.ensure_database(external_server, "dagster")  # shared Dagster storage db on this server
        result = run_demo(tmp_path, info.url())
        assert result.returncode == 0, result.stderr[-4000:]
        found = decision_lines(result.stdout)
        assert set(found) == set(EXPERIMENTS), result.stdout
        assert found["checkout_redesign"] == "HALTED"
        assert "(embedded)" not in result.stdout
        with db.connect(info) as conn:
            assert conn.execute("select count(*) from results.decisions").fetchone()[0] == len(EXPERIMENTS)
    finally:
        drop_database(info)
