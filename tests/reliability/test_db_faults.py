"""Database faults: a Postgres restarted in the middle of a run, and a server that is not there.

* **Restart mid-run** — a real ``analyse_experiment`` run (gates, sufficient statistics,
  effects, power) on a throw-away server; while the ``results/sufficient_stats`` step is inside
  its write transaction (held there by a SHARE lock the test takes), the server is restarted
  with ``pg_ctl restart -m fast``. The test shows the restart happened (new postmaster pid and
  start time), that the step failed and was retried (``STEP_UP_FOR_RETRY``), that the run
  succeeded, and that the results are those of the data.
* **Connection refused** — the CLI with a password-bearing ``DATABASE_URL`` on a closed port
  prints one line naming host, port, database and user, never the password, no traceback,
  exit code 2; a Dagster step in the same situation fails with that message after its retries.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from liftlab import db, migrations
from tests.reliability.helpers import load_files, SECRET, activity, materialize, throwaway_server, wait_for, with_secret, write_file_experiment

pytestmark = pytest.mark.heavy  # runs the pipeline, or processes of it: not in make test-fast

ANALYSE = [["gates", "srm"], ["gates", "contamination"], ["gates", "data_integrity"], ["gates", "balance"],
           ["gates", "aa_calibration"], ["results", "sufficient_stats"], ["results", "effects"], ["results", "power"]]


def _serialized_events(instance: dg.DagsterInstance, run_id: str) -> str:
    from dagster._serdes import serialize_value

    return "\n".join(serialize_value(record) for record in instance.all_logs(run_id))


def test_server_restart_mid_run_is_retried_and_the_run_succeeds(tmp_path, monkeypatch, experiments_dir):
    folder = experiments_dir
    write_file_experiment(folder, n_units=3000)
    with throwaway_server(tmp_path) as pg:
        db.ensure_database(pg.info, "liftlab")
        info = with_secret(pg.info.with_db("liftlab"))  # the password must not leak from any failure either
        with db.connect(info) as conn:
            migrations.apply(conn)
            conn.commit()
        assert load_files(info, checks=False).success
        pid_before = pg.postmaster_pid()
        with db.connect(info) as conn:
            started_before = conn.execute("select pg_postmaster_start_time()").fetchone()[0]

        seen: dict = {}

        def restart_while_the_step_writes() -> None:
            # Hold the table so the step is caught inside its write transaction, then restart.
            blocker = db.connect(info)
            blocker.execute("lock table results.sufficient_stats in share mode")
            with db.connect(info, autocommit=True) as watcher:
                seen["waiting"] = wait_for(
                    lambda: [a for a in activity(watcher, "liftlab_restart_test")
                             if a["wait_event_type"] == "Lock" and "sufficient_stats" in a["query"]],
                    timeout=180, what="the sufficient_stats step to be inside its write",
                )
            pg.restart()
            seen["restarted"] = True
            blocker.close()

        monkeypatch.setenv("PGAPPNAME", "liftlab_restart_test")
        thread = threading.Thread(target=restart_while_the_step_writes, daemon=True)
        thread.start()
        instance = dg.DagsterInstance.ephemeral()
        result = materialize(info, ANALYSE, "rel_file", instance=instance)
        thread.join(timeout=60)
        monkeypatch.delenv("PGAPPNAME")

        # the fault really happened: the step was writing, and the server is a new process
        assert seen.get("restarted") and seen["waiting"]
        assert pg.postmaster_pid() != pid_before
        with db.connect(info) as conn:
            assert conn.execute("select pg_postmaster_start_time()").fetchone()[0] > started_before
        # the step failed on the dropped connection, was retried, and the run succeeded
        retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert [e.step_key for e in retried] == ["results__sufficient_stats"], [e.message for e in retried]
        assert result.success
        # and the results are those of the data
        data = pl.read_csv(folder / "rel_file.csv")
        with db.connect(info) as conn:
            stats = dict(conn.execute("select variant, sum from results.sufficient_stats where metric = 'y'").fetchall())
            effects = conn.execute("select count(*) from results.effects where experiment_id = 'rel_file'").fetchone()[0]
        assert stats == pytest.approx(dict(data.group_by("arm").agg(pl.col("y").sum()).iter_rows()), rel=1e-12)
        assert effects >= 1
        # nothing in the run's event log (the retried failure included) carries the password
        events = _serialized_events(instance, result.run_id)
        assert "sufficient_stats" in events and SECRET not in events


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


@pytest.mark.parametrize(("command", "form"), [(["demo", "--users", "500"], "url"), (["scorecard"], "url"),
                                               (["migrate"], "url"), (["demo"], "keyword")])
def test_cli_on_a_closed_port_prints_one_clear_line(tmp_path, command, form):
    port = _closed_port()
    url = (f"postgresql://alice:{SECRET}@127.0.0.1:{port}/liftlab" if form == "url"
           else f"host=127.0.0.1 port={port} user=alice password={SECRET} dbname=liftlab")
    liftlab = Path(sys.executable).with_name("liftlab")
    done = subprocess.run([str(liftlab), *command], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATABASE_URL": url,
                               "DAGSTER_HOME": str(tmp_path)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert SECRET not in done.stderr + done.stdout
    if form == "url":
        assert f"liftlab on 127.0.0.1:{port} as alice" in lines[0]
        assert "Connection refused" in lines[0] or "connection refused" in lines[0].lower()
    else:
        assert "DATABASE_URL is not a usable postgresql:// URL" in lines[0] and "password=***" in lines[0]


def test_a_step_that_cannot_connect_is_retried_then_fails_naming_the_database():
    port = _closed_port()
    info = db.ConnInfo("alice", SECRET, "127.0.0.1", port, "liftlab")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(info, [["raw", "experiment_specs"]], instance=instance, checks=False)
    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    from liftlab.pipeline import _failure_message

    message = _failure_message(result)  # what `liftlab demo` prints when a run fails
    assert len(retries) == 2  # io_retry: max_retries=2
    assert message.startswith("raw__experiment_specs: liftlab.db.DatabaseUnavailable: cannot connect to Postgres "
                              f"database liftlab on 127.0.0.1:{port} as alice: connection failed"), message
    assert SECRET not in _serialized_events(instance, result.run_id)


def test_every_asset_and_check_that_does_io_has_the_retry_policy():
    from liftlab.defs.common import io_retry
    from liftlab.pipeline import definitions_with

    graph = definitions_with().resolve_asset_graph()  # assets_defs holds the asset-check definitions too
    nodes = {}
    for n in graph.assets_defs:
        if not n.is_executable:
            continue
        if isinstance(n.node_def, dg.GraphDefinition):  # a graph-backed asset: each of its ops is a step
            nodes |= {f"{n.node_def.name}.{op.name}": op.retry_policy for op in n.node_def.iterate_op_defs()}
        else:
            nodes[n.node_def.name] = n.node_def.retry_policy
    assert len(nodes) >= 22 and {"raw__events_ge_suite", "dbt_models", "units__unit_metrics", "causal__estimates",
                                 "uplift_learners.fit_uplift_cell"} <= set(nodes)
    assert {name for name, policy in nodes.items() if policy != io_retry} == set()


def test_failures_a_retry_cannot_fix_are_not_retried():
    """Every ``dg.Failure`` the assets raise reports data or a spec that a retry cannot change
    (a bad file, a missing day, no adopting region): each must fail once, at once, with its own
    message — not after 6 s of retries as Dagster's "Exceeded max_retries"."""
    import ast

    from liftlab.config import REPO_ROOT

    retried = []
    for path in sorted((REPO_ROOT / "platform" / "liftlab" / "defs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Failure":
                flag = next((k.value for k in node.keywords if k.arg == "allow_retries"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    retried.append(f"{path.name}:{node.lineno}")
    assert retried == []


def test_a_connection_lost_during_a_quality_suite_is_retried_not_recorded(fresh_db, monkeypatch):
    """great-expectations turns failed queries into failed expectations ("observed None"); the
    check must instead fail and retry, or a server restart would halt every experiment reading
    the table. A view with pg_sleep in place of raw.events makes every scan last half a second, so
    the test can terminate the suite's queries while they run (``pg_terminate_backend``) — all of
    them, until none comes for a second (the attempt has given up), as a restarting server would."""
    from liftlab.defs.resources import PostgresResource
    from liftlab.pipeline import definitions_with

    info = fresh_db
    with db.connect(info) as conn:
        conn.execute("insert into raw.events select g, g % 7, '2026-09-01'::timestamptz + g * interval '1 minute', "
                     "'session', 1.0 from generate_series(1, 25) g")
        # raw.events becomes a view that sleeps 20 ms per row: every suite query runs ~0.5 s
        conn.execute("alter table raw.events rename to events_data")
        conn.execute("create view raw.events as select * from raw.events_data where pg_sleep(0.02) is not null")
        conn.commit()
    killed: list[str] = []

    def suite_queries(watcher) -> list[dict]:
        return [a for a in activity(watcher, "liftlab_ge_fault")
                if a["state"] == "active" and "from raw.events" in a["query"].lower() and "limit" not in a["query"].lower()]

    def kill_the_first_attempt() -> None:
        with db.connect(info, autocommit=True) as watcher:
            wait_for(lambda: suite_queries(watcher), timeout=180, what="a suite query on raw.events")
            last = time.monotonic()
            while time.monotonic() - last < 1.0:
                for victim in suite_queries(watcher):
                    watcher.execute("select pg_terminate_backend(%s)", (victim["pid"],))
                    killed.append(victim["query"])
                    last = time.monotonic()
                time.sleep(0.02)

    monkeypatch.setenv("PGAPPNAME", "liftlab_ge_fault")
    thread = threading.Thread(target=kill_the_first_attempt, daemon=True)
    thread.start()
    defs = definitions_with({"postgres": PostgresResource(database_url=info.url())})
    graph = defs.resolve_asset_graph()
    check = dg.AssetCheckKey(dg.AssetKey(["raw", "events"]), "ge_suite")
    result = dg.materialize(list(graph.assets_defs), selection=dg.AssetSelection.checks(check),
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    thread.join(timeout=60)
    assert killed  # the fault happened: a suite query was terminated while it ran
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1 and "ValidationInterrupted" in str(retries[0].event_specific_data.error)
    assert result.success
    with db.connect(info) as conn:
        failed = conn.execute("select count(*), count(*) filter (where not success) from gates.quality_results "
                              "where asset = 'raw/events'").fetchone()
    assert failed[0] > 5 and failed[1] == 0  # recorded once, from the successful attempt, all met
