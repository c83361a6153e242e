"""Crash safety: a process killed with SIGKILL half-way through a write leaves readers the
previous complete state, and the next run completes.

Two writes are killed, each in a child process that runs the real asset:

* an **ingest**: ``synthetic_world`` replaces raw.users/events/exposures and truth.* in one
  transaction; the child is killed while its ``COPY`` into raw.events is in flight (seen in
  ``pg_stat_activity``);
* a **results write**: ``results/sufficient_stats`` replaces the experiment's slice of
  results.daily_stats and then of results.sufficient_stats in one transaction; the test holds a
  SHARE lock on results.sufficient_stats so that the child is caught *between* the two tables
  (daily_stats already rewritten in its open transaction, sufficient_stats not yet), then
  killed.

After each kill the test waits until Postgres has noticed (the child's backend is gone), checks
that every table in the catalogue is byte-identical to the state before the killed run (every
column, run ids and write times included), then runs the asset again and checks the result.
"""

from __future__ import annotations

import json
import signal

import polars as pl
import psycopg
import pytest

from liftlab import db
from liftlab.synth import generate_world
from tests.reliability.helpers import (
    load_files,
    CHILD_MATERIALIZE,
    activity,
    fingerprints,
    materialize,
    spawn,
    wait_for,
    write_file_experiment,
)

pytestmark = pytest.mark.heavy  # runs the pipeline, or processes of it: not in make test-fast

WORLD_USERS = 8_000
WORLD_KEYS = [["raw", "users"], ["raw", "events"], ["raw", "exposures"], ["truth", "effects"],
              ["truth", "unit_effects"], ["truth", "regional_pricing"]]


def _world_child(tmp_path, info: db.ConnInfo, seed: int, name: str):
    return spawn(CHILD_MATERIALIZE, tmp_path, name, env={
        "LIFTLAB_TEST_URL": info.url(), "LIFTLAB_TEST_KEYS": json.dumps(WORLD_KEYS),
        "LIFTLAB_WORLD_USERS": str(WORLD_USERS), "LIFTLAB_WORLD_SEED": str(seed), "LIFTLAB_TEST_CHECKS": "0",
    })


def _gone(conn: psycopg.Connection, application_name: str) -> bool:
    return not activity(conn, application_name)


def test_sigkill_during_the_ingest_copy_leaves_the_previous_world(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("LIFTLAB_WORLD_USERS", str(WORLD_USERS))
    monkeypatch.setenv("LIFTLAB_WORLD_SEED", "1")
    assert materialize(fresh_db, WORLD_KEYS, checks=False).success
    before = fingerprints(fresh_db)
    assert before["raw.events"][0] > 100_000  # ~0.5 M rows: the COPY takes a while

    child = _world_child(tmp_path, fresh_db, seed=2, name="liftlab_crash_ingest")
    with db.connect(fresh_db, autocommit=True) as watcher:
        wait_for(
            lambda: [a for a in activity(watcher, child.application_name)
                     if a["state"] == "active" and a["query"].lower().startswith('copy "raw"."events"')],
            timeout=180, what="the child's COPY into raw.events to be in flight",
        )
        child.process.send_signal(signal.SIGKILL)  # a few ms after the COPY was seen running
        assert child.wait(60) == -signal.SIGKILL
        wait_for(lambda: _gone(watcher, child.application_name), timeout=60, what="Postgres to drop the dead client")

    assert fingerprints(fresh_db) == before, "a killed ingest changed a table"

    monkeypatch.setenv("LIFTLAB_WORLD_SEED", "2")
    assert materialize(fresh_db, WORLD_KEYS, checks=False).success  # the next run completes
    from liftlab.defs.resources import SyntheticWorldResource

    world = generate_world(SyntheticWorldResource().world_config())
    after = fingerprints(fresh_db, ["raw.users", "raw.events", "raw.exposures"])
    assert (after["raw.users"][0], after["raw.events"][0], after["raw.exposures"][0]) == (
        world.users.height, world.events.height, world.exposures.height)
    assert after["raw.events"] != before["raw.events"]
    with db.connect(fresh_db) as conn:
        log = conn.execute("select count(*), count(distinct run_id) from raw.load_log").fetchone()
    assert log == (12, 2)  # six loads per completed run, none from the killed one


def test_sigkill_between_two_result_tables_leaves_the_previous_results(fresh_db, tmp_path, experiments_dir):
    folder = experiments_dir
    write_file_experiment(folder, seed=1)
    assert load_files(fresh_db).success
    assert materialize(fresh_db, [["results", "sufficient_stats"]], "rel_file").success
    write_file_experiment(folder, seed=2, shift=0.5)  # new data: the next write would change the results
    assert load_files(fresh_db).success
    before = fingerprints(fresh_db)
    assert before["results.daily_stats"][0] == 2 and before["results.sufficient_stats"][0] == 2

    with db.connect(fresh_db, autocommit=True) as watcher, db.connect(fresh_db) as blocker, \
            db.connect(fresh_db, autocommit=True) as reader:
        blocker.execute("lock table results.sufficient_stats in share mode")
        child = spawn(CHILD_MATERIALIZE, tmp_path, "liftlab_crash_results", env={
            "LIFTLAB_TEST_URL": fresh_db.url(), "LIFTLAB_TEST_KEYS": json.dumps([["results", "sufficient_stats"]]),
            "LIFTLAB_TEST_PARTITION": "rel_file",
        })
        waiting = wait_for(
            lambda: [a for a in activity(watcher, child.application_name)
                     if a["wait_event_type"] == "Lock" and "sufficient_stats" in a["query"]],
            timeout=180, what="the child to block on results.sufficient_stats",
        )[0]
        # Half-way: the child's open transaction has already rewritten daily_stats (it holds the
        # row-exclusive lock of that write) and waits to rewrite sufficient_stats.
        held = {r[0] for r in watcher.execute(
            "select c.relname from pg_locks l join pg_class c on c.oid = l.relation "
            "where l.pid = %s and l.granted and l.mode = 'RowExclusiveLock'", (waiting["pid"],)).fetchall()}
        assert "daily_stats" in held
        assert blocker.info.backend_pid in waiting["blocked_by"]
        # a reader meanwhile sees the previous daily_stats (MVCC), not the half-written slice
        assert reader.execute("select count(*) from results.daily_stats").fetchone()[0] == 2
        child.process.send_signal(signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL
        blocker.rollback()  # release the table: the orphaned backend wakes up, finds no client, aborts
        wait_for(lambda: _gone(watcher, child.application_name), timeout=60, what="Postgres to drop the dead client")

    assert fingerprints(fresh_db) == before, "a killed results write changed a table"

    assert materialize(fresh_db, [["results", "sufficient_stats"]], "rel_file").success  # the next run completes
    data = pl.read_csv(folder / "rel_file.csv")
    with db.connect(fresh_db) as conn:
        stats = dict(conn.execute(
            "select variant, sum from results.sufficient_stats where experiment_id = 'rel_file' and metric = 'y'"
        ).fetchall())
    expected = dict(data.group_by("arm").agg(pl.col("y").sum()).iter_rows())
    assert stats == pytest.approx(expected, rel=1e-12)
