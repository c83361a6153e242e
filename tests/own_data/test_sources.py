"""Warehouse and table sources against small team schemas built by the tests: the compiled SQL's
corner cases (a unit table with a validity time, unit ids of different types, a daily rollup, an
assignments query with a ``%`` in it, a unit-level table read in place) and every kind of bad
input, each failing that experiment with the file, the key and the table or column named —
while an experiment that reads the same database correctly goes on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from liftlab import db
from liftlab.catalogue import load_catalogue
from liftlab.sources import SourceError, prepare
from liftlab.specs import LoadedSpec, parse_spec
from tests.conftest import create_scratch_database, drop_database

START, END = "2026-10-01", "2026-10-07"


@pytest.fixture(scope="module")
def team(server):
    """A team database: assignments (bigint ids), orders (text ids), a daily rollup, customers with
    a history of plans, a unit-level results table, and a role that may read nothing."""
    info = create_scratch_database(server, prefix="team_src")
    with psycopg.connect(info.url(), autocommit=True) as conn:
        conn.execute("""
            create schema shop;
            create table shop.assignments (user_id bigint, arm text, seen_at timestamptz, test text);
            insert into shop.assignments select u, case when u % 2 = 0 then 'a' else 'b' end,
                   '2026-10-02 12:00+00'::timestamptz + (u % 5) * interval '1 day', 't1' from generate_series(1, 200) u;
            create table shop.orders (user_ref text, at timestamptz, amount numeric, kind text);
            insert into shop.orders select (u % 200 + 1)::text, '2026-10-01 00:00+00'::timestamptz + (u % 240) * interval '1 hour',
                   (u % 17)::numeric, case when u % 3 = 0 then 'gift' else 'buy' end from generate_series(1, 3000) u;
            create table shop.daily (user_id bigint, day date, visits integer);
            insert into shop.daily select u, d::date, (u + extract(day from d)::int) % 4
                   from generate_series(1, 200) u, generate_series('2026-09-20'::date, '2026-10-20'::date, '1 day') d;
            create table shop.plans (user_id bigint, valid_from timestamptz, plan text);
            insert into shop.plans select u, '2026-01-01', 'free' from generate_series(1, 200) u;
            insert into shop.plans select u, '2026-10-04 00:00+00', 'pro' from generate_series(1, 200) u where u % 4 = 0;
            create table shop.results (customer text, arm text, converted integer, spend double precision, age integer);
            insert into shop.results select 'c' || u, case when u % 3 = 0 then 'a' else 'b' end, (u % 5 = 0)::int,
                   u % 11, 20 + u % 40 from generate_series(1, 300) u;
        """)
        conn.execute("drop role if exists liftlab_test_nobody")
        conn.execute("create role liftlab_test_nobody login")
    yield info
    drop_database(info)
    with psycopg.connect(info.url(dbname="postgres"), autocommit=True) as conn:
        conn.execute("drop role if exists liftlab_test_nobody")


CATALOGUE = {
    "fact_tables": {"orders": {"table": "shop.orders", "unit": "user_ref", "timestamp": "at"},
                    "daily": {"table": "shop.daily", "unit": "user_id", "timestamp": "day"}},
    "unit_tables": {"plans": {"table": "shop.plans", "unit": "user_id", "columns": ["plan"], "timestamp": "valid_from"}},
    "metrics": {"spend_3d": {"fact": "orders", "aggregate": "sum", "column": "amount", "where": {"kind": "buy"},
                             "window_days": 3},
                "visits": {"fact": "daily", "aggregate": "sum", "column": "visits"},
                "visit_days": {"fact": "daily", "aggregate": "count_distinct_days", "where": {"visits": {"gt": 0}}}},
}


def spec(**source) -> dict:
    return {"id": "t1", "hypothesis": "h", "variants": [{"name": "a", "allocation": 0.5}, {"name": "b", "allocation": 0.5}],
            "baseline": "a", "start_date": START, "end_date": END, "pre_period_days": 3, "primary_metric": "spend_3d",
            "secondary_metrics": ["visits", "visit_days"], "dimensions": ["plan"],
            "source": {"kind": "warehouse", "connection": "TEAM_URL",
                       "assignments": {"table": "shop.assignments", "unit": "user_id", "variant": "arm",
                                       "timestamp": "seen_at", "where": {"test": "t1"}}, **source}}


def _prepare(tmp_path: Path, data: dict, catalogue: dict | None = None, liftlab=None):
    folder = tmp_path / "metrics"
    folder.mkdir(exist_ok=True)
    (folder / "team.yaml").write_text(yaml.safe_dump(catalogue or CATALOGUE))
    path = tmp_path / f"{data['id']}.yaml"
    loaded = LoadedSpec(parse_spec(yaml.safe_dump(data), path, load_catalogue(folder)), path, "x")
    with db.connect(liftlab) as conn:
        report = prepare(conn, loaded)
        conn.commit()
        return report, db.read_frame(conn, f"select * from units.{data['id']} order by unit_id") if "units" in report else None


@pytest.fixture()
def liftlab(server, team, monkeypatch):
    monkeypatch.setenv("TEAM_URL", team.url())
    info = create_scratch_database(server, prefix="liftlab_src")
    yield info
    drop_database(info)


def test_windows_types_and_validity_times(tmp_path, team, liftlab):
    report, units = _prepare(tmp_path, spec(), liftlab=liftlab)
    assert report["units"] == 200 and units.height == 200
    with psycopg.connect(team.url()) as conn:
        for row in units.filter(units["unit_id"].is_in(["4", "5", "12"])).iter_rows(named=True):
            u, first = int(row["unit_id"]), row["first_exposed_at"]
            # text order ids against bigint assignments, a [first, first + 3 d) window, rows of kind buy only
            spend = conn.execute("select coalesce(sum(amount), 0) from shop.orders where user_ref = %s and kind = 'buy' "
                                 "and at >= %s and at < %s + interval '3 days'", (str(u), first, first)).fetchone()[0]
            # a daily rollup: whole days from the exposure date to the end date; the twin the 3 days before
            day = first.astimezone(dt.timezone.utc).date()
            visits, pre = conn.execute("select sum(visits) filter (where day between %s and %s), "
                                       "sum(visits) filter (where day >= %s::date - 3 and day < %s) from shop.daily "
                                       "where user_id = %s", (day, END, day, day, u)).fetchone()
            # the plan in force at first exposure (pro from 2026-10-04 for every fourth user)
            plan = conn.execute("select plan from shop.plans where user_id = %s and valid_from <= %s "
                                "order by valid_from desc limit 1", (u, first)).fetchone()[0]
            assert (row["spend_3d"], row["visits"], row["pre_visits"], row["plan"]) == (float(spend), float(visits),
                                                                                       float(pre), plan), row


def test_an_assignments_query_with_a_percent_sign(tmp_path, team, liftlab):
    data = spec()
    data["source"]["assignments"] = {"sql": "select * from shop.assignments where arm like 'a%' or arm like 'b%'",
                                     "unit": "user_id", "variant": "arm", "timestamp": "seen_at", "where": {"test": "t1"}}
    report, _ = _prepare(tmp_path, data, liftlab=liftlab)
    assert report["units"] == 200 and report["assignments"]["relation"] == "(assignments sql)"


def test_a_unit_level_table_read_in_place(tmp_path, team, liftlab, monkeypatch):
    from liftlab.units import exposure_counts, unit_frame

    path = tmp_path / "tbl.yaml"
    data = {"id": "tbl", "hypothesis": "h", "variants": [{"name": "a", "allocation": 0.34}, {"name": "b", "allocation": 0.66}],
            "baseline": "a", "primary_metric": "converted", "covariates": ["age"],
            "source": {"kind": "table", "connection": "TEAM_URL", "table": "shop.results", "unit_column": "customer",
                       "variant_column": "arm", "columns": {"customer": "string", "arm": "string", "converted": "integer",
                                                            "spend": "float", "age": "integer"},
                       "outcomes": ["converted", "spend"]}}
    loaded = LoadedSpec(parse_spec(yaml.safe_dump(data), path), path, "x")
    with db.connect(liftlab) as conn:
        report = prepare(conn, loaded)
        assert report["units_by_variant"] == {"a": 100, "b": 200}
        assert exposure_counts(conn, loaded.spec) == {"a": 100, "b": 200}
        frame = unit_frame(conn, loaded.spec, ["converted", "age"])
        assert frame.height == 300 and frame["converted"].sum() == 60
        assert conn.execute("select to_regclass('units.tbl'), to_regclass('raw.src_tbl')").fetchone() == (None, None)


BAD = {
    # key edited → (value, words the message must hold)
    "missing table": (("source", "assignments", "table"), "shop.nope", ["source.assignments.table", "shop.nope", "does not exist"]),
    "missing column": (("source", "assignments", "unit"), "uid", ["source.assignments.unit", "'uid'", "shop.assignments"]),
    "wrong type": (("source", "assignments", "timestamp"), "arm", ["source.assignments.timestamp", "'arm'", "text",
                                                                    "not a date or timestamp"]),
    "where on a missing column": (("source", "assignments", "where"), {"campaign": "x"},
                                  ["source.assignments.where.campaign", "'campaign'", "shop.assignments"]),
    "zero rows": (("source", "assignments", "where"), {"test": "t9"}, ["source.assignments", "no units", "shop.assignments"]),
    "unknown dimension": (("dimensions",), ["country"], ["dimensions.0", "'country'", "shop.assignments"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_key_and_table(tmp_path, team, liftlab, case):
    (path, value, words) = BAD[case]
    data = spec()
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(SourceError) as err:
        _prepare(tmp_path, data, liftlab=liftlab)
    message = str(err.value)
    assert f"{tmp_path / 't1.yaml'}" in message, message
    for word in words:
        assert word in message, (word, message)
    with db.connect(liftlab) as conn:  # nothing of it was written
        assert conn.execute("select to_regclass('units.t1'), count(*) from units.builds").fetchone() == (None, 0)


CATALOGUE_BAD = {
    "metric on an unknown fact": ({"metrics": {"spend_3d": {"fact": "payments", "aggregate": "count"}}},
                                  ["metrics.spend_3d.fact", "unknown fact table 'payments'"]),
    "where on a missing column": ({"metrics": {"spend_3d": {"fact": "orders", "aggregate": "count", "where": {"state": "x"}}}},
                                  ["metrics.spend_3d.where.state", "'state'", "shop.orders"]),
    "a ratio cycle": ({"metrics": {"spend_3d": {"ratio": ["r2", "visits"]}, "r2": {"ratio": ["spend_3d", "visits"]}}},
                      ["metrics.spend_3d.ratio", "cycle", "spend_3d → r2 → spend_3d"]),
    "a column of the wrong type": ({"metrics": {"spend_3d": {"fact": "orders", "aggregate": "sum", "column": "kind"}}},
                                   ["metrics.spend_3d.column", "'kind'", "shop.orders", "not a number"]),
    "a missing fact table": ({"fact_tables": {"orders": {"table": "shop.gone", "unit": "user_ref", "timestamp": "at"}}},
                             ["fact_tables.orders.table", "shop.gone", "does not exist"]),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE_BAD))
def test_bad_catalogue_entries_fail_the_experiments_that_use_them(tmp_path, team, liftlab, case):
    change, words = CATALOGUE_BAD[case]
    catalogue = {k: {**v, **change.get(k, {})} for k, v in CATALOGUE.items()}
    with pytest.raises(SourceError) as err:
        _prepare(tmp_path, spec(), catalogue, liftlab=liftlab)
    message = str(err.value)
    assert str(tmp_path / "metrics" / "team.yaml") in message, message
    for word in words:
        assert word in message, (word, message)
    # an experiment that does not use the broken entry goes on
    other = {**spec(), "id": "t2", "primary_metric": "visits", "secondary_metrics": []}
    if case != "a missing fact table":
        assert _prepare(tmp_path, other, catalogue, liftlab=liftlab)[0]["units"] == 200


def test_no_permission_names_the_table(tmp_path, team, liftlab, monkeypatch):
    nobody = team.with_db(team.dbname)
    url = db.ConnInfo("liftlab_test_nobody", "", nobody.host, nobody.port, nobody.dbname).url()
    monkeypatch.setenv("TEAM_URL", url)
    with pytest.raises(SourceError) as err:
        _prepare(tmp_path, spec(), liftlab=liftlab)
    assert "no permission to read shop.assignments" in str(err.value) or "permission denied" in str(err.value)


def test_one_failing_source_fails_its_experiment_only(tmp_path, team, monkeypatch, server):
    """Through the pipeline: t1's assignments table is missing, t2 is fine — t2 is analysed and
    decided, t1 fails its units run naming the key and the table, and nothing of t1 is written."""
    from liftlab.defs.resources import PostgresResource
    from liftlab.pipeline import run_pipeline

    experiments, metrics = tmp_path / "experiments", tmp_path / "metrics"
    experiments.mkdir(), metrics.mkdir()
    (metrics / "team.yaml").write_text(yaml.safe_dump(CATALOGUE))
    bad = spec()
    bad["source"]["assignments"]["table"] = "shop.missing"
    (experiments / "t1.yaml").write_text(yaml.safe_dump(bad))
    (experiments / "t2.yaml").write_text(yaml.safe_dump({**spec(), "id": "t2"}))
    monkeypatch.setenv("LIFTLAB_EXPERIMENTS_DIR", str(experiments))
    monkeypatch.setenv("LIFTLAB_METRICS_DIR", str(metrics))
    monkeypatch.setenv("TEAM_URL", team.url())
    info = create_scratch_database(server, prefix="liftlab_one_fails")
    try:
        result = run_pipeline(dg.DagsterInstance.ephemeral(), {"postgres": PostgresResource(database_url=info.url())},
                              log=lambda *_: None, studies=False, reports=False)
        assert set(result.failed) == {"t1"} and "source.assignments.table" in result.failed["t1"]
        assert "shop.missing" in result.failed["t1"]
        with db.connect(info) as conn:
            assert {r[0] for r in conn.execute("select distinct experiment_id from results.effects")} == {"t2"}
            assert conn.execute("select to_regclass('units.t1')").fetchone() == (None,)
            decided = {r[0]: (r[1], " ".join(r[2])) for r in conn.execute(
                "select experiment_id, decision, reasons from results.decisions").fetchall()}
        assert "spend_3d" in decided["t2"][1]  # decided on its primary metric
        assert decided["t1"] == ("HOLD", "gates have not run yet")  # no results of its own, none made up
    finally:
        drop_database(info)
