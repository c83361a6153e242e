"""Hillstrom as a team would have it: the same 64,000 customers in a table of its Postgres,
declared as ``kind: table`` (read in place), give the same effects as the vendored file — every
metric, arm and method to 1e-12."""

from __future__ import annotations

import uuid

import polars as pl
import psycopg
import pytest

from liftlab import db
from liftlab.config import REPO_ROOT
from tests.conftest import drop_database
from tests.own_data.helpers import team_pipeline

pytestmark = pytest.mark.heavy  # runs the pipeline twice on 64,000 Hillstrom units: not in make test-fast

DATA = REPO_ROOT / "experiments" / "data" / "hillstrom.csv"
COLUMNS = """
    recency: integer
    history_segment: string
    history: float
    mens: integer
    womens: integer
    zip_code: string
    newbie: integer
    channel: string
    segment: string
    visit: integer
    conversion: integer
    spend: float"""


def spec(key: str, source: str, extra_columns: str = "") -> str:
    return f"""
id: {key}
hypothesis: A targeted e-mail lifts site visits, conversions and spend over the next two weeks.
variants:
  - {{name: No E-Mail, allocation: 0.3333333333333333}}
  - {{name: Mens E-Mail, allocation: 0.3333333333333333}}
  - {{name: Womens E-Mail, allocation: 0.3333333333333334}}
baseline: No E-Mail
primary_metric: conversion
secondary_metrics: [visit, spend]
covariates: [recency, history, mens, womens, newbie]
source:
{source}
  variant_column: segment
  columns:{COLUMNS}{extra_columns}
  outcomes: [visit, conversion, spend]
"""


FILE = f"""  kind: file
  path: {DATA}
  format: csv
  unit_column: null"""

TABLE = """  kind: table
  connection: TEAM_DATABASE_URL
  table: shop.hillstrom
  unit_column: customer_id"""


@pytest.fixture(scope="module")
def both(server, tmp_path_factory):
    frame = pl.read_csv(DATA, infer_schema_length=None)
    name = f"team_{uuid.uuid4().hex[:10]}"
    db.ensure_database(server, name)
    team_db = server.with_db(name)
    with psycopg.connect(team_db.url()) as conn, conn.cursor() as cur:
        cur.execute("create schema shop")
        cur.execute("create table shop.hillstrom (customer_id bigint primary key, recency integer, history_segment text, "
                    "history double precision, mens integer, womens integer, zip_code text, newbie integer, "
                    "channel text, segment text, visit integer, conversion integer, spend double precision)")
        with cur.copy("copy shop.hillstrom from stdin with (format csv)") as copy:
            copy.write(frame.with_row_index("customer_id", offset=1).write_csv(include_header=False))
    specs = {"hillstrom_file": spec("hillstrom_file", FILE), "hillstrom_table": spec("hillstrom_table", TABLE, "\n    customer_id: integer")}
    with team_pipeline(server, tmp_path_factory.mktemp("hillstrom"), specs, "", team_db, "liftlab_hill") as (
            liftlab_db, result):
        assert result.failed == {}, result.failed
        with db.connect(liftlab_db) as conn:
            effects = db.read_frame(conn, "select * from results.effects order by experiment_id, metric, variant, method")
            decisions = dict(conn.execute("select experiment_id, decision from results.decisions").fetchall())
        yield effects, decisions, frame.height
    drop_database(team_db)


def test_table_source_gives_the_file_sources_effects(both):
    effects, decisions, n = both
    numbers = ["n_baseline", "n_variant", "mean_baseline", "mean_variant", "abs_effect", "abs_se", "abs_ci_low",
               "abs_ci_high", "rel_effect", "rel_ci_low", "rel_ci_high", "p_value", "p_value_adj", "cs_low", "cs_high",
               "chance_to_win", "theta", "variance_reduction"]
    keys = ["metric", "variant", "method"]
    a = effects.filter(pl.col("experiment_id") == "hillstrom_file").sort(keys)
    b = effects.filter(pl.col("experiment_id") == "hillstrom_table").sort(keys)
    assert a.height == b.height >= 6 and a.select(keys).equals(b.select(keys))
    assert "welch_t" in set(a["method"])
    assert int(a["n_baseline"][0] + a.filter(pl.col("variant") == "Mens E-Mail")["n_variant"][0]
               + a.filter(pl.col("variant") == "Womens E-Mail")["n_variant"][0]) == n
    for column in numbers:
        x, y = a[column].cast(pl.Float64).to_numpy(), b[column].cast(pl.Float64).to_numpy()
        assert ((abs(x - y) <= 1e-12 * abs(x) + 1e-15) | (x != x) & (y != y)).all(), column
    assert decisions["hillstrom_file"] == decisions["hillstrom_table"] == "SHIP"
