"""great-expectations suites catch what they claim on a real Postgres, the data_quality gate
turns an ERROR into a FAIL, and every load's accounting (received = accepted + quarantined)
holds, is enforced by the database and matches the tables."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import psycopg
import pytest

from liftlab import db
from liftlab.gates.integrity import data_quality_gate, WORLD_ASSETS
from liftlab.gates.quality import Contract, record_quality, suites, validate
from liftlab.ingest.loaders import load_batch
from liftlab.ingest.validate import EVENT_RULES
from liftlab.specs import load_specs
from tests.conftest import create_scratch_database, drop_database

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 9, 2, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def trust_db(server):
    info = create_scratch_database(server, prefix="liftlab_trust_quality", world_tables=True)
    yield info
    drop_database(info)


def events_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [1, 2, 2, 3, 4, 5, None, 6],
            "user_id": [10, 11, 11, 12, None, 14, 15, 16],
            "event_ts": [T0, T0, T0, T0, T0, T0, T0, None],
            "event_type": ["session", "payment", "payment", "payment", "session", "teleport", "session", "ai_call"],
            "value": [120.0, 9.5, 9.5, -20.0, 80.0, None, 60.0, None],
        },
        schema_overrides={"event_id": pl.Int64, "user_id": pl.Int64, "event_ts": pl.Datetime("us", "UTC")},
    )


def test_load_batch_quarantines_with_reasons_and_accounts_for_every_row(trust_db):
    with db.connect(trust_db) as conn:
        for _ in range(2):  # a rerun replaces the slice and its quarantine: no duplicates
            report = load_batch(conn, source="test:raw.events", table="raw.events", frame=events_frame(),
                                rules=EVENT_RULES, file="events.csv", run_id="r1")
        conn.commit()
        assert (report.received, report.accepted, report.quarantined) == (8, 2, 6)
        quarantined = dict(conn.execute("select row_number, reason from raw.quarantine where source = 'test:raw.events' "
                                        "order by row_number").fetchall())
        assert quarantined == {
            3: "duplicate event_id",  # the second copy; the first (row 2) is kept
            4: "negative revenue",
            5: "user_id is null",
            6: "unknown event_type",
            7: "event_id is null",
            8: "event_ts is null",
        }
        record = json.loads(json.dumps(conn.execute(
            "select record from raw.quarantine where row_number = 4 and source = 'test:raw.events'").fetchone()[0]))
        assert record["value"] == -20.0 and record["event_id"] == 3
        logs = conn.execute("select received, accepted, quarantined, file from raw.load_log where source = 'test:raw.events'").fetchall()
        assert logs == [(8, 2, 6, "events.csv")] * 2
        assert conn.execute("select count(*) from raw.events").fetchone()[0] == 2
        assert conn.execute("select count(*) from raw.quarantine where source = 'test:raw.events'").fetchone()[0] == 6


def test_the_database_rejects_a_load_log_that_does_not_add_up(trust_db):
    with db.connect(trust_db) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("insert into raw.load_log (source, received, accepted, quarantined) values ('x', 10, 7, 2)")


def test_a_failed_load_leaves_rows_quarantine_and_log_unchanged(trust_db):
    with db.connect(trust_db) as conn:
        before = [conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("raw.events", "raw.quarantine", "raw.load_log")]
        bad = events_frame().with_columns(pl.lit("not a number").alias("value"))  # COPY into double precision fails
        with pytest.raises(psycopg.Error):
            load_batch(conn, source="test:raw.events", table="raw.events", frame=bad, rules={}, run_id="r2")
        conn.rollback()
        after = [conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("raw.events", "raw.quarantine", "raw.load_log")]
    assert after == before


def test_suites_catch_bad_rows_in_database_and_the_gate_halts(trust_db):
    contract = Contract.from_specs([s.spec for s in load_specs()])
    with db.connect(trust_db) as conn:
        # rows written without going through the ingest rules (another loader, a manual fix …)
        conn.execute("truncate raw.events")
        conn.execute(
            "insert into raw.events values (1, 10, %(t)s, 'session', 5), (1, 11, %(t)s, 'payment', -3), "
            "(2, null, %(t)s, 'warp', 1), (3, 12, '2025-01-01', 'session', 1)", {"t": T0})
        conn.execute("truncate raw.exposures")
        conn.execute("insert into raw.exposures values ('aa_check', 10, 'control', %(t)s), ('aa_check', 11, 'bogus', %(t)s)",
                     {"t": T0})
        conn.commit()
    info = trust_db
    results = {}
    for asset in ("raw/events", "raw/exposures"):
        table, rules = suites(contract)[asset]
        out = validate(info.url(driver="psycopg"), asset, table, rules)
        results |= {(r.asset, r.expectation): r for r in out}
        with db.connect(info) as conn:
            record_quality(conn, asset, out, "r3")
            conn.commit()
    failed = {k for k, r in results.items() if not r.success}
    assert failed == {
        ("raw/events", "event_id_unique"), ("raw/events", "user_id_not_null"), ("raw/events", "event_type_in_set"),
        ("raw/events", "value_non_negative"), ("raw/events", "event_ts_in_range"),
        ("raw/exposures", "variant_in_declared_set"),
    }
    assert results[("raw/events", "event_id_unique")].unexpected_count == 2
    assert results[("raw/events", "event_ts_in_range")].severity == "WARN"
    assert "'bogus'" in results[("raw/exposures", "variant_in_declared_set")].reason
    ok = {k for k, r in results.items() if r.success}
    assert ("raw/events", "columns") in ok and ("raw/events", "event_id_type") in ok

    specs = {s.spec.id: s.spec for s in load_specs()}
    with db.connect(info) as conn:
        gate = data_quality_gate(conn, specs["aa_check"], list(WORLD_ASSETS))  # what a demo experiment reads
        assert gate.status == "FAIL"
        assert "raw/events: event_id_unique failed" in gate.reason and "raw/exposures: variant_in_declared_set" in gate.reason
        # a file-sourced experiment does not read these tables: not halted by them
        hill = data_quality_gate(conn, specs["hillstrom"], ["raw/src_hillstrom"])
        assert hill.status == "N/A" and "no data-quality expectations ran" in hill.reason


def test_a_stream_of_chunks_keeps_event_ids_unique_across_chunks(trust_db):
    from liftlab.ingest.loaders import SliceLoad

    def chunk(ids):
        return pl.DataFrame({"event_id": ids, "user_id": [1] * len(ids), "event_ts": [T0] * len(ids),
                             "event_type": ["session"] * len(ids), "value": [1.0] * len(ids)},
                            schema_overrides={"event_id": pl.Int64, "user_id": pl.Int64, "event_ts": pl.Datetime("us", "UTC")})

    with db.connect(trust_db) as conn:
        with conn.transaction():
            load = SliceLoad(conn, source="test:stream", table="raw.events", rules=EVENT_RULES,
                             unique=("event_id", "duplicate event_id"))
            load.add(chunk([1, 2, 3]))
            load.add(chunk([10, 11]))      # disjoint range: nothing to check
            load.add(chunk([3, 12, 2, 12]))  # overlaps the first chunk, and repeats itself
            report = load.finish()
        assert (report.received, report.accepted, report.quarantined) == (9, 6, 3)
        rows = conn.execute("select row_number, reason from raw.quarantine where source = 'test:stream' order by 1").fetchall()
        assert rows == [(6, "duplicate event_id"), (8, "duplicate event_id"), (9, "duplicate event_id")]
        ids = [r[0] for r in conn.execute("select event_id from raw.events order by 1").fetchall()]
        assert ids == [1, 2, 3, 10, 11, 12]
