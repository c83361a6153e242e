"""Least privilege: real login users in the roles the migrations create — ``liftlab_writer``
(the pipeline) and ``liftlab_reader`` (analysts) — and what each may and may not do.

The writer logs in as a user that is a member of liftlab_writer and sets that role on login
(``alter role … set role liftlab_writer``, see sql/migrations/008_reliability.sql), so what it
creates is owned by liftlab_writer. The pipeline really runs as that user: specs, a user file,
gates, statistics, effects, decisions and reports.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from psycopg import errors, sql

from liftlab import db
from tests.conftest import create_scratch_database, drop_database
from tests.reliability.helpers import load_files, materialize, write_file_experiment


@pytest.fixture(scope="module")
def roles_db(server):
    """A scratch database (migrated by the admin) and two login users, dropped afterwards."""
    info = create_scratch_database(server, prefix="liftlab_roles", world_tables=True)
    suffix = uuid.uuid4().hex[:8]
    writer, reader = f"rel_pipeline_{suffix}", f"rel_analyst_{suffix}"
    with db.connect(info, autocommit=True) as admin:
        admin.execute(sql.SQL("create user {} login in role liftlab_writer").format(sql.Identifier(writer)))
        admin.execute(sql.SQL("alter role {} set role liftlab_writer").format(sql.Identifier(writer)))
        admin.execute(sql.SQL("create user {} login in role liftlab_reader").format(sql.Identifier(reader)))
    yield {"admin": info, "writer": replace(info, user=writer), "reader": replace(info, user=reader)}
    drop_database(info)
    with db.connect(info.with_db("postgres"), autocommit=True) as admin:
        for role in (writer, reader):
            admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def _run(info: db.ConnInfo, statement: str) -> None:
    autocommit = statement.startswith(("create database", "alter system"))  # not allowed in a transaction
    with db.connect(info, autocommit=autocommit) as conn:
        conn.execute(statement)
        if not autocommit:
            conn.rollback()


def test_each_user_really_logs_in_as_itself(roles_db):
    with db.connect(roles_db["writer"]) as conn:
        assert conn.execute("select session_user, current_user").fetchone() == (roles_db["writer"].user, "liftlab_writer")
    with db.connect(roles_db["reader"]) as conn:
        assert conn.execute("select session_user, current_user").fetchone() == (roles_db["reader"].user,) * 2


WRITER_ALLOWED = [
    "insert into raw.events (event_id, user_id, event_ts, event_type, value) values (1, 1, now(), 'session', 1)",
    "truncate raw.events, raw.exposures, raw.users",
    "delete from results.effects where experiment_id = 'x'",
    "insert into gates.check_results (experiment_id, \"check\", status) values ('x', 'srm', 'PASS')",
    "update results.decisions set variant = null where experiment_id = 'x'",
    "insert into truth.effects (experiment_id, metric, variant, baseline, estimand, true_effect) values ('x','m','a','b','ATE',0)",
    "create table raw.src_x (unit_id text primary key, variant text); drop table raw.src_x",
    "create table marts.fct_x as select 1 as a; drop table marts.fct_x",
    "create view staging.stg_x as select 1 as a; drop view staging.stg_x",
    "select pg_advisory_xact_lock(hashtextextended('x', 0))",
    "select name from public.liftlab_migrations",
]
WRITER_REFUSED = [
    "create role evil login",
    "create database evil",
    "create schema evil",
    "drop schema raw cascade",
    "drop table raw.events",
    "alter table results.effects add column evil int",
    "insert into public.liftlab_migrations (name, sha256) values ('999_evil.sql', 'x')",
    "grant liftlab_reader to current_user",
    "set role postgres",
    "copy raw.events to '/tmp/liftlab_evil.csv'",
    "copy (select 1) to program 'id'",
    "select pg_read_file('/etc/passwd')",
    "alter system set log_statement = 'none'",
]


@pytest.mark.parametrize("statement", WRITER_ALLOWED)
def test_writer_may_write_liftlab_tables(roles_db, statement):
    _run(roles_db["writer"], statement)


READER_REFUSED = [
    "select * from raw.load_log", "select * from raw.quarantine", "select * from raw.experiment_specs",
    "select * from staging.stg_events", "select * from truth.unit_effects",
    "select * from public.liftlab_migrations",
    "set role liftlab_writer",
    "copy (select 1) to '/tmp/liftlab_evil.csv'",
    "select pg_read_file('/etc/passwd')",
    "create table marts.mine as select 1 as a",
]


@pytest.mark.parametrize(("role", "statement"), [("writer", s) for s in WRITER_REFUSED] + [("reader", s) for s in READER_REFUSED])
def test_neither_role_may_administer_escape_or_overreach(roles_db, role, statement):
    """The writer may not administer the database or escape to the server; the reader may not
    read raw data, escalate or write."""
    with pytest.raises(errors.InsufficientPrivilege):
        _run(roles_db[role], statement)


def test_the_pipeline_runs_as_the_writer_and_analysts_read_what_it_wrote(roles_db, tmp_path, experiments_dir):
    """Ingest, gates, statistics, effects, decisions and reports as the writer; then the
    analyst reads the results and a marts table the writer (re)created — but not the raw file."""
    folder = experiments_dir
    write_file_experiment(folder, n_units=1000)
    writer = roles_db["writer"]
    assert load_files(writer, checks=False).success
    analysis = [["gates", "srm"], ["gates", "contamination"], ["gates", "data_integrity"], ["gates", "balance"],
                ["gates", "aa_calibration"], ["results", "sufficient_stats"], ["results", "effects"], ["results", "power"]]
    assert materialize(writer, analysis, "rel_file").success
    assert materialize(writer, [["results", "decisions"], ["reports", "experiment_reports"]]).success
    assert load_files(writer, checks=False).success  # rerun: drops its own table
    with db.connect(writer) as conn:  # like dbt: the pipeline recreates a marts table
        conn.execute("create table marts.fct_rebuilt as select 1 as a")
        conn.commit()
        owner = conn.execute("select tableowner from pg_tables where tablename = 'src_rel_file'").fetchone()[0]
    assert owner == "liftlab_writer"

    with db.connect(roles_db["reader"]) as conn:
        assert conn.execute("select count(*) from results.v_scorecard where experiment_id = 'rel_file'").fetchone()[0] > 0
        assert conn.execute("select decision from results.v_latest_decisions").fetchone()[0]
        assert conn.execute("select a from marts.fct_rebuilt").fetchone() == (1,)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select * from raw.src_rel_file")
