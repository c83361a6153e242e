"""`liftlab demo` and `liftlab run` as a user runs them.

`liftlab demo` runs once, as a subprocess with its own LIFTLAB_HOME and DAGSTER_HOME on a tiny
world, so it starts from nothing exactly like a fresh clone: the embedded server is
initialised, Dagster's storage is created in Postgres, every asset is materialized and the
decision table printed. `liftlab run --experiment` then analyses one experiment on
DATABASE_URL's server (the machine's Postgres), in-process.
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

pytestmark = pytest.mark.heavy  # runs the pipeline, or processes of it: not in make test-fast

EXPERIMENTS = ["onboarding_adaptive", "aa_check", "checkout_redesign", "winback_email",
               "ai_assistant_optin", "regional_pricing", "hillstrom"]


def run_demo(tmp_path: Path, database_url: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME", "DAGSTER_PG_URL")}
    env.update(
        LIFTLAB_HOME=str(tmp_path / "home"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        LIFTLAB_WORLD_USERS="3000",
        LIFTLAB_CHECKOUT_EXPOSURE_LOSS="0.30",
        # one learner without a base model of its own: the command end to end, not the fits
        # (tests/uplift fit every learner through the asset)
        **{**FAST_UPLIFT_ENV, "LIFTLAB_UPLIFT_LEARNERS": "single_feature_rule"},
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
    with psycopg.connect(info.url(dbname=db.dagster_db(info.dbname))) as conn:
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
        # Dagster's runs were stored in Postgres, in the database of this liftlab database
        assert dagster_runs(info) >= 3
        assert_world_kept(info, monkeypatch)
    finally:
        db.stop_embedded()


def assert_world_kept(info: db.ConnInfo, monkeypatch) -> None:
    """What `liftlab dev`'s first sensor tick runs after `demo --users N`: a build with no size
    asked for keeps the loaded world (size and seed recorded in raw.world_settings) instead of
    regenerating it at the default 100,000 users."""
    import dagster as dg

    from liftlab.defs.ingest import synthetic_world
    from liftlab.defs.resources import PostgresResource, SyntheticWorldResource

    def world(conn):
        return conn.execute("select n_users, generated_at, (select count(*) from raw.users) from raw.world_settings").fetchall()

    with db.connect(info) as conn:
        before = world(conn)
    assert [row[0] for row in before] == [3000] and before[0][2] == 3000
    for key in ("LIFTLAB_WORLD_USERS", "LIFTLAB_WORLD_SEED"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LIFTLAB_CHECKOUT_EXPOSURE_LOSS", "0.30")
    result = dg.materialize([synthetic_world], resources={
        "postgres": PostgresResource(database_url=info.url()), "world": SyntheticWorldResource()})
    assert result.success and result.get_asset_materialization_events() == []
    with db.connect(info) as conn:
        assert world(conn) == before


def test_run_one_experiment_with_database_url(tmp_path, external_server, monkeypatch, capsys):
    """`liftlab run --experiment hillstrom` on DATABASE_URL's server: no demo world is generated
    (the file experiment needs none), the decision is printed and stored."""
    from liftlab.cli import main
    from tests.conftest import create_scratch_database

    info = create_scratch_database(external_server, prefix="liftlab_run")
    storage = create_scratch_database(external_server, prefix="dagster_run")
    monkeypatch.setenv("DATABASE_URL", info.url())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DAGSTER_PG_URL", storage.url(driver="psycopg2"))
    try:
        assert main(["run", "--experiment", "hillstrom"]) == 0
        out = capsys.readouterr().out
        assert decision_lines(out) == {"hillstrom": "SHIP"}, out
        assert "(embedded)" not in out
        with db.connect(info) as conn:
            assert conn.execute("select decision from results.decisions where experiment_id = 'hillstrom'").fetchone() == ("SHIP",)
            assert conn.execute("select to_regclass('raw.events')").fetchone() == (None,)  # no world was generated
        with psycopg.connect(storage.url()) as conn:  # the runs are recorded in Dagster's Postgres storage
            # build_data, build_units, analyse_experiment, decide: a file has no exposure days,
            # so no daily_stats run
            jobs = [r[0] for r in conn.execute("select pipeline_name from runs order by create_timestamp")]
            assert jobs == ["build_data", "build_units", "analyse_experiment", "decide"], jobs
        assert main(["run", "--experiment", "nope"]) == 1
        assert "no experiment spec with id 'nope'" in capsys.readouterr().err
    finally:
        drop_database(info)
        drop_database(storage)
