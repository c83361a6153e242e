"""Concurrency: two runs materializing the same experiment partition at once serialize on the
slice's advisory lock, and the result equals a single run.

Two child processes run the whole analysis of one partition (gates, A/A calibration,
sufficient statistics, effects, power). To make them overlap for certain, the test first holds a
SHARE lock on results.daily_stats — a slow first writer: whichever child gets there first takes
the slice's advisory lock and then waits for the table, and the other child must then wait for
the *first child's* advisory lock. The test observes exactly that in ``pg_stat_activity``
(``wait_event = 'advisory'``, blocked by the other child's backend), releases the table, and
checks that both runs succeed and every table equals the state a single run left.
"""

from __future__ import annotations

import json

import pytest

from liftlab import db
from tests.reliability.helpers import load_files, CHILD_MATERIALIZE, activity, fingerprints, materialize, spawn, wait_for, write_file_experiment

pytestmark = pytest.mark.heavy  # runs the pipeline, or processes of it: not in make test-fast

ANALYSE = [["gates", "srm"], ["gates", "contamination"], ["gates", "data_integrity"], ["gates", "balance"],
           ["gates", "aa_calibration"], ["results", "sufficient_stats"], ["results", "effects"], ["results", "power"]]


def test_two_runs_of_one_partition_serialize_and_equal_one_run(fresh_db, tmp_path, experiments_dir):
    folder = experiments_dir
    write_file_experiment(folder, n_units=1000)
    assert load_files(fresh_db, checks=False).success
    assert materialize(fresh_db, ANALYSE, "rel_file").success
    single = fingerprints(fresh_db, exact=False)
    assert single["results.sufficient_stats"][0] > 0 and single["results.effects"][0] > 0

    env = {"LIFTLAB_TEST_URL": fresh_db.url(), "LIFTLAB_TEST_KEYS": json.dumps(ANALYSE),
           "LIFTLAB_TEST_PARTITION": "rel_file"}
    with db.connect(fresh_db) as slow_writer, db.connect(fresh_db, autocommit=True) as watcher:
        slow_writer.execute("lock table results.daily_stats in share mode")
        children = [spawn(CHILD_MATERIALIZE, tmp_path, f"liftlab_concurrent_{x}", env=env) for x in "ab"]
        names = [c.application_name for c in children]

        def overlap():
            """(first, second): first waits for the table, second for first's advisory lock."""
            backends = {name: activity(watcher, name) for name in names}
            on_table = [(n, b) for n in names for b in backends[n]
                        if b["wait_event_type"] == "Lock" and b["wait_event"] == "relation" and "daily_stats" in b["query"]]
            on_slice = [(n, b) for n in names for b in backends[n]
                        if b["wait_event_type"] == "Lock" and b["wait_event"] == "advisory"]
            if on_table and on_slice and on_table[0][0] != on_slice[0][0] \
                    and on_table[0][1]["pid"] in on_slice[0][1]["blocked_by"]:
                return on_table[0], on_slice[0]
            return None

        (first, first_backend), (second, second_backend) = wait_for(overlap, timeout=120, what="the two runs to overlap")
        assert slow_writer.info.backend_pid in first_backend["blocked_by"]
        assert "pg_advisory_xact_lock" in second_backend["query"]
        slow_writer.rollback()  # the slow writer is done: the first run goes on, then the second
        codes = {c.application_name: c.wait(300) for c in children}
    assert codes == {names[0]: 0, names[1]: 0}, [c.output()[-2000:] for c in children]

    assert fingerprints(fresh_db, exact=False) == single
    with db.connect(fresh_db) as conn:
        runs = conn.execute("select count(distinct run_id) from results.effects").fetchone()[0]
    assert runs == 1  # the slice is one run's, not a mix of two
