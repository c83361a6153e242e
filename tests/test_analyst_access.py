"""Analysts get a read-only role: the views and marts, never raw data, never a write."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

READABLE = ["results.v_scorecard", "results.v_latest_decisions", "results.effects", "results.decisions",
            "results.decision_history", "gates.v_failing_checks"]
FORBIDDEN_READS = ["raw.events", "raw.users", "raw.exposures", "truth.effects"]


def as_reader(conn: psycopg.Connection):
    conn.execute("set role liftlab_reader")


@pytest.mark.parametrize("relation", READABLE)
def test_reader_can_select_views_and_results(conn, relation):
    as_reader(conn)
    conn.execute(f"select * from {relation} limit 1").fetchall()
    conn.rollback()


@pytest.mark.parametrize("relation", FORBIDDEN_READS)
def test_reader_cannot_read_raw_or_truth(conn, relation):
    as_reader(conn)
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"select * from {relation} limit 1")
    conn.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "insert into results.decisions (experiment_id, decision, reasons, primary_metric) values ('x', 'SHIP', '[]', 'm')",
        "delete from results.effects",
        "update gates.check_results set status = 'PASS'",
        "create table results.mine (x int)",
        "create table public.mine (x int)",
        "truncate results.decision_history",
    ],
)
def test_reader_cannot_write_anywhere(conn, statement):
    as_reader(conn)
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)
    conn.rollback()


def test_writer_can_write_results(conn):
    conn.execute("set role liftlab_writer")
    conn.execute(
        "insert into results.decisions (experiment_id, decision, reasons, primary_metric) values ('w', 'HOLD', '[]', 'm')"
    )
    conn.rollback()


def test_example_queries_run_as_reader_on_real_results(built):
    from liftlab import db
    from liftlab.config import REPO_ROOT

    text = (REPO_ROOT / "sql" / "examples.sql").read_text()
    statements = [s.strip() for s in text.split(";") if s.strip() and not all(
        line.startswith("--") or not line.strip() for line in s.strip().splitlines())]
    assert len(statements) == 7
    with db.connect(built.info) as conn:
        as_reader(conn)
        results = [conn.execute(statement).fetchall() for statement in statements]
    assert len(results[0]) == 7  # a decision for every experiment
    assert any(row[0] == "checkout_redesign" for row in results[2])  # the halted one is listed
    wins = [(row[0], row[1]) for row in results[4]]
    assert len(wins) == len(set(wins))  # one estimate per experiment and arm
    assert not {"checkout_redesign", "ai_assistant_optin"} & {e for e, _ in wins}  # halted, confounded
    # "significant" is the decision's own rule (sequence or adjusted p, per the spec's policy): every
    # randomized SHIP is a significant win on its shipped arm.
    shipped = {(row[0], row[2]) for row in results[0] if row[1] == "SHIP"} - {
        (e, v) for e, _, v, *_ in results[0] if e in ("ai_assistant_optin", "regional_pricing")}
    assert ("hillstrom", "Mens E-Mail") in shipped and shipped <= set(wins)
    assert {row[0] for row in results[6]} >= {"aa_check", "onboarding_adaptive", "winback_email"}  # cohorts by day
